"""Where synthetic tiles sit, when they are acquired and what each product is (pure, no I/O)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from rsprep.core.grid import TILE_SIZE_M, check_patch_size
from rsprep.errors import InvalidParameterError

#: The first tile sits where the real T33UUP sits, so our grid can be checked against real reBEN patches.
FIRST_TILE = "T33UUP"
FIRST_ULX, FIRST_ULY = 300_000, 5_400_000
EPSG = 32633
_MGRS_COLUMNS = "STUVWXYZ"  # 100 km column letters of UTM zone 33 (set 3)
_MGRS_ROWS = "ABCDEFGHJKLMNPQRSTUV"  # row letters, odd zones start at A
_FIRST_COLUMN = _MGRS_COLUMNS.index("U")
_FIRST_ROW = _MGRS_ROWS.index("P")
MAX_TILE_COLUMNS = len(_MGRS_COLUMNS) - _FIRST_COLUMN  # U ... Z

#: Acquisitions of relative orbit 22 over T33UUP, one per season (the first is reBEN's own date).
_BASE_ACQUISITIONS: tuple[tuple[str, datetime, str], ...] = (
    ("S2A", datetime(2017, 6, 13, 10, 10, 31, tzinfo=UTC), "summer"),
    ("S2B", datetime(2018, 1, 20, 10, 23, 29, tzinfo=UTC), "winter"),
    ("S2A", datetime(2017, 10, 1, 10, 10, 21, tzinfo=UTC), "autumn"),
    ("S2B", datetime(2018, 4, 10, 10, 10, 19, tzinfo=UTC), "spring"),
)
RELATIVE_ORBIT = 22
OLD_BASELINE = "02.05"


@dataclass(frozen=True)
class TileSpec:
    name: str  # "T33UUP"
    column: int
    row: int
    ulx: int
    uly: int
    size_m: int  # side length in metres (a multiple of 60)

    @property
    def bounds(self) -> tuple[int, int, int, int]:
        return (self.ulx, self.uly - self.size_m, self.ulx + self.size_m, self.uly)


@dataclass(frozen=True)
class Acquisition:
    index: int
    mission: str
    datatake: datetime
    season: str

    @property
    def snowy(self) -> bool:
        return self.season == "winter"


@dataclass(frozen=True)
class ProductSpec:
    index: int
    tile: TileSpec
    acquisition: Acquisition
    level: str  # L2A / L1C
    baseline: str  # "99.99", "04.00", "02.05"
    failed_check: str | None  # e.g. "GEOMETRIC_QUALITY"
    roles: tuple[str, ...]

    @property
    def has_offset(self) -> bool:
        return baseline_has_offset(self.baseline)

    @property
    def generation(self) -> datetime:
        # Deterministic: ground processing finishes some hours after the datatake.
        return self.acquisition.datatake + timedelta(hours=4, minutes=34, seconds=23 + self.tile.column)

    @property
    def absolute_orbit(self) -> int:
        start = (
            datetime(2015, 6, 23, tzinfo=UTC)
            if self.acquisition.mission == "S2A"
            else datetime(2017, 3, 7, tzinfo=UTC)
        )
        days = (self.acquisition.datatake - start).total_seconds() / 86400
        return int(days * 14.3) + 1

    @property
    def product_uri(self) -> str:
        a = self.acquisition
        return (
            f"{a.mission}_MSI{self.level}_{a.datatake:%Y%m%dT%H%M%S}_N{self.baseline.replace('.', '')}"
            f"_R{RELATIVE_ORBIT:03d}_{self.tile.name}_{self.generation:%Y%m%dT%H%M%S}.SAFE"
        )

    @property
    def granule_dir(self) -> str:
        a = self.acquisition
        return f"{self.level}_{self.tile.name}_A{self.absolute_orbit:06d}_{a.datatake:%Y%m%dT%H%M%S}"


def baseline_has_offset(baseline: str) -> bool:
    """Products from processing baseline 04.00 on carry BOA_ADD_OFFSET = -1000."""
    return float(baseline) >= 4.0


def check_baseline(baseline: str) -> str:
    """Validate a processing baseline spelled like the metadata (``04.00``, ``99.99``)."""
    parts = baseline.split(".")
    if len(parts) != 2 or not all(p.isdigit() and len(p) == 2 for p in parts):
        raise InvalidParameterError(
            f"processing baseline {baseline!r} is not of the form NN.NN (e.g. 04.00, 05.09, 99.99)"
        )
    return baseline


def tile_size_m(patches_per_side: int, patch_size: int, full_size: bool) -> int:
    """Side of a synthetic tile: the real 109,800 m, or (n + ½) patches with the half rounded down to 60 m.

    The partial strip mimics the real 91.5 patches per side; a 60 m patch has no half at 60 m pixels.
    """
    check_patch_size(patch_size)
    if full_size:
        return TILE_SIZE_M
    if patches_per_side < 1:
        raise InvalidParameterError(f"patches per side must be at least 1, got {patches_per_side}")
    half = (patch_size // 2) // 60 * 60
    return patches_per_side * patch_size + half


def tile_layout(n_tiles: int, size_m: int) -> list[TileSpec]:
    """``n_tiles`` tiles on a grid of neighbours that overlap as MGRS tiles do (9.8 km of 109.8 km).

    The first tile is T33UUP at (300000, 5400000); columns go east (UVP, UWP, ...), rows go south
    (UUN, UUM, ...). Upper-left corners stay on 60 m multiples, as in the real grid (399960, ...).
    """
    if not 1 <= n_tiles <= MAX_TILE_COLUMNS**2:
        raise InvalidParameterError(
            f"number of tiles must be between 1 and {MAX_TILE_COLUMNS**2}, got {n_tiles}"
        )
    cols = math.ceil(math.sqrt(n_tiles))
    step = math.floor(size_m * 100_000 / TILE_SIZE_M / 60) * 60
    tiles = []
    for i in range(n_tiles):
        c, r = i % cols, i // cols
        name = "T33U" + _MGRS_COLUMNS[_FIRST_COLUMN + c] + _MGRS_ROWS[(_FIRST_ROW - r) % len(_MGRS_ROWS)]
        tiles.append(TileSpec(name, c, r, FIRST_ULX + c * step, FIRST_ULY - r * step, size_m))
    return tiles


def acquisitions(n: int) -> list[Acquisition]:
    """``n`` acquisition dates: one per season first, then the same seasons 10 days later, and so on."""
    if not 1 <= n <= 12:
        raise InvalidParameterError(f"number of acquisitions must be between 1 and 12, got {n}")
    out = []
    for i in range(n):
        mission, when, season = _BASE_ACQUISITIONS[i % len(_BASE_ACQUISITIONS)]
        out.append(
            Acquisition(i, mission, when + timedelta(days=10 * (i // len(_BASE_ACQUISITIONS))), season)
        )
    return out


def product_specs(
    tiles: list[TileSpec], acqs: list[Acquisition], *, level: str, baseline: str
) -> list[ProductSpec]:
    """One product per (acquisition, tile), with the special roles the tests rely on.

    With three or more products, the second to last is processed at an old baseline (no
    BOA_ADD_OFFSET) and the last fails GEOMETRIC_QUALITY; with two, the last fails the check.
    """
    pairs = [(a, t) for a in acqs for t in tiles]
    n = len(pairs)
    specs = []
    for i, (a, t) in enumerate(pairs):
        roles: list[str] = []
        b, failed = baseline, None
        if n >= 3 and i == n - 2:
            b = OLD_BASELINE
            roles.append("old-baseline")
        if n >= 2 and i == n - 1:
            failed = "GEOMETRIC_QUALITY"
            roles.append("failed-quality")
        specs.append(ProductSpec(i, t, a, level, b, failed, tuple(roles)))
    return specs
