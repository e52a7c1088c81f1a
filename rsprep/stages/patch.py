"""``rsprep patch``: cut Sentinel-2 L2A products into reBEN patches (docs/grid.md, docs/workstore.md).

For each product: the complete patch grid, the selected spectral bands per patch at native size,
patch names and bounds, validity (no nodata in any band) and the nodata fraction, SCL cloud /
shadow / snow fractions, season, radiometry, and the quality verdict, written as one work-store
folder (``rsprep.store.workstore``).

Each band file is decoded exactly once, whole, while the previous band is cut, measured and
compressed in the main thread, so the stage costs little more than decoding the JPEG2000 files.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rsprep.core.bands import (
    BANDS_BY_NAME,
    SCL,
    SCL_CLASSES,
    SCL_CLOUD,
    SCL_RESOLUTION,
    SCL_SHADOW,
    SCL_SNOW,
    SPECTRAL_BANDS,
    normalize_band_name,
)
from rsprep.core.grid import DEFAULT_PATCH_SIZE_M, TileGrid, check_patch_size, patches_per_side, season
from rsprep.core.radiometry import check_mode, harmonize, output_dtype
from rsprep.errors import InvalidParameterError, InvalidProductError, RsprepError
from rsprep.store.atomic import building, fingerprint_files, write_json_atomic
from rsprep.store.workstore import (
    MANIFEST,
    PATCH_TABLE,
    S2_ARRAYS,
    STORE_FORMAT,
    STORE_VERSION,
    TileStore,
    consolidate,
    create_patch_array,
    stage_record,
)

log = logging.getLogger(__name__)

STAGE = "patch"

Progress = Callable[[str], None]


@dataclass(frozen=True)
class PatchOptions:
    """Parameters of the patch stage (they decide whether a stored result is current)."""

    patch_size: int = DEFAULT_PATCH_SIZE_M
    bands: tuple[str, ...] = SPECTRAL_BANDS
    harmonize: str = "none"

    def __post_init__(self) -> None:
        check_patch_size(self.patch_size)
        check_mode(self.harmonize)
        object.__setattr__(self, "bands", parse_bands(self.bands))

    def to_dict(self) -> dict[str, Any]:
        return {"patch_size": self.patch_size, "bands": list(self.bands), "harmonize": self.harmonize}


@dataclass
class PatchResult:
    """What happened to one input product."""

    product: str
    status: str  # done | skipped | failed
    store: str | None = None
    patches: int = 0
    valid: int = 0
    seconds: float = 0.0
    error: str | None = None
    notes: list[str] = field(default_factory=list)


def parse_bands(bands: Sequence[str] | str) -> tuple[str, ...]:
    """Normalise a band selection (``"B1,b09"`` or a list) to documented order, without duplicates.

    Raises:
        InvalidParameterError: an unknown or non-spectral band.
    """
    items = bands.split(",") if isinstance(bands, str) else list(bands)
    names = []
    for item in items:
        if not str(item).strip():
            continue
        try:
            name = normalize_band_name(str(item))
        except (KeyError, ValueError) as exc:
            raise InvalidParameterError(
                f"band {item!r} is not a Sentinel-2 band; choose from {','.join(SPECTRAL_BANDS)}"
            ) from exc
        if name not in SPECTRAL_BANDS:
            raise InvalidParameterError(
                f"band {name} is not one of the 12 L2A spectral bands ({','.join(SPECTRAL_BANDS)})"
            )
        names.append(name)
    if not names:
        raise InvalidParameterError("no bands selected; pass e.g. --bands B02,B03,B04")
    return tuple(b for b in SPECTRAL_BANDS if b in set(names))


# --------------------------------------------------------------------------------------------
# One product
# --------------------------------------------------------------------------------------------
def patch_product(
    product: str | Path,
    *,
    out: str | Path,
    options: PatchOptions | None = None,
    force: bool = False,
    sen2cor: str | None = None,
    progress: Progress | None = None,
) -> PatchResult:
    """Patch one product into ``out/<patch prefix>/``.

    Args:
        product: an L2A (or L1C, through sen2cor) SAFE folder or ``.zip``.
        out: the work-store folder.
        options: patch size, bands, harmonisation.
        force: redo even when the stored result is current.
        sen2cor: path of ``L2A_Process`` for L1C input (default: ``$RSPREP_SEN2COR`` or PATH).
        progress: called with a short step description.

    Raises:
        RsprepError: unreadable product, missing or wrongly sized band files, non-UTM CRS, ...
    """
    from rsprep.inputs.safe import read_product

    t0 = time.perf_counter()
    opts = options or PatchOptions()
    out = Path(out)
    say = progress or (lambda _s: None)
    pr = read_product(product)
    notes: list[str] = []
    if pr.level == "L1C":
        from rsprep.inputs.sen2cor import l1c_to_l2a

        say(f"sen2cor {pr.tile_id}")
        l2a_path = l1c_to_l2a(pr, work=out, executable=sen2cor)
        notes.append(f"L1C processed by sen2cor into {l2a_path}")
        pr = read_product(l2a_path)
    if not pr.is_utm:
        raise InvalidProductError(
            f"{pr.path}: CRS {pr.crs_name or ''} (EPSG:{pr.epsg}) is not UTM; "
            "reBEN patches are cut from Sentinel-2 tiles in their UTM zone (EPSG:326xx / 327xx)"
        )
    files = pr.require_bands([*opts.bands, SCL])
    for f in files:
        if f.resolution not in (10, 20, 60):
            raise InvalidProductError(f"{pr.path}: {f.band} has unexpected resolution {f.resolution} m")

    g = pr.geocoding[min(pr.geocoding)]
    n = patches_per_side(pr.tile_size_m, opts.patch_size)
    if n < 1:
        raise InvalidParameterError(
            f"{pr.path}: tile side {pr.tile_size_m:g} m holds no {opts.patch_size} m patch; "
            "use a smaller --patch-size"
        )
    grid = TileGrid(
        tile_id=pr.tile_id,
        epsg=pr.epsg,
        ulx=g.ulx,
        uly=g.uly,
        tile_size_m=pr.tile_size_m,
        patch_size=opts.patch_size,
        n=n,
        patch_prefix=pr.patch_prefix,
    )
    dest = out / pr.patch_prefix
    inputs = _input_files(pr, files)
    fp = fingerprint_files(inputs)
    params = opts.to_dict()
    if not force and (dest / MANIFEST).is_file():
        try:
            store = TileStore.open(dest)
            if store.is_current(STAGE, params, fp["digest"]):
                p = store.stage(STAGE) or {}
                return PatchResult(
                    str(product),
                    "skipped",
                    str(dest),
                    p.get("patches", 0),
                    p.get("valid", 0),
                    time.perf_counter() - t0,
                    notes=["unchanged input and parameters"],
                )
        except RsprepError:
            pass  # an unreadable or old store is simply rebuilt

    out.mkdir(parents=True, exist_ok=True)
    with building(dest) as tmp:
        table, counts = _cut_product(pr, files, grid, opts, tmp / S2_ARRAYS, say)
        _write_table(table, tmp / PATCH_TABLE)
        manifest = {
            "format": STORE_FORMAT,
            "version": STORE_VERSION,
            "grid": grid.to_dict(),
            "product": _product_facts(pr, opts.bands),
            "stages": {
                STAGE: stage_record(
                    params,
                    fp["digest"],
                    inputs=fp["files"],
                    outputs=[S2_ARRAYS, PATCH_TABLE],
                    patches=grid.count,
                    valid=counts["valid"],
                    notes=notes,
                )
            },
        }
        write_json_atomic(tmp / MANIFEST, manifest)
    return PatchResult(
        str(product), "done", str(dest), grid.count, counts["valid"], time.perf_counter() - t0, notes=notes
    )


def _input_files(pr, files) -> list[Path]:
    if pr.path.is_file():  # a zip: its size and mtime cover every member
        return [pr.path]
    root = pr.path / pr.safe_root if pr.safe_root else pr.path
    mtd = "MTD_MSIL2A.xml" if pr.level == "L2A" else "MTD_MSIL1C.xml"
    return [root / mtd, *[root / f.path for f in files]]


def _product_facts(pr, bands: Sequence[str]) -> dict[str, Any]:
    return {
        "path": str(pr.path),
        "product_uri": pr.product_uri,
        "patch_prefix": pr.patch_prefix,
        "level": pr.level,
        "mission": pr.mission,
        "tile_id": pr.tile_id,
        "relative_orbit": pr.relative_orbit,
        "epsg": pr.epsg,
        "datatake_time": _iso(pr.datatake_time),
        "sensing_time": _iso(pr.sensing_time or pr.datatake_time),
        "season": season(pr.sensing_time or pr.datatake_time),
        "processing_baseline": pr.processing_baseline,
        "quantification_value": pr.quantification_value,
        "add_offsets": {b: pr.add_offsets.get(b, 0) for b in bands},
        "quality_passed": pr.quality_passed,
        "failed_quality_checks": pr.failed_quality_checks,
    }


def _iso(t) -> str | None:
    return None if t is None else t.isoformat().replace("+00:00", "Z")


def _read_band(path: str, size: int, expected_dtype: str) -> np.ndarray:
    import rasterio
    import rasterio.errors
    from rasterio.windows import Window

    try:
        with rasterio.open(path) as ds:
            if ds.dtypes[0] != expected_dtype:
                raise InvalidProductError(
                    f"{path}: data type {ds.dtypes[0]}, expected {expected_dtype} "
                    "for a Sentinel-2 L2A band file"
                )
            return ds.read(1, window=Window(0, 0, size, size))
    except rasterio.errors.RasterioIOError as exc:
        raise InvalidProductError(f"{path} cannot be decoded ({exc}); download the product again") from exc


def _cut_product(pr, files, grid: TileGrid, opts: PatchOptions, dest: Path, say: Progress):
    """Decode, cut, measure and store every band; return the per-patch table columns and counts."""
    import zarr

    n, count = grid.n, grid.count
    finest = min(BANDS_BY_NAME[b].resolution for b in opts.bands)
    union = np.zeros((n * grid.pixels(finest),) * 2, dtype=bool)
    root = zarr.open_group(dest, mode="w", zarr_format=3)
    root.attrs.update(
        {
            "patch_prefix": grid.patch_prefix,
            "patches_per_side": n,
            "patch_size_m": grid.patch_size,
            "bands": list(opts.bands),
            "order": "row-major: index = y * patches_per_side + x",
        }
    )
    dtype = output_dtype(opts.harmonize)
    jobs = [(f.band, f.resolution, pr.gdal_path(f)) for f in files]

    from rsprep.core import kernels

    scl_counts = None
    with ThreadPoolExecutor(max_workers=1) as pool:
        # Decode band k+1 while band k is cut and compressed (GDAL releases the GIL while decoding).
        def load(job):
            name, res, path = job
            return _read_band(path, n * grid.pixels(res), "uint8" if name == SCL else "uint16")

        pending = pool.submit(load, jobs[0])
        for k, (name, res, _path) in enumerate(jobs):
            say(f"{grid.tile_id} {name}")
            tile = pending.result()
            if k + 1 < len(jobs):
                pending = pool.submit(load, jobs[k + 1])
            p = grid.pixels(res)
            if name == SCL:
                scl_counts = kernels.class_counts_per_patch(tile, p, n, len(SCL_CLASSES))
                arr = create_patch_array(
                    root,
                    SCL,
                    shape=(count, p, p),
                    dtype="uint8",
                    chunk_patches=n,
                    attrs={
                        "band": SCL,
                        "resolution_m": res,
                        "classes": {str(k): v for k, v in SCL_CLASSES.items()},
                    },
                )
                arr[:] = kernels.cut_patches(tile, p, n)
            else:
                kernels.mark_value_upsampled(union, tile, 0, res // finest)
                patches = kernels.cut_patches(tile, p, n)
                del tile
                values = harmonize(
                    patches,
                    mode=opts.harmonize,
                    offset=pr.add_offsets.get(name, 0),
                    quantification=pr.quantification_value,
                )
                arr = create_patch_array(
                    root,
                    name,
                    shape=(count, p, p),
                    dtype=dtype,
                    chunk_patches=n,
                    fill_value=np.nan if dtype.kind == "f" else 0,
                    attrs={
                        "band": name,
                        "resolution_m": res,
                        "units": "reflectance" if opts.harmonize == "reflectance" else "DN",
                        "harmonize": opts.harmonize,
                        "nodata": None if dtype.kind == "f" else 0,
                        "boa_add_offset": pr.add_offsets.get(name, 0),
                        "quantification_value": pr.quantification_value,
                    },
                )
                arr[:] = values
    consolidate(dest)

    nodata_px = kernels.count_value_per_patch(union, True, grid.pixels(finest), n)
    area = grid.pixels(finest) ** 2
    scl_area = grid.pixels(SCL_RESOLUTION) ** 2

    def frac(classes):
        return scl_counts[:, list(classes)].sum(axis=1) / scl_area

    idx = np.arange(count)
    xs, ys = idx % n, idx // n
    left = grid.ulx + grid.patch_size * xs
    top = grid.uly - grid.patch_size * ys
    valid = nodata_px == 0
    table = {
        "index": idx.astype(np.int32),
        "patch_id": [grid.patch_id(int(x), int(y)) for x, y in zip(xs, ys, strict=True)],
        "x": xs.astype(np.int16),
        "y": ys.astype(np.int16),
        "left": left.astype(np.float64),
        "bottom": (top - grid.patch_size).astype(np.float64),
        "right": (left + grid.patch_size).astype(np.float64),
        "top": top.astype(np.float64),
        "valid": valid,
        "nodata_fraction": nodata_px / area,
        "cloud_fraction": frac(SCL_CLOUD),
        "shadow_fraction": frac(SCL_SHADOW),
        "snow_fraction": frac(SCL_SNOW),
        "scl_nodata_fraction": scl_counts[:, 0] / scl_area,
        "product_id": pr.product_uri,
        "tile": pr.tile_id,
        "sensing_time": pr.sensing_time or pr.datatake_time,
        "season": season(pr.sensing_time or pr.datatake_time),
        "processing_baseline": pr.processing_baseline,
        "quality_passed": pr.quality_passed,
    }
    return table, {"valid": int(valid.sum())}


def _write_table(columns: dict[str, Any], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = len(columns["index"])
    arrays = {}
    for k, v in columns.items():
        if isinstance(v, (np.ndarray, list)):
            arrays[k] = pa.array(v)
        elif k == "sensing_time":
            arrays[k] = pa.array([v] * n, type=pa.timestamp("us", tz="UTC"))
        else:
            arrays[k] = pa.array([v] * n)
    pq.write_table(pa.table(arrays), path, compression="zstd")


# --------------------------------------------------------------------------------------------
# Many products
# --------------------------------------------------------------------------------------------
def _patch_one(args: tuple) -> PatchResult:
    product, out, options, force, sen2cor = args
    t0 = time.perf_counter()
    try:
        return patch_product(product, out=out, options=options, force=force, sen2cor=sen2cor)
    except (RsprepError, OSError) as exc:
        return PatchResult(str(product), "failed", error=str(exc), seconds=time.perf_counter() - t0)


def patch_products(
    products: Sequence[str | Path],
    *,
    out: str | Path,
    options: PatchOptions | None = None,
    force: bool = False,
    sen2cor: str | None = None,
    workers: int = 1,
    on_result: Callable[[PatchResult], None] | None = None,
) -> list[PatchResult]:
    """Patch several products; a failing product never stops the others.

    Returns one :class:`PatchResult` per input, in input order; failed ones carry the error message.
    """
    opts = options or PatchOptions()
    if not products:
        raise InvalidParameterError("no products given; pass SAFE folders or .zip files")
    results: list[PatchResult | None] = [None] * len(products)
    tasks, slots = [], []
    first_of: dict[str, str] = {}
    for i, p in enumerate(products):
        # Two inputs with the same patch names (one product given twice, two generations of one
        # datatake) would race for one store: the later one is refused.
        prefix = _prefix_or_none(p) if len(products) > 1 else None
        if prefix is not None and prefix in first_of:
            results[i] = PatchResult(
                str(p),
                "failed",
                error=f"{p} gives the same patch names ({prefix}_x_y) as {first_of[prefix]}; pass only one",
            )
            continue
        if prefix is not None:
            first_of[prefix] = str(p)
        tasks.append((str(p), str(out), opts, force, sen2cor))
        slots.append(i)
    from rsprep.stages.runner import run_tasks

    for i, r in zip(slots, run_tasks(_patch_one, tasks, workers=workers, on_result=on_result), strict=True):
        results[i] = r
    return [r for r in results if r is not None]


def _prefix_or_none(product) -> str | None:
    from rsprep.inputs.safe import read_product

    try:
        return read_product(product, check_files=False).patch_prefix
    except (RsprepError, OSError):
        return None  # the real run reports this product's problem
