"""``rsprep s1``: pair every valid Sentinel-2 patch with a Sentinel-1 scene (docs/inputs.md, docs/grid.md).

The partner of an S2 patch is the scene that covers it completely with valid data and is closest in
time to the S2 sensing time, within ``max_days`` (and optionally the same season). VV and VH are
resampled bilinearly by GDAL (``rasterio.warp.reproject``; source nodata gets no weight) onto the
patch's 10 m grid: (P/10) × (P/10) float32 dB, same CRS and bounds as the S2 patch.

Scenes are found by ``rsprep.inputs.s1.find_scenes`` (GeoTIFFs in any CRS, one file per
polarisation).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from rsprep.core.grid import TileGrid, s1_patch_name, season
from rsprep.errors import InvalidParameterError
from rsprep.inputs.s1 import POLARISATIONS, S1Discovery, S1Scene, find_scenes
from rsprep.stages.runner import DONE, SKIPPED, StageResult, check_workers, execute, store_tasks
from rsprep.store.atomic import building, digest, fingerprint_files
from rsprep.store.workstore import (
    PATCH_TABLE,
    S1_ARRAYS,
    S1_TABLE,
    TileStore,
    consolidate,
    create_patch_array,
    find_stores,
    stage_record,
)

log = logging.getLogger(__name__)

STAGE = "s1"

# Reasons recorded for S2 patches without a partner.
PAIRED = "paired"
NO_SCENE_IN_TIME = "no scene within the time limit"
NOT_COVERED = "no scene covers it completely with valid data"
INVALID_S2 = "S2 patch not valid"


@dataclass(frozen=True)
class S1Options:
    """Which scene may partner an S2 patch, and how its values are read."""

    max_days: float = 10.0  # largest |S1 start - S2 sensing time|
    same_season: bool = False  # also require the S2 patch's meteorological season
    linear: bool = False  # scenes hold linear backscatter: convert to dB
    polarisations: tuple[str, ...] = ("VV", "VH")

    def __post_init__(self) -> None:
        object.__setattr__(self, "polarisations", tuple(p.upper() for p in self.polarisations))

    def validate(self) -> None:
        """Raises:
        InvalidParameterError: a negative ``--max-days``, or no / an unknown polarisation.
        """
        if not self.max_days >= 0:
            raise InvalidParameterError(f"--max-days {self.max_days} must not be negative")
        bad = [p for p in self.polarisations if p not in POLARISATIONS]
        if bad or not self.polarisations:
            raise InvalidParameterError(
                f"polarisation(s) {bad or self.polarisations} not among {', '.join(POLARISATIONS)}"
            )

    def parameters(self) -> dict:
        """What decides whether a stored pairing is current (as recorded in the manifest)."""
        return {
            "max_days": self.max_days,
            "same_season": self.same_season,
            "linear": self.linear,
            "polarisations": list(self.polarisations),
        }


@dataclass
class Pairing:
    """The outcome for one tile: per patch the partner (or the reason for none), and the paired arrays."""

    scene: list[str | None]
    s1_name: list[str | None]
    delta_hours: list[float | None]
    status: list[str]
    arrays: dict[str, np.ndarray]  # pol → (M, h, w) float32 dB, M = paired patches, in patch order
    array_index: np.ndarray  # (N,) row in ``arrays`` or -1


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
) -> Pairing:
    """Pair the valid patches of one tile grid with their closest fully covering scene."""
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
    candidates = _candidates(scenes, sensing_time, max_days, same_season)
    todo = np.asarray(valid, dtype=bool).copy()
    if candidates:
        for i in np.flatnonzero(todo):
            status[i] = NOT_COVERED
    for scene in candidates:
        if not todo.any():
            break
        for i, patch in _scene_patches(grid, scene, pols, todo, dst_crs, linear).items():
            scene_of[i] = scene
            data[i] = patch
            status[i] = PAIRED
            todo[i] = False
    return _assemble(grid, pols, sensing_time, scene_of, data, status)


def _hours(scene: S1Scene, sensing_time: datetime) -> float:
    """Hours from the S2 sensing time to the scene start (negative: the scene is earlier)."""
    return (scene.start - sensing_time).total_seconds() / 3600.0


def _candidates(
    scenes: Sequence[S1Scene], sensing_time: datetime, max_days: float, same_season: bool
) -> list[S1Scene]:
    """The scenes within ``max_days`` of the sensing time (and in its season), closest first."""
    return sorted(
        (
            s
            for s in scenes
            if abs(_hours(s, sensing_time)) <= max_days * 24
            and (not same_season or season(s.start) == season(sensing_time))
        ),
        key=lambda s: (abs(_hours(s, sensing_time)), s.name),
    )


def _scene_patches(grid: TileGrid, scene: S1Scene, pols, todo: np.ndarray, dst_crs, linear: bool):
    """The patches still to do that ``scene`` covers completely with valid data: index → pol → array."""
    import rasterio

    found: dict[int, dict[str, np.ndarray]] = {}
    handles = {pol: rasterio.open(scene.files[pol]) for pol in pols}
    try:
        ref = handles[pols[0]]
        if ref.crs is None:
            log.warning("scene %s has no CRS; skipped", scene.name)
            return found
        x0, x1, y0, y1 = _window(grid, ref, dst_crs)
        for y in range(y0, y1 + 1):
            row = [x for x in range(x0, x1 + 1) if todo[grid.index(x, y)]]
            if row:
                strips = _resample_strip(handles, grid, y, row[0], row[-1], dst_crs, linear)
                found.update(_complete_patches(strips, grid, y, row, pols))
    finally:
        for ds in handles.values():
            ds.close()
    return found


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


def _resample_strip(handles, grid: TileGrid, y: int, xa: int, xb: int, dst_crs, linear: bool):
    """Patches ``xa`` … ``xb`` of patch row ``y`` as one 10 m strip per polarisation (dB; NaN = none)."""
    import rasterio
    from rasterio.warp import Resampling, reproject

    p = grid.pixels(10)
    strip_left = grid.ulx + grid.patch_size * xa
    strip_top = grid.uly - grid.patch_size * y
    transform = rasterio.Affine(10.0, 0.0, strip_left, 0.0, -10.0, strip_top)
    strips = {}
    for pol, ds in handles.items():
        dst = np.full((p, (xb - xa + 1) * p), np.nan, dtype=np.float32)
        src_nodata = ds.nodata if ds.nodata is not None else np.nan
        reproject(
            source=rasterio.band(ds, 1),
            destination=dst,
            src_nodata=src_nodata,
            dst_nodata=np.nan,
            dst_transform=transform,
            dst_crs=dst_crs,
            resampling=Resampling.bilinear,
        )
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
        delta_hours=[round(_hours(s, sensing_time), 4) if s else None for s in scene_of],
        status=status,
        arrays=arrays,
        array_index=array_index,
    )


# --------------------------------------------------------------------------------------------
# The stage on the work store
# --------------------------------------------------------------------------------------------
def s1_store(
    store: TileStore, discovery: S1Discovery, options: S1Options | None = None, *, force: bool = False
) -> StageResult:
    """Run the pairing for one tile store and write ``s1.zarr`` and ``s1.parquet``.

    Raises:
        WorkStoreError: the patch stage has not run.
        InvalidParameterError: an option out of range.
    """
    t0 = time.perf_counter()
    opts = options or S1Options()
    opts.validate()
    patch_rec = store.require_stage("patch", "run `rsprep patch` first")
    pols = list(opts.polarisations)
    params = opts.parameters()
    scene_fp = fingerprint_files([f for s in discovery.scenes for f in s.files.values()])
    inputs = digest([patch_rec["inputs_digest"], patch_rec["parameters"], scene_fp["digest"]])
    if not force and store.is_current(STAGE, params, inputs) and (store.path / S1_TABLE).is_file():
        rec = store.stage(STAGE) or {}
        return _result(store, SKIPPED, rec.get("valid", 0), rec.get("paired", 0), t0)

    table = store.table(PATCH_TABLE)
    valid = np.asarray(table["valid"].to_numpy(zero_copy_only=False), dtype=bool)
    sensing = datetime.fromisoformat(store.product["sensing_time"].replace("Z", "+00:00"))
    grid = store.grid
    pairing = pair_tile(
        grid,
        valid,
        sensing,
        discovery.scenes,
        max_days=opts.max_days,
        same_season=opts.same_season,
        linear=opts.linear,
        polarisations=pols,
    )
    m = int((pairing.array_index >= 0).sum())
    # Both outputs are complete before either replaces its predecessor (table last, arrays first).
    with (
        building(store.path / S1_ARRAYS) as tmp_arrays,
        building(store.path / S1_TABLE, folder=False) as tmp_table,
    ):
        _write_arrays(tmp_arrays, pairing, pols, grid, m)
        _write_table(tmp_table, table, pairing)
    store.record_stage(
        STAGE,
        stage_record(
            params,
            inputs,
            outputs=[S1_ARRAYS, S1_TABLE],
            scenes=scene_fp["files"],
            paired=m,
            valid=int(valid.sum()),
        ),
    )
    return _result(store, DONE, int(valid.sum()), m, t0)


def _result(store: TileStore, status: str, valid: int, paired: int, t0: float) -> StageResult:
    """``patches`` counts the valid S2 patches (those that can have a partner)."""
    path, seconds = str(store.path), time.perf_counter() - t0
    return StageResult(STAGE, path, status, path, valid, seconds, counts={"paired": paired, "valid": valid})


def _write_arrays(path: Path, pairing: Pairing, pols: Sequence[str], grid: TileGrid, m: int) -> None:
    """Write the ``m`` paired patches of every polarisation as a zarr v3 group at ``path``."""
    import zarr

    root = zarr.open_group(path, mode="w", zarr_format=3)
    for pol in pols:
        arr = create_patch_array(
            root,
            pol,
            shape=(m, grid.pixels(10), grid.pixels(10)),
            dtype="float32",
            chunk_patches=grid.n,
            fill_value=np.nan,
            attrs={"polarisation": pol, "units": "dB", "resolution_m": 10, "resampling": "bilinear"},
        )
        if m:
            arr[:] = pairing.arrays[pol]
    consolidate(path)


def _write_table(path: Path, table, pairing: Pairing) -> None:
    """Write the per-patch pairing table (partner, time gap, array row, status) as Parquet at ``path``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = pa.table(
        {
            "index": table["index"],
            "patch_id": table["patch_id"],
            "s1_name": pa.array(pairing.s1_name, pa.string()),
            "s1_product": pa.array(pairing.scene, pa.string()),
            "s1_delta_hours": pa.array(pairing.delta_hours, pa.float64()),
            "s1_index": pa.array(pairing.array_index, pa.int32()),
            "s1_status": pa.array(pairing.status, pa.string()),
        }
    )
    pq.write_table(out, path, compression="zstd")


def s1_work(
    work: str | Path,
    s1_dir: str | Path,
    options: S1Options | None = None,
    *,
    workers: int = 1,
    force: bool = False,
    on_result: Callable[[StageResult], None] | None = None,
) -> tuple[list[StageResult], S1Discovery]:
    """Pair every store of ``work`` (in ``workers`` processes); a failing store never stops the others.

    The scenes under ``s1_dir`` are found once, before any store is touched.
    """
    opts = options or S1Options()
    opts.validate()
    check_workers(workers)
    stores = find_stores(work)
    discovery = find_scenes(s1_dir, polarisations=opts.polarisations)
    for msg in discovery.skipped:
        log.warning("%s", msg)
    tasks = store_tasks(STAGE, _s1_one, stores, discovery, opts, force)
    return execute(tasks, workers=workers, on_result=on_result), discovery


def _s1_one(path: str, discovery: S1Discovery, options: S1Options, force: bool) -> StageResult:
    return s1_store(TileStore.open(path), discovery, options, force=force)
