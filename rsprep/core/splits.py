"""Train / validation / test splits that keep spatially correlated patches apart (docs/splits.md).

Methods:

- ``tile-border`` (reBEN): rings of a tile by the distance d of the patch centroid to the nearest tile
  border; train when d < a1, validation when a1 ≤ d < a1 + a2, test otherwise, with
  ``a1 = s(1 − √(val + test))/2`` and ``a1 + a2 = s(1 − √test)/2``, so the rings hold the requested
  fractions of the tile's area and the overlaps between neighbouring tiles always fall into train.
- ``block``: a square grid of K km blocks in an equal-area CRS; blocks are ranked by a seeded hash and
  given to the splits in that order until each holds its fraction of the patches; an optional buffer
  drops blocks next to a block of a higher-priority split (test > validation > train).
- ``tile``: the same seeded ranking over whole tiles (all dates of a tile stay together).
- ``random``: patches ranked by a seeded hash (a baseline that shows leakage).

Every method is a pure function of the patches' names and positions and the seed: the result does not
depend on the row order. Codes: 0 train, 1 validation, 2 test, -1 dropped (block buffer).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rsprep.core.grid import DEFAULT_PATCH_SIZE_M, TILE_SIZE_M, parse_patch_ids
from rsprep.core.positions import positions
from rsprep.errors import InvalidParameterError

#: The official split names, in code order: 0 train, 1 validation, 2 test.
SPLITS = ("train", "validation", "test")
METHODS = ("tile-border", "block", "tile", "random")
DROPPED = -1


@dataclass(frozen=True)
class SplitOptions:
    method: str = "tile-border"
    fractions: tuple[float, float, float] = (0.5, 0.25, 0.25)
    seed: int = 0
    block_km: float = 10.0
    buffer: int = 0
    patch_size: float = DEFAULT_PATCH_SIZE_M  # used when the table has no patch_size_m column
    tile_size: float = TILE_SIZE_M  # used when the table has no tile_size_m column
    crs: str = "auto"

    def __post_init__(self) -> None:
        """Give every number its field's type (1200 → 1200.0 for the sizes, 1.0 → 1 for the seed), so
        options made by a recipe, a CLI command or the defaults record the same JSON."""
        for name, kind in (("block_km", float), ("patch_size", float), ("tile_size", float)):
            _coerce(self, name, kind)
        for name in ("seed", "buffer"):
            _coerce(self, name, int)
        if isinstance(self.fractions, (list, tuple)) and all(_is_number(f) for f in self.fractions):
            object.__setattr__(self, "fractions", tuple(float(f) for f in self.fractions))

    def validate(self) -> None:
        if self.method not in METHODS:
            raise InvalidParameterError(f"split method {self.method!r} is not one of {', '.join(METHODS)}")
        check_fractions(self.fractions)
        if not self.block_km > 0:
            raise InvalidParameterError(f"--block-km must be positive, got {self.block_km}")
        if self.buffer < 0:
            raise InvalidParameterError(f"--buffer must be 0 or more blocks, got {self.buffer}")
        if self.buffer and self.method != "block":
            raise InvalidParameterError("--buffer applies to --method block only")
        if not (self.patch_size > 0 and self.tile_size >= self.patch_size):
            raise InvalidParameterError(
                f"patch size {self.patch_size} m and tile size {self.tile_size} m: "
                "both must be positive and the tile at least one patch wide"
            )


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _coerce(options: SplitOptions, name: str, kind: type) -> None:
    """Set the number ``options.<name>`` to ``kind`` where it keeps the value (validate() reports others)."""
    value = getattr(options, name)
    if _is_number(value) and kind(value) == value:
        object.__setattr__(options, name, kind(value))


def check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    if len(fractions) != 3:
        raise InvalidParameterError(
            f"give three split fractions (train, validation, test), got {len(fractions)}: {fractions}"
        )
    if any(not (0.0 <= f <= 1.0) or math.isnan(f) for f in fractions):
        raise InvalidParameterError(f"split fractions must lie in [0, 1], got {tuple(fractions)}")
    if abs(sum(fractions) - 1.0) > 1e-9:
        raise InvalidParameterError(
            f"split fractions must sum to 1, got {tuple(fractions)} = {sum(fractions)}"
        )
    return (float(fractions[0]), float(fractions[1]), float(fractions[2]))


def parse_fractions(text: str) -> tuple[float, float, float]:
    """``"0.5,0.25,0.25"`` or ``"2:1:1"`` (ratios are normalised)."""
    sep = ":" if ":" in text else ","
    try:
        values = [float(v) for v in text.split(sep)]
    except ValueError as exc:
        raise InvalidParameterError(
            f"split fractions {text!r} are not numbers; give e.g. 0.5,0.25,0.25 or 2:1:1"
        ) from exc
    if sep == ":":
        total = sum(values)
        if total <= 0 or any(v < 0 for v in values):
            raise InvalidParameterError(f"split ratios {text!r} must be non-negative with a positive sum")
        values = [v / total for v in values]
    return check_fractions(values)


# --------------------------------------------------------------------------------------------
# Methods
# --------------------------------------------------------------------------------------------
def ring_bounds(tile_size: np.ndarray | float, fractions: Sequence[float]) -> tuple:
    """(a1, a1 + a2): the border distances where validation and test begin."""
    _, val, test = fractions
    a1 = np.asarray(tile_size, dtype=np.float64) * (1.0 - math.sqrt(val + test)) / 2.0
    a12 = np.asarray(tile_size, dtype=np.float64) * (1.0 - math.sqrt(test)) / 2.0
    return a1, a12


def tile_border(
    x: np.ndarray, y: np.ndarray, *, patch_size, tile_size, fractions=(0.5, 0.25, 0.25)
) -> np.ndarray:
    """reBEN's split codes from the patch indices (centroid ``P·x + P/2`` from the tile's corner)."""
    p = np.asarray(patch_size, dtype=np.float64)
    s = np.asarray(tile_size, dtype=np.float64)
    cx = p * x + p / 2.0
    cy = p * y + p / 2.0
    d = np.minimum(np.minimum(cx, s - cx), np.minimum(cy, s - cy))
    a1, a12 = ring_bounds(s, fractions)
    return np.where(d < a1, 0, np.where(d < a12, 1, 2)).astype(np.int8)


def seeded_keys(seed: int, keys: Sequence[str]) -> np.ndarray:
    """A stable 64-bit hash of ``seed`` and each key (BLAKE2b), independent of Python's hash seed."""
    out = np.empty(len(keys), dtype=np.uint64)
    pre = f"{int(seed)}\x1f".encode()
    for i, k in enumerate(keys):
        out[i] = int.from_bytes(hashlib.blake2b(pre + k.encode(), digest_size=8).digest(), "little")
    return out


def ranked_groups(
    groups: np.ndarray, seed: int, fractions: Sequence[float], names: Sequence[str] | None = None
) -> np.ndarray:
    """Split codes for whole groups: groups ranked by a seeded hash, then filled in order until each
    split holds its fraction of the rows (a group goes where the middle of its rows falls).
    """
    uniq, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    labels = names if names is not None else [str(u) for u in uniq]
    keys = seeded_keys(seed, labels)
    order = np.lexsort((np.arange(len(uniq)), keys))
    cum = np.cumsum(counts[order])
    mid = cum - counts[order] / 2.0
    bounds = np.cumsum(fractions)[:2] * len(groups)
    group_code = np.empty(len(uniq), dtype=np.int8)
    group_code[order] = np.searchsorted(bounds, mid, side="right").astype(np.int8)
    return group_code[inverse]


def random_split(patch_ids: Sequence[str], seed: int, fractions: Sequence[float]) -> np.ndarray:
    """Patches ranked by a seeded hash of their name; the first ⌊f·N⌉ go to train, and so on."""
    n = len(patch_ids)
    keys = seeded_keys(seed, patch_ids)
    by_name = pc.sort_indices(pa.array(patch_ids, pa.string())).to_numpy()  # ties (never seen) by name
    order = by_name[np.argsort(keys[by_name], kind="stable")]
    bounds = np.rint(np.cumsum(fractions)[:2] * n).astype(np.int64)
    codes = np.empty(n, dtype=np.int8)
    codes[order] = np.searchsorted(bounds, np.arange(n), side="right").astype(np.int8)
    return codes


def block_split(
    ex: np.ndarray, ey: np.ndarray, *, block_m: float, seed: int, fractions: Sequence[float], buffer: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Split codes from square blocks of ``block_m`` metres over equal-area coordinates (ex, ey).

    Returns (codes, block ids as an (N, 2) array). With ``buffer`` > 0, a block within ``buffer``
    blocks (Chebyshev distance) of a block of a higher-priority split is dropped (code -1).
    """
    bx = np.floor(ex / block_m).astype(np.int64)
    by = np.floor(ey / block_m).astype(np.int64)
    blocks = np.stack([bx, by], axis=1)
    uniq, inverse = np.unique(blocks, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    names = [f"{a}:{b}" for a, b in uniq]
    block_codes = ranked_groups(inverse, seed, fractions, names=names)
    per_block = np.empty(len(uniq), dtype=np.int8)
    per_block[inverse] = block_codes
    if buffer > 0:
        where = {(int(a), int(b)): int(c) for (a, b), c in zip(uniq, per_block, strict=True)}
        dropped = np.zeros(len(uniq), dtype=bool)
        span = range(-buffer, buffer + 1)
        for i, (a, b) in enumerate(uniq):
            mine = per_block[i]
            for da in span:
                for db in span:
                    other = where.get((int(a) + da, int(b) + db))
                    if other is not None and other > mine:
                        dropped[i] = True
                        break
                if dropped[i]:
                    break
        per_block = np.where(dropped, DROPPED, per_block).astype(np.int8)
    return per_block[inverse], blocks


def code_names(codes: np.ndarray) -> pa.Array:
    """Split codes as the official strings (null for dropped rows)."""
    names = np.array([*SPLITS, None], dtype=object)
    return pa.array(names[np.where(codes < 0, 3, codes)], type=pa.string())


def counts(codes: np.ndarray) -> dict[str, int]:
    out = {name: int((codes == i).sum()) for i, name in enumerate(SPLITS)}
    if (codes < 0).any():
        out["dropped"] = int((codes < 0).sum())
    return out


# --------------------------------------------------------------------------------------------
# A whole table
# --------------------------------------------------------------------------------------------
@dataclass
class SplitOutcome:
    patch_id: pa.Array
    codes: np.ndarray
    report: dict[str, Any]
    options: SplitOptions
    seconds: float


def _column_or(table: pa.Table, name: str, default) -> np.ndarray | float:
    if name in table.column_names:
        col = table.column(name)
        if col.null_count == 0:
            return np.asarray(col.to_numpy(), dtype=np.float64)
    return default


def split_table(table: pa.Table, options: SplitOptions, source: str = "table") -> SplitOutcome:
    """Split codes for every row of ``table``.

    Needs ``patch_id``; uses x, y, patch_size_m, tile_size_m and positions when the table has them.
    """
    t0 = time.perf_counter()
    options.validate()
    if "patch_id" not in table.column_names:
        raise InvalidParameterError(f"{source} has no patch_id column; a split needs patch names")
    ids = table.column("patch_id").combine_chunks()
    if pc.count_distinct(ids).as_py() != len(ids):
        raise InvalidParameterError(
            f"{source}: patch_id values are not unique; a split needs one row per patch"
        )
    names = parse_patch_ids(ids, source)
    x = _column_or(table, "x", names.x)
    y = _column_or(table, "y", names.y)
    patch_size = _column_or(table, "patch_size_m", float(options.patch_size))
    tile_size = _column_or(table, "tile_size_m", float(options.tile_size))
    pos = positions(table, names, patch_size=patch_size, crs=options.crs)
    details: dict[str, Any] = {}
    if options.method == "tile-border":
        codes = tile_border(x, y, patch_size=patch_size, tile_size=tile_size, fractions=options.fractions)
    elif options.method == "random":
        codes = random_split(ids.to_pylist(), options.seed, options.fractions)
    elif options.method == "tile":
        codes = ranked_groups(names.tile, options.seed, options.fractions)
        details["tiles"] = len(set(names.tile.tolist()))
    else:
        if not pos.georeferenced:
            raise InvalidParameterError(
                f"{source} has no coordinates (epsg + left/bottom/right/top, geometry or centroid_lon/lat); "
                "--method block needs them: split the dataset folder or its patches.parquet instead"
            )
        codes, blocks = block_split(
            pos.ex,
            pos.ey,
            block_m=options.block_km * 1000.0,
            seed=options.seed,
            fractions=options.fractions,
            buffer=options.buffer,
        )
        details["blocks"] = len(np.unique(blocks, axis=0))
    from rsprep.core.leakage import leakage_report  # leakage imports SPLITS from here

    report = leakage_report(codes, pos)
    report = {
        "method": options.method,
        "options": asdict(options),
        "counts_all": counts(codes),
        **details,
        **report,
    }
    return SplitOutcome(ids, codes, report, options, time.perf_counter() - t0)


def apply_split(table: pa.Table, ids: pa.Array, codes: np.ndarray) -> pa.Table:
    """``table`` with its ``split`` column set from (ids, codes), in place of an old one or appended."""
    pos = pc.index_in(table.column("patch_id"), value_set=ids)
    if pos.null_count:
        raise InvalidParameterError("a patch of the table has no split (it was not part of the split input)")
    split = code_names(codes).take(pos.combine_chunks() if isinstance(pos, pa.ChunkedArray) else pos)
    if "split" in table.column_names:
        return table.set_column(table.column_names.index("split"), "split", split)
    return table.append_column("split", split)
