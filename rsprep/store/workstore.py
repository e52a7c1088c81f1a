"""The per-tile work store (docs/workstore.md): one folder per product between the stages.

Layout of ``WORK/<patch prefix>/`` (the product URI without its generation time)::

    manifest.json     format, tile grid, product facts, and per stage: parameters, input fingerprint,
                      outputs, rsprep version
    s2.zarr/          patch stage: one array per band, (N, h, w) at native resolution, plus SCL
    patches.parquet   patch stage: one row per patch of the grid, row i = array index i
    stack.zarr/       stack stage: (N, 12, 10m, 10m)
    s1.zarr/          s1 stage: VV, VH (M, 10m, 10m) for the M paired patches
    s1.parquet        s1 stage: partner (or the reason for none) per patch

Every stage writes its files under temporary names and renames them into place, then replaces the
manifest; the patch stage builds the whole folder as a temporary sibling. A crash never leaves a
file that looks complete. Arrays are chunked by one row of patches (``n`` patches), not one file per patch.

The manifest's ``inventory`` holds every chunk key and byte size of each Zarr group (a directory
listing, taken when a stage records itself). :meth:`TileStore.zarr` compares the listing with it before
anything is read, and its arrays turn an undecodable chunk into a :class:`WorkStoreError`, so a damaged
store is refused (naming store, array, chunk and patches) instead of read as Zarr's fill value.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rsprep import __version__
from rsprep.core.grid import TileGrid
from rsprep.errors import InputNotFoundError, RsprepError
from rsprep.store.atomic import write_json_atomic
from rsprep.store.chunks import CheckedGroup, chunk_listing, group_inventory, mismatch, row_chunk_key

STORE_FORMAT = "rsprep-workstore"
STORE_VERSION = 1
MANIFEST = "manifest.json"
#: Every per-tile file name, owned here (docs/workstore.md): stage -> what it writes.
S2_ARRAYS = "s2.zarr"  # patch: one array per band and SCL
PATCH_TABLE = "patches.parquet"  # patch: one row per grid patch
STACK_ARRAYS = "stack.zarr"  # stack: s2_stacked
S1_ARRAYS = "s1.zarr"  # s1: VV, VH of the paired patches
S1_TABLE = "s1.parquet"  # s1: partner (or the reason for none) per patch
REFERENCE_ARRAYS = "reference.zarr"  # reference: reference_map
LABELS_TABLE = "labels.parquet"  # reference: labels per patch
REFERENCE_MAP = "reference_map"  # the array inside REFERENCE_ARRAYS
#: The stage that writes each Zarr group: the one to re-run when the group is damaged.
WRITERS = {S2_ARRAYS: "patch", STACK_ARRAYS: "stack", S1_ARRAYS: "s1", REFERENCE_ARRAYS: "reference"}
INVENTORY = "inventory"  # manifest key: {group: {array: {chunk key: bytes}}}


class WorkStoreError(RsprepError, ValueError):
    """A work store is missing, incomplete or from an incompatible rsprep version."""


# --------------------------------------------------------------------------------------------
# Zarr helpers
# --------------------------------------------------------------------------------------------
def compressors():
    """The codec of every work-store array: fast enough to keep up with JPEG2000 decoding."""
    from zarr.codecs import BloscCodec

    return [BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")]


def consolidate(path: Path) -> None:
    """Write consolidated metadata (a zarr-python extension to Zarr v3, read by xarray)."""
    import warnings

    import zarr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        zarr.consolidate_metadata(path)


def create_patch_array(group, name: str, *, shape, dtype, chunk_patches: int, attrs=None, fill_value=0):
    """An (N, ...) array chunked by ``chunk_patches`` patches, with dimension names."""
    dims = ("patch", "band", "y", "x") if len(shape) == 4 else ("patch", "y", "x")
    arr = group.create_array(
        name,
        shape=shape,
        chunks=(max(1, min(chunk_patches, shape[0] or 1)), *shape[1:]),
        dtype=dtype,
        compressors=compressors(),
        fill_value=fill_value,
        dimension_names=dims,
        attributes=attrs or {},
    )
    return arr


# --------------------------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------------------------
class TileStore:
    """One product's folder in the work store."""

    def __init__(self, path: Path, manifest: dict[str, Any]) -> None:
        self.path = path
        self.manifest = manifest
        self._checked: set[str] = set()  # groups whose chunk listing matched (checked once per instance)

    @classmethod
    def open(cls, path: str | Path) -> TileStore:
        """Open the store at ``path``.

        Raises:
            WorkStoreError: no manifest, or a manifest of another format or version.
        """
        path = Path(path)
        mpath = path / MANIFEST
        if not mpath.is_file():
            raise WorkStoreError(
                f"{path} is not an rsprep work store (no {MANIFEST}); create it with `rsprep patch`"
            )
        try:
            manifest = json.loads(mpath.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise WorkStoreError(f"{mpath} is unreadable ({exc}); re-run `rsprep patch --force`") from exc
        if manifest.get("format") != STORE_FORMAT or manifest.get("version") != STORE_VERSION:
            raise WorkStoreError(
                f"{mpath} is not a version-{STORE_VERSION} {STORE_FORMAT} manifest; "
                "re-run `rsprep patch --force` with this rsprep version"
            )
        return cls(path, manifest)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def grid(self) -> TileGrid:
        return TileGrid.from_dict(self.manifest["grid"])

    @property
    def product(self) -> dict[str, Any]:
        return self.manifest["product"]

    def stage(self, name: str) -> dict[str, Any] | None:
        return self.manifest.get("stages", {}).get(name)

    def require_stage(self, name: str, hint: str) -> dict[str, Any]:
        rec = self.stage(name)
        if rec is None:
            raise WorkStoreError(f"{self.path}: the {name} stage has not run; {hint}")
        return rec

    def table(self, filename: str):
        """Read a parquet table of this store."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        p = self.path / filename
        if not p.is_file():
            raise WorkStoreError(
                f"{p} is missing; the work store is incomplete, re-run its stage with --force"
            )
        try:
            return pq.read_table(p)
        except (pa.ArrowException, OSError) as exc:
            raise WorkStoreError(
                f"{p} of store {self.name} is not a readable parquet file ({exc}); "
                "re-run the stage that wrote it with --force"
            ) from exc

    def zarr(self, name: str) -> CheckedGroup:
        """Open one of this store's Zarr groups read-only, once its chunks are checked (:meth:`check_chunks`).

        Raises:
            WorkStoreError: the group is missing or damaged; reading one of its arrays raises it
                too for a chunk that cannot be decoded.
        """
        import zarr

        p = self.path / name
        if not (p / "zarr.json").is_file():
            raise WorkStoreError(f"{p} is missing; the work store is incomplete, re-run {self.fix(name)}")
        if name not in self._checked:
            self.check_chunks(name)
            self._checked.add(name)
        return CheckedGroup(zarr.open_group(p, mode="r"), self.damaged, name)

    def check_chunks(self, name: str) -> None:
        """Compare the chunk files of group ``name`` with the manifest's inventory (a listing, no read).

        A store recorded before inventories existed is checked against the chunks its valid patches
        need instead (:func:`_needed_chunks`).

        Raises:
            WorkStoreError: a chunk is missing, has another size, or is not in the inventory.
        """
        want = self.manifest.get(INVENTORY, {}).get(name)
        if want is None:
            return self._check_needed(name)
        for array, chunks in sorted(want.items()):
            bad = mismatch(chunks, chunk_listing(self.path / name / array), WRITERS.get(name, name))
            if bad:
                raise self.damaged(name, array, *bad)

    def _check_needed(self, name: str) -> None:
        for array, keys in _needed_chunks(self, name).items():
            have = chunk_listing(self.path / name / array)
            missing = [k for k in keys if k not in have]
            if missing:
                what = "is missing (it holds valid patches)"
                raise self.damaged(name, array, missing[0], what, len(missing) - 1)

    def damaged(self, group: str, array: str, key: str, what: str, more: int = 0) -> WorkStoreError:
        """The error for chunk ``key`` of ``group/array``: store, array, chunk, patches and the fix."""
        also = f" (and {more} more chunk(s))" if more else ""
        return WorkStoreError(
            f"{self.path / group / array}: chunk {key} ({self._rows(group, array, key)}) {what}{also}; "
            f"the work store is damaged, re-run {self.fix(group)}"
        )

    def _rows(self, group: str, array: str, key: str) -> str:
        """The patches of chunk ``key``: array rows, and for grid-indexed groups their patch ids."""
        try:
            meta = json.loads((self.path / group / array / "zarr.json").read_text())
            per = int(meta["chunk_grid"]["configuration"]["chunk_shape"][0])
            k = int(key.replace(".", "/").split("/")[1])
        except (OSError, ValueError, KeyError, IndexError):
            return "rows unknown"
        lo, hi = k * per, min((k + 1) * per, int(meta["shape"][0])) - 1
        if group == S1_ARRAYS:
            return f"rows {lo}-{hi} of the paired patches"
        grid = self.grid
        return f"patches {lo}-{hi}: {grid.patch_id(*grid.xy(lo))} to {grid.patch_id(*grid.xy(hi))}"

    def fix(self, group: str) -> str:
        """The command that rewrites ``group``, with --force."""
        stage = WRITERS.get(group, "its stage")
        if stage == "patch":
            product = self.product.get("path", "PRODUCT")
            return f"`rsprep patch {product} --out {self.path.parent} --force` (then the later stages)"
        args = {"stack": f"{self.path}", "s1": f"--work {self.path} --s1 S1_FOLDER"}
        return f"`rsprep {stage} {args.get(stage, f'--work {self.path} --clc CLC')} --force`"

    def record_stage(self, name: str, record: dict[str, Any]) -> None:
        """Store a finished stage in the manifest (atomically), with the chunk inventory of its Zarr outputs.

        Groups of earlier stages without one (the patch stage writes its manifest itself) get theirs
        too, once their valid patches are found to have every chunk.
        """
        inventory = self.manifest.setdefault(INVENTORY, {})
        for out in record.get("outputs", []):
            if (self.path / out / "zarr.json").is_file():
                inventory[out] = group_inventory(self.path / out)
        for group in WRITERS:
            if group not in inventory and (self.path / group / "zarr.json").is_file():
                try:
                    self._check_needed(group)
                except WorkStoreError:
                    continue  # left without: its readers refuse it
                inventory[group] = group_inventory(self.path / group)
        self.manifest.setdefault("stages", {})[name] = record
        write_json_atomic(self.path / MANIFEST, self.manifest)

    def is_current(self, name: str, parameters: dict[str, Any], inputs_digest: str) -> bool:
        rec = self.stage(name)
        return (
            rec is not None
            and rec.get("parameters") == parameters
            and rec.get("inputs_digest") == inputs_digest
            and rec.get("rsprep_version") == __version__
        )


def _needed_chunks(store: TileStore, group: str) -> dict[str, list[str]]:
    """The chunk keys that must exist in a group without inventory: every row-chunk of ``s1.zarr``
    (all its rows are paired patches), and of the spectral arrays of ``s2.zarr`` and ``stack.zarr``
    those holding a patch marked valid in patches.parquet (a valid patch has no 0, Zarr's fill value,
    so its chunk is always written). ``reference.zarr`` needs none (a row without CLC is all 0).
    """
    from rsprep.core.bands import SPECTRAL_BANDS

    arrays = {S2_ARRAYS: SPECTRAL_BANDS, STACK_ARRAYS: ("s2_stacked",), S1_ARRAYS: None}
    if group not in arrays:
        return {}
    rows = None
    if group != S1_ARRAYS:
        import numpy as np

        rows = np.flatnonzero(store.table(PATCH_TABLE).column("valid").to_numpy(zero_copy_only=False))
    needed = {}
    for p in sorted((store.path / group).iterdir()):
        if not (p / "zarr.json").is_file() or (arrays[group] is not None and p.name not in arrays[group]):
            continue
        meta = json.loads((p / "zarr.json").read_text())
        per, n = int(meta["chunk_grid"]["configuration"]["chunk_shape"][0]), int(meta["shape"][0])
        ks = sorted({int(r) // per for r in rows}) if rows is not None else range(-(-n // per))
        needed[p.name] = [row_chunk_key(k, len(meta["shape"])) for k in ks]
    return needed


def stage_record(parameters: dict[str, Any], inputs_digest: str, **extra: Any) -> dict[str, Any]:
    return {"parameters": parameters, "inputs_digest": inputs_digest, "rsprep_version": __version__, **extra}


def find_stores(work: str | Path) -> list[TileStore]:
    """The stores in ``work``: the folder itself when it is one, else its sub-folders, sorted by name.

    Raises:
        InputNotFoundError: ``work`` does not exist.
        WorkStoreError: it holds no work store.
    """
    work = Path(work)
    if not work.is_dir():
        raise InputNotFoundError(
            f"work store {work} does not exist; create it with `rsprep patch ... --out {work}`"
        )
    if (work / MANIFEST).is_file():
        return [TileStore.open(work)]
    stores = [
        TileStore.open(p)
        for p in sorted(work.iterdir())
        if p.is_dir() and not p.name.startswith(".") and (p / MANIFEST).is_file()
    ]
    if not stores:
        raise WorkStoreError(f"{work} holds no work store; run `rsprep patch PRODUCT... --out {work}` first")
    return stores
