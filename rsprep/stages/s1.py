"""``rsprep s1``: pair every valid Sentinel-2 patch with a Sentinel-1 scene (docs/inputs.md, docs/grid.md).

The partner of an S2 patch is the scene that covers it completely with valid data and is closest in
time to the S2 sensing time, within ``max_days`` (and optionally the same season). VV and VH are
resampled bilinearly by GDAL (``rasterio.warp.reproject``; source nodata gets no weight) onto the
patch's 10 m grid: (P/10) × (P/10) float32 dB, same CRS and bounds as the S2 patch.

Scenes are GeoTIFFs in any CRS, one file per polarisation, found recursively. The scene name is the
``S1_PRODUCT`` tag or the file name without its polarisation token; the start time is the
``START_TIME`` tag or the first ``YYYYMMDDTHHMMSS`` in the name.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from rsprep.core.grid import TileGrid, s1_patch_name, season
from rsprep.errors import InputNotFoundError, InvalidParameterError, RsprepError
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
POLARISATIONS = ("VV", "VH", "HH", "HV")
_POL_TOKEN = re.compile(r"(?:^|[_\-.])(VV|VH|HH|HV)(?=$|[_\-.])", re.IGNORECASE)
_TIME = re.compile(r"(\d{8}T\d{6})")

# Reasons recorded for S2 patches without a partner.
PAIRED = "paired"
NO_SCENE_IN_TIME = "no scene within the time limit"
NOT_COVERED = "no scene covers it completely with valid data"
INVALID_S2 = "S2 patch not valid"


@dataclass(frozen=True)
class S1Scene:
    """One Sentinel-1 scene: a GeoTIFF per polarisation."""

    name: str
    start: datetime
    files: dict[str, Path] = field(hash=False)


@dataclass
class S1Discovery:
    scenes: list[S1Scene]
    skipped: list[str]  # why files or scenes were not usable


@dataclass
class S1Result:
    store: str
    status: str  # done | skipped | failed
    patches: int = 0  # valid S2 patches
    paired: int = 0
    seconds: float = 0.0
    error: str | None = None


def find_scenes(s1_dir: str | Path, *, polarisations: Sequence[str] = ("VV", "VH")) -> S1Discovery:
    """Find the scenes under ``s1_dir`` that have every requested polarisation.

    Raises:
        InputNotFoundError: ``s1_dir`` does not exist.
        InvalidParameterError: no usable scene, or an unknown polarisation.
    """
    import rasterio

    pols = tuple(p.upper() for p in polarisations)
    bad = [p for p in pols if p not in POLARISATIONS]
    if bad or not pols:
        raise InvalidParameterError(f"polarisation(s) {bad or pols} not among {', '.join(POLARISATIONS)}")
    root = Path(s1_dir)
    if not root.is_dir():
        raise InputNotFoundError(f"Sentinel-1 folder {root} does not exist")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".tif", ".tiff") and p.is_file())
    groups: dict[str, dict[str, Path]] = {}
    starts: dict[str, datetime] = {}
    skipped: list[str] = []
    for f in files:
        try:
            with rasterio.open(f) as ds:
                tags = ds.tags()
        except rasterio.errors.RasterioIOError as exc:
            skipped.append(f"{f}: unreadable ({exc})")
            continue
        pol = (tags.get("POLARISATION") or tags.get("POLARIZATION") or "").upper()
        m = _POL_TOKEN.search(f.stem)
        if not pol and m:
            pol = m.group(1).upper()
        if pol not in POLARISATIONS:
            skipped.append(f"{f}: no polarisation (tag POLARISATION or _VV/_VH in the name)")
            continue
        name = tags.get("S1_PRODUCT") or (_POL_TOKEN.sub("", f.stem, count=1) if m else f.stem)
        start = _parse_start(tags.get("START_TIME")) or _parse_start(name)
        if start is None:
            skipped.append(f"{f}: no start time (tag START_TIME or YYYYMMDDTHHMMSS in the name)")
            continue
        if pol in groups.setdefault(name, {}):
            skipped.append(f"{f}: second {pol} file of scene {name} (keeping {groups[name][pol]})")
            continue
        groups[name][pol] = f
        starts[name] = start
    scenes = []
    for name in sorted(groups):
        missing = [p for p in pols if p not in groups[name]]
        if missing:
            skipped.append(f"scene {name}: no {'/'.join(missing)} file (use --pol to pair with fewer)")
            continue
        scenes.append(S1Scene(name, starts[name], {p: groups[name][p] for p in pols}))
    if not scenes:
        detail = "; ".join(skipped[:5]) or "no .tif files"
        raise InvalidParameterError(f"no usable Sentinel-1 scene in {root}: {detail}")
    return S1Discovery(scenes, skipped)


def _parse_start(value: str | None) -> datetime | None:
    if not value:
        return None
    for fmt in ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%S"):
        try:
            return datetime.strptime(value, fmt).replace(tzinfo=UTC)
        except ValueError:
            pass
    m = _TIME.search(value)
    return datetime.strptime(m.group(1), "%Y%m%dT%H%M%S").replace(tzinfo=UTC) if m else None


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
    import rasterio
    from rasterio.crs import CRS
    from rasterio.warp import Resampling, reproject, transform_bounds

    if max_days < 0:
        raise InvalidParameterError(f"--max-days {max_days} must not be negative")
    pols = tuple(p.upper() for p in polarisations)
    n, p = grid.n, grid.pixels(10)
    count = grid.count
    if sensing_time.tzinfo is None:
        sensing_time = sensing_time.replace(tzinfo=UTC)
    status = [INVALID_S2 if not v else NO_SCENE_IN_TIME for v in valid]
    scene_of: list[S1Scene | None] = [None] * count
    data: dict[int, dict[str, np.ndarray]] = {}
    dst_crs = CRS.from_epsg(grid.epsg)

    def dt_hours(s: S1Scene) -> float:
        return (s.start - sensing_time).total_seconds() / 3600.0

    candidates = sorted(
        (
            s
            for s in scenes
            if abs(dt_hours(s)) <= max_days * 24
            and (not same_season or season(s.start) == season(sensing_time))
        ),
        key=lambda s: (abs(dt_hours(s)), s.name),
    )
    todo = np.asarray(valid, dtype=bool).copy()
    if candidates:
        for i in np.flatnonzero(todo):
            status[i] = NOT_COVERED
    for scene in candidates:
        if not todo.any():
            break
        handles = {pol: rasterio.open(scene.files[pol]) for pol in pols}
        try:
            ref = handles[pols[0]]
            if ref.crs is None:
                log.warning("scene %s has no CRS; skipped", scene.name)
                continue
            left, bottom, right, top = transform_bounds(ref.crs, dst_crs, *ref.bounds, densify_pts=21)
            x0 = max(0, int(np.floor((left - grid.ulx) / grid.patch_size)))
            x1 = min(n - 1, int(np.floor((right - grid.ulx) / grid.patch_size)))
            y0 = max(0, int(np.floor((grid.uly - top) / grid.patch_size)))
            y1 = min(n - 1, int(np.floor((grid.uly - bottom) / grid.patch_size)))
            for y in range(y0, y1 + 1):
                row = [x for x in range(x0, x1 + 1) if todo[grid.index(x, y)]]
                if not row:
                    continue
                xa, xb = row[0], row[-1]
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
                for x in row:
                    c = (x - xa) * p
                    patch = {pol: strips[pol][:, c : c + p] for pol in pols}
                    if all(np.isfinite(a).all() for a in patch.values()):
                        i = grid.index(x, y)
                        scene_of[i] = scene
                        data[i] = {pol: np.ascontiguousarray(a) for pol, a in patch.items()}
                        status[i] = PAIRED
                        todo[i] = False
        finally:
            for ds in handles.values():
                ds.close()

    order = sorted(data)
    array_index = np.full(count, -1, dtype=np.int32)
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
        delta_hours=[round(dt_hours(s), 4) if s else None for s in scene_of],
        status=status,
        arrays=arrays,
        array_index=array_index,
    )


# --------------------------------------------------------------------------------------------
# The stage on the work store
# --------------------------------------------------------------------------------------------
def s1_store(
    store: TileStore,
    discovery: S1Discovery,
    *,
    max_days: float = 10.0,
    same_season: bool = False,
    linear: bool = False,
    polarisations: Sequence[str] = ("VV", "VH"),
    force: bool = False,
) -> S1Result:
    """Run the pairing for one tile store and write ``s1.zarr`` and ``s1.parquet``."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import zarr

    t0 = time.perf_counter()
    patch_rec = store.require_stage("patch", "run `rsprep patch` first")
    pols = [p.upper() for p in polarisations]
    params = {"max_days": max_days, "same_season": same_season, "linear": linear, "polarisations": pols}
    scene_fp = fingerprint_files([f for s in discovery.scenes for f in s.files.values()])
    inputs = digest([patch_rec["inputs_digest"], patch_rec["parameters"], scene_fp["digest"]])
    if not force and store.is_current(STAGE, params, inputs) and (store.path / S1_TABLE).is_file():
        rec = store.stage(STAGE) or {}
        return S1Result(
            str(store.path), "skipped", rec.get("valid", 0), rec.get("paired", 0), time.perf_counter() - t0
        )

    table = store.table(PATCH_TABLE)
    valid = np.asarray(table["valid"].to_numpy(zero_copy_only=False), dtype=bool)
    sensing = datetime.fromisoformat(store.product["sensing_time"].replace("Z", "+00:00"))
    grid = store.grid
    pairing = pair_tile(
        grid,
        valid,
        sensing,
        discovery.scenes,
        max_days=max_days,
        same_season=same_season,
        linear=linear,
        polarisations=pols,
    )
    m = int((pairing.array_index >= 0).sum())
    # Both outputs are complete before either replaces its predecessor (table last, arrays first).
    with (
        building(store.path / S1_ARRAYS) as tmp_arrays,
        building(store.path / S1_TABLE, folder=False) as tmp_table,
    ):
        root = zarr.open_group(tmp_arrays, mode="w", zarr_format=3)
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
        consolidate(tmp_arrays)
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
        pq.write_table(out, tmp_table, compression="zstd")
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
    return S1Result(str(store.path), "done", int(valid.sum()), m, time.perf_counter() - t0)


def s1_work(
    work: str | Path,
    s1_dir: str | Path,
    *,
    max_days: float = 10.0,
    same_season: bool = False,
    linear: bool = False,
    polarisations: Sequence[str] = ("VV", "VH"),
    force: bool = False,
    on_result: Callable[[S1Result], None] | None = None,
) -> tuple[list[S1Result], S1Discovery]:
    """Pair every store of ``work``; a failing store never stops the others."""
    stores = find_stores(work)
    discovery = find_scenes(s1_dir, polarisations=polarisations)
    for msg in discovery.skipped:
        log.warning("%s", msg)
    results = []
    for store in stores:
        try:
            r = s1_store(
                store,
                discovery,
                max_days=max_days,
                same_season=same_season,
                linear=linear,
                polarisations=polarisations,
                force=force,
            )
        except (RsprepError, OSError) as exc:
            r = S1Result(str(store.path), "failed", error=str(exc))
        results.append(r)
        if on_result:
            on_result(r)
    return results, discovery
