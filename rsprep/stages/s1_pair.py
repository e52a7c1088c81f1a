"""Pairing one tile grid with Sentinel-1 scenes (the rule of docs/grid.md#sentinel-1-patches).

The partner of an S2 patch is the scene that covers it completely with valid data and is closest in
time to the S2 sensing time, within ``max_days`` (and optionally the same season). VV and VH are
resampled bilinearly by GDAL (``rasterio.warp.reproject``; source nodata gets no weight) onto the
patch's 10 m grid: (P/10) × (P/10) float32 dB, same CRS and bounds as the S2 patch.

A scene whose file turns out corrupt while it is read is a :class:`BadS1Error` naming the file, or,
with ``skip_bad``, left out of this tile's pairing and listed in :attr:`Pairing.excluded`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from rsprep.core.grid import TileGrid, s1_patch_name, season
from rsprep.errors import InvalidParameterError
from rsprep.inputs.s1 import FIX, BadS1Error, S1Scene, verify_blocks

log = logging.getLogger(__name__)

# Reasons recorded for S2 patches without a partner.
PAIRED = "paired"
NO_SCENE_IN_TIME = "no scene within the time limit"
NOT_COVERED = "no scene covers it completely with valid data"
INVALID_S2 = "S2 patch not valid"


@dataclass
class Pairing:
    """The outcome for one tile: per patch the partner (or the reason for none), and the paired arrays."""

    scene: list[str | None]
    s1_name: list[str | None]
    delta_hours: list[float | None]
    status: list[str]
    arrays: dict[str, np.ndarray]  # pol → (M, h, w) float32 dB, M = paired patches, in patch order
    array_index: np.ndarray  # (N,) row in ``arrays`` or -1
    excluded: list[str] = field(default_factory=list)  # corrupt scenes left out (``skip_bad``)


def pair_tile(
    grid: TileGrid,
    valid: np.ndarray,
    sensing_time: datetime,
    scenes: Sequence[S1Scene],
    *,
    max_days: float = 10.0,
    same_season: bool = False,
    linear: bool = False,
    polarisations: Sequence[str] = ("VV", "VH"),
    skip_bad: bool = False,
) -> Pairing:
    """Pair the valid patches of one tile grid with their closest fully covering scene.

    Raises:
        BadS1Error: a candidate scene's file is corrupt (unless ``skip_bad``).
    """
    from rasterio.crs import CRS

    if max_days < 0:
        raise InvalidParameterError(f"--max-days {max_days} must not be negative")
    pols = tuple(p.upper() for p in polarisations)
    if sensing_time.tzinfo is None:
        sensing_time = sensing_time.replace(tzinfo=UTC)
    status = [INVALID_S2 if not v else NO_SCENE_IN_TIME for v in valid]
    scene_of: list[S1Scene | None] = [None] * grid.count
    data: dict[int, dict[str, np.ndarray]] = {}
    dst_crs = CRS.from_epsg(grid.epsg)
    candidates = sorted(
        (s for s in scenes if in_reach(s.start, sensing_time, max_days, same_season)),
        key=lambda s: (abs(hours(s.start, sensing_time)), s.name),
    )
    todo = np.asarray(valid, dtype=bool).copy()
    if candidates:
        for i in np.flatnonzero(todo):
            status[i] = NOT_COVERED
    excluded = []
    for scene in candidates:
        if not todo.any():
            break
        try:
            found = _scene_patches(grid, scene, pols, todo, dst_crs, linear)
        except BadS1Error as exc:
            if not skip_bad:
                raise
            excluded.append(str(exc))
            continue
        for i, patch in found.items():
            scene_of[i] = scene
            data[i] = patch
            status[i] = PAIRED
            todo[i] = False
    pairing = _assemble(grid, pols, sensing_time, scene_of, data, status)
    pairing.excluded = excluded
    return pairing


def hours(start: datetime, sensing_time: datetime) -> float:
    """Hours from the S2 sensing time to a scene start (negative: the scene is earlier)."""
    return (start - sensing_time).total_seconds() / 3600.0


def in_reach(start: datetime | None, sensing_time: datetime, max_days: float, same_season: bool) -> bool:
    """Whether a scene starting at ``start`` may partner the S2 time (an unknown start: it may)."""
    if start is None:
        return True
    if same_season and season(start) != season(sensing_time):
        return False
    return abs(hours(start, sensing_time)) <= max_days * 24


def _scene_patches(grid: TileGrid, scene: S1Scene, pols, todo: np.ndarray, dst_crs, linear: bool):
    """The patches still to do that ``scene`` covers completely with valid data: index → pol → array.

    Raises:
        BadS1Error: a file of the scene cannot be opened, or a block it needs is corrupt.
    """
    import rasterio
    from rasterio._err import CPLE_BaseError

    found: dict[int, dict[str, np.ndarray]] = {}
    handles = {}
    try:
        for pol in pols:
            handles[pol] = _open(scene.files[pol])
        ref = handles[pols[0]]
        if ref.crs is None:
            log.warning("scene %s has no CRS; skipped", scene.name)
            return found
        x0, x1, y0, y1 = _window(grid, ref, dst_crs)
        rows = {y: [x for x in range(x0, x1 + 1) if todo[grid.index(x, y)]] for y in range(y0, y1 + 1)}
        rows = {y: row for y, row in rows.items() if row}
        if not rows:
            return found
        box = (min(r[0] for r in rows.values()), max(r[-1] for r in rows.values()), min(rows), max(rows))
        for pol, ds in handles.items():
            verify_blocks(ds, scene.files[pol], _source_window(grid, ds, dst_crs, box), set())
        for y, row in rows.items():
            strips = _resample_strip(handles, grid, y, row[0], row[-1], dst_crs, linear)
            found.update(_complete_patches(strips, grid, y, row, pols))
    except (rasterio.errors.RasterioError, CPLE_BaseError) as exc:
        files = ", ".join(str(scene.files[p]) for p in pols)
        raise BadS1Error(f"Sentinel-1 scene {scene.name} ({files}): {_one_line(exc)}; {FIX}") from exc
    finally:
        for ds in handles.values():
            ds.close()
    return found


def _open(path):
    import rasterio

    try:
        return rasterio.open(path)
    except rasterio.errors.RasterioIOError as exc:
        raise BadS1Error(f"Sentinel-1 file {path}: unreadable ({_one_line(exc)}); {FIX}") from exc


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


def _window(grid: TileGrid, ds, dst_crs) -> tuple[int, int, int, int]:
    """(x0, x1, y0, y1): the inclusive range of patches that the bounds of scene file ``ds`` touch."""
    from rasterio.warp import transform_bounds

    n = grid.n
    left, bottom, right, top = transform_bounds(ds.crs, dst_crs, *ds.bounds, densify_pts=21)
    x0 = max(0, int(np.floor((left - grid.ulx) / grid.patch_size)))
    x1 = min(n - 1, int(np.floor((right - grid.ulx) / grid.patch_size)))
    y0 = max(0, int(np.floor((grid.uly - top) / grid.patch_size)))
    y1 = min(n - 1, int(np.floor((grid.uly - bottom) / grid.patch_size)))
    return x0, x1, y0, y1


def _source_window(grid: TileGrid, ds, dst_crs, box) -> tuple[tuple[int, int], tuple[int, int]]:
    """((row0, row1), (col0, col1)) of scene file ``ds`` under patches ``box`` (x0, x1, y0, y1), padded."""
    from rasterio.warp import transform_bounds
    from rasterio.windows import from_bounds

    x0, x1, y0, y1 = box
    ps = grid.patch_size
    b = (grid.ulx + ps * x0, grid.uly - ps * (y1 + 1), grid.ulx + ps * (x1 + 1), grid.uly - ps * y0)
    w = from_bounds(*transform_bounds(dst_crs, ds.crs, *b, densify_pts=21), transform=ds.transform)
    r0, c0 = int(np.floor(w.row_off)) - 2, int(np.floor(w.col_off)) - 2
    return (r0, int(np.ceil(w.row_off + w.height)) + 2), (c0, int(np.ceil(w.col_off + w.width)) + 2)


def _resample_strip(handles, grid: TileGrid, y: int, xa: int, xb: int, dst_crs, linear: bool):
    """Patches ``xa`` … ``xb`` of patch row ``y`` as one 10 m strip per polarisation (dB; NaN = none)."""
    import rasterio
    from rasterio._err import CPLE_BaseError
    from rasterio.warp import Resampling, reproject

    p = grid.pixels(10)
    strip_left = grid.ulx + grid.patch_size * xa
    strip_top = grid.uly - grid.patch_size * y
    transform = rasterio.Affine(10.0, 0.0, strip_left, 0.0, -10.0, strip_top)
    strips = {}
    for pol, ds in handles.items():
        dst = np.full((p, (xb - xa + 1) * p), np.nan, dtype=np.float32)
        src_nodata = ds.nodata if ds.nodata is not None else np.nan
        try:
            reproject(
                source=rasterio.band(ds, 1),
                destination=dst,
                src_nodata=src_nodata,
                dst_nodata=np.nan,
                dst_transform=transform,
                dst_crs=dst_crs,
                resampling=Resampling.bilinear,
            )
        except (rasterio.errors.RasterioError, CPLE_BaseError) as exc:
            raise BadS1Error(f"Sentinel-1 file {ds.name}: cannot be read ({_one_line(exc)}); {FIX}") from exc
        if linear:
            with np.errstate(divide="ignore", invalid="ignore"):
                dst = np.where(dst > 0, 10.0 * np.log10(dst), np.nan).astype(np.float32)
        strips[pol] = dst
    return strips


def _complete_patches(strips, grid: TileGrid, y: int, row: Sequence[int], pols):
    """The patches of ``row`` (x values, the first at the strip's left edge) with no NaN in any strip."""
    p = grid.pixels(10)
    xa = row[0]
    found = {}
    for x in row:
        c = (x - xa) * p
        patch = {pol: strips[pol][:, c : c + p] for pol in pols}
        if all(np.isfinite(a).all() for a in patch.values()):
            found[grid.index(x, y)] = {pol: np.ascontiguousarray(a) for pol, a in patch.items()}
    return found


def _assemble(grid: TileGrid, pols, sensing_time: datetime, scene_of, data, status) -> Pairing:
    """The :class:`Pairing` of a tile: paired arrays stacked in patch order, names and time gaps."""
    p = grid.pixels(10)
    order = sorted(data)
    array_index = np.full(grid.count, -1, dtype=np.int32)
    array_index[order] = np.arange(len(order), dtype=np.int32)
    arrays = {
        pol: (np.stack([data[i][pol] for i in order]) if order else np.zeros((0, p, p), np.float32))
        for pol in pols
    }
    return Pairing(
        scene=[s.name if s else None for s in scene_of],
        s1_name=[
            s1_patch_name(s.name, grid.tile_id, *grid.xy(i)) if s else None for i, s in enumerate(scene_of)
        ],
        delta_hours=[round(hours(s.start, sensing_time), 4) if s else None for s in scene_of],
        status=status,
        arrays=arrays,
        array_index=array_index,
    )
