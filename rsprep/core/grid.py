"""The reBEN patch grid and naming rules (docs/grid.md). Pure: no file-format imports."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rsprep.errors import InvalidParameterError

#: Real Sentinel-2 tiles are 109,800 m square.
TILE_SIZE_M = 109_800
DEFAULT_PATCH_SIZE_M = 1200

PRODUCT_URI_RE = re.compile(
    r"^(?P<mission>S2[A-D])_MSI(?P<level>L1C|L2A)_(?P<datatake>\d{8}T\d{6})_N(?P<baseline>\d{4})"
    r"_R(?P<orbit>\d{3})_T(?P<tile>\d{2}[A-Z]{3})_(?P<generation>\d{8}T\d{6})(?:\.SAFE)?$"
)
#: The one patch-id grammar: ``<prefix>_<x>_<y>`` (S2 patch_id and S1 s1_name alike).
PATCH_ID_PATTERN = r"^(?P<prefix>.+)_(?P<x>\d+)_(?P<y>\d+)$"
PATCH_ID_RE = re.compile(PATCH_ID_PATTERN)
#: The tile of a patch prefix (``..._T33UUP``).
TILE_PATTERN = r"^(?:.*_)?(?P<tile>T\d{2}[A-Z]{3})$"


@dataclass(frozen=True)
class ProductName:
    """The parts of a Sentinel-2 product URI."""

    mission: str
    level: str
    datatake: str
    baseline: str  # as in the name: "0400", "9999"
    relative_orbit: int
    tile: str  # without the leading T: "33UUP"
    generation: str

    @property
    def patch_prefix(self) -> str:
        """Product URI without ``_<generation>.SAFE``: the stem of every patch name."""
        return (
            f"{self.mission}_MSI{self.level}_{self.datatake}_N{self.baseline}"
            f"_R{self.relative_orbit:03d}_T{self.tile}"
        )


def parse_product_uri(uri: str) -> ProductName:
    """Split a product URI (``S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_20230406T150245.SAFE``).

    Raises:
        InvalidParameterError: ``uri`` does not follow the Sentinel-2 compact naming convention.
    """
    m = PRODUCT_URI_RE.match(uri.strip())
    if m is None:
        raise InvalidParameterError(
            f"product name {uri!r} does not follow the Sentinel-2 compact naming convention "
            "MMM_MSIXXX_YYYYMMDDTHHMMSS_Nxxyy_ROOO_Txxxxx_<generation>.SAFE"
        )
    return ProductName(
        mission=m["mission"],
        level=m["level"],
        datatake=m["datatake"],
        baseline=m["baseline"],
        relative_orbit=int(m["orbit"]),
        tile=m["tile"],
        generation=m["generation"],
    )


def check_patch_size(patch_size: int) -> int:
    """Return ``patch_size`` if every band has whole pixels in a patch of that size.

    Raises:
        InvalidParameterError: not a positive multiple of 60 m.
    """
    if patch_size <= 0 or patch_size % 60:
        raise InvalidParameterError(
            f"patch size {patch_size} m is not a positive multiple of 60 m; "
            "choose e.g. 1200 (reBEN), 600 or 2400 so that the 60 m bands have whole pixels"
        )
    return patch_size


def patches_per_side(tile_size_m: float, patch_size: int = DEFAULT_PATCH_SIZE_M) -> int:
    """Number of complete patches along one side of a tile (91 for 109,800 m and 1200 m)."""
    check_patch_size(patch_size)
    return int(tile_size_m // patch_size)


def patch_pixels(patch_size: int, resolution: int) -> int:
    """Pixels per patch side at ``resolution`` (120 / 60 / 20 for 1200 m)."""
    return check_patch_size(patch_size) // resolution


def patch_bounds(
    ulx: float, uly: float, x: int, y: int, patch_size: int = DEFAULT_PATCH_SIZE_M
) -> tuple[float, float, float, float]:
    """(left, bottom, right, top) of patch (x, y) of a tile whose upper-left corner is (ulx, uly)."""
    left = ulx + patch_size * x
    top = uly - patch_size * y
    return (left, top - patch_size, left + patch_size, top)


def index_digits(n: int) -> int:
    """Digits of the largest patch index, ``n - 1`` (2 for 91 patches per side)."""
    return len(str(max(n - 1, 0)))


def patch_name(prefix: str, x: int, y: int, n: int) -> str:
    """reBEN patch name: ``<prefix>_<x>_<y>``, indices zero-padded to the digits of ``n - 1``."""
    d = index_digits(n)
    return f"{prefix}_{x:0{d}d}_{y:0{d}d}"


def s1_patch_name(s1_product: str, tile: str, x: int, y: int) -> str:
    """Sentinel-1 patch name: S1 product name up to its start time, tile without T, x, y (unpadded).

    ``s1_patch_name("S1A_IW_GRDH_1SDV_20170613T165043_20170613T165108_...", "T33UUP", 70, 48)``
    gives ``S1A_IW_GRDH_1SDV_20170613T165043_33UUP_70_48``.
    """
    parts = s1_product.split("_")
    # S1A_IW_GRDH_1SDV_<start>_...: the start time is the first field that looks like a time.
    for i, part in enumerate(parts):
        if re.fullmatch(r"\d{8}T\d{6}", part):
            stem = "_".join(parts[: i + 1])
            break
    else:
        raise InvalidParameterError(
            f"Sentinel-1 product name {s1_product!r} has no start time field (YYYYMMDDTHHMMSS)"
        )
    return f"{stem}_{tile.removeprefix('T')}_{x}_{y}"


def parse_patch_id(patch_id: str) -> tuple[str, int, int]:
    """Split ``<prefix>_<x>_<y>`` into its parts.

    Raises:
        InvalidParameterError: ``patch_id`` does not end in ``_<x>_<y>``.
    """
    m = PATCH_ID_RE.match(patch_id)
    if m is None:
        raise InvalidParameterError(f"patch name {patch_id!r} does not end in _<x>_<y>")
    return m["prefix"], int(m["x"]), int(m["y"])


def strip_parts(name: str, n: int) -> str:
    """``name`` without its last ``n`` underscore-separated parts (2: a patch_id's product prefix;
    3: an s1_name's scene, which also drops the tile)."""
    parts = name.split("_")
    if len(parts) <= n:
        raise InvalidParameterError(f"{name!r} has too few '_' parts for a reBEN patch name")
    return "_".join(parts[:-n])


def season(when: datetime) -> str:
    """Meteorological season of a date: DJF winter, MAM spring, JJA summer, SON autumn."""
    return ("winter", "spring", "summer", "autumn")[(when.month % 12) // 3]


# --------------------------------------------------------------------------------------------
# Patch names of whole tables (vectorised)
# --------------------------------------------------------------------------------------------
@dataclass
class PatchNames:
    """``<prefix>_<x>_<y>`` parsed for every row, and the tile of each prefix."""

    prefix: np.ndarray  # object (str)
    x: np.ndarray  # int64
    y: np.ndarray
    tile: np.ndarray  # object (str): "T33UUP", or the prefix when it names no tile


def parse_patch_ids(
    patch_id: pa.ChunkedArray | pa.Array | Sequence[str], source: str = "table"
) -> PatchNames:
    """Parse patch names; an unparsable name is an error that shows it."""
    arr = patch_id if isinstance(patch_id, pa.ChunkedArray | pa.Array) else pa.array(patch_id, pa.string())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    parts = pc.extract_regex(arr, PATCH_ID_PATTERN)
    bad = pc.is_null(parts)
    if pc.any(bad).as_py() or arr.null_count:
        examples = pc.filter(arr, pc.fill_null(bad, True)).slice(0, 3).to_pylist()
        raise InvalidParameterError(
            f"{source}: {pc.sum(bad).as_py()} patch_id(s) are not of the form <prefix>_<x>_<y>, "
            f"e.g. {examples}"
        )
    flat = parts
    prefix = flat.field("prefix")
    tile = pc.extract_regex(prefix, TILE_PATTERN)
    tile_col = pc.coalesce(pc.struct_field(tile, "tile"), prefix)
    return PatchNames(
        prefix=np.asarray(prefix.to_numpy(zero_copy_only=False), dtype=object),
        x=np.asarray(pc.cast(flat.field("x"), pa.int64()).to_numpy(), dtype=np.int64),
        y=np.asarray(pc.cast(flat.field("y"), pa.int64()).to_numpy(), dtype=np.int64),
        tile=np.asarray(tile_col.to_numpy(zero_copy_only=False), dtype=object),
    )


@dataclass(frozen=True)
class TileGrid:
    """The patch grid of one product's tile (docs/grid.md): the upper-left corner, patches per side, names."""

    tile_id: str  # "T33UUP"
    epsg: int
    ulx: float
    uly: float
    tile_size_m: float
    patch_size: int
    n: int  # complete patches per side
    patch_prefix: str

    @property
    def count(self) -> int:
        return self.n * self.n

    def pixels(self, resolution: int) -> int:
        """Pixels per patch side at ``resolution``."""
        return self.patch_size // resolution

    def xy(self, index: int) -> tuple[int, int]:
        """(x, y) of the patch stored at array row ``index`` (row-major)."""
        return index % self.n, index // self.n

    def index(self, x: int, y: int) -> int:
        return y * self.n + x

    def patch_id(self, x: int, y: int) -> str:
        return patch_name(self.patch_prefix, x, y, self.n)

    def bounds(self, x: int, y: int) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in the tile CRS."""
        return patch_bounds(self.ulx, self.uly, x, y, self.patch_size)

    def transform(self, x: int, y: int, resolution: int) -> tuple[float, float, float, float, float, float]:
        """Coefficients (a, b, c, d, e, f of ``affine.Affine``) of patch (x, y) at ``resolution``."""
        left, _, _, top = self.bounds(x, y)
        return (float(resolution), 0.0, left, 0.0, -float(resolution), top)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TileGrid:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})
