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
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rsprep.core.bands import (
    BANDS_BY_NAME,
    SCL,
    SCL_CLASSES,
    SCL_RESOLUTION,
    SPECTRAL_BANDS,
    parse_bands,
    scl_fractions,
)
from rsprep.core.grid import DEFAULT_PATCH_SIZE_M, TileGrid, check_patch_size, season
from rsprep.core.radiometry import check_mode, harmonize, output_dtype
from rsprep.errors import InvalidParameterError, InvalidProductError, RsprepError
from rsprep.inputs.safe import read_l2a_product, read_product
from rsprep.inputs.safe_bands import read_band
from rsprep.inputs.safe_manifest import Verification, integrity_error, product_inputs, verify_files
from rsprep.stages.runner import DONE, FAILED, SKIPPED, StageResult, check_workers, execute
from rsprep.store.atomic import building, fingerprint_files, write_json_atomic
from rsprep.store.chunks import group_inventory
from rsprep.store.lock import sweep_temporaries
from rsprep.store.workstore import (
    INVENTORY,
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
UNCHANGED = "unchanged input and parameters"

Progress = Callable[[str], None]


@dataclass(frozen=True)
class PatchOptions:
    """Parameters of the patch stage (they decide whether a stored result is current)."""

    patch_size: int = DEFAULT_PATCH_SIZE_M
    bands: tuple[str, ...] = SPECTRAL_BANDS
    harmonize: str = "none"
    verify: bool = True  # check inputs against manifest.safe (not a parameter of the result)

    def __post_init__(self) -> None:
        self.validate()
        object.__setattr__(self, "bands", parse_bands(self.bands))

    def validate(self) -> None:
        """Raises:
        InvalidParameterError: a patch size that is no multiple of 60 m, an unknown harmonisation
            or band.
        """
        check_patch_size(self.patch_size)
        check_mode(self.harmonize)
        parse_bands(self.bands)

    def to_dict(self) -> dict[str, Any]:
        return {"patch_size": self.patch_size, "bands": list(self.bands), "harmonize": self.harmonize}


def patch_product(
    product: str | Path,
    *,
    out: str | Path,
    options: PatchOptions | None = None,
    force: bool = False,
    sen2cor: str | None = None,
    progress: Progress | None = None,
) -> StageResult:
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
    t0 = time.perf_counter()
    opts = options or PatchOptions()
    out = Path(out)
    say = progress or (lambda _s: None)
    downloaded = read_product(product)
    if opts.verify and downloaded.level == "L1C":
        _verify_now(downloaded, opts)  # before sen2cor reads it; sen2cor's own output is ours
    pr, note = read_l2a_product(product, work=out, sen2cor=sen2cor, progress=say)
    notes = [note] if note else []
    files = usable_band_files(pr, opts)
    grid = pr.tile_grid(opts.patch_size)
    dest = out / pr.patch_prefix
    fp = fingerprint_files(pr.source_files(files))
    params = opts.to_dict()
    if not force and (dest / MANIFEST).is_file():
        stored = stored_result(dest, params, fp["digest"])
        if stored is not None:
            patches, valid = stored
            return _result(product, SKIPPED, dest, patches, valid, t0, [UNCHANGED])

    verify = opts.verify and pr.level == downloaded.level  # an L1C input was verified above
    check = Verification(pr, product_inputs(pr, [f.path for f in files])) if verify else nullcontext()
    out.mkdir(parents=True, exist_ok=True)
    with building(dest) as tmp, check:
        valid = _write_store(tmp, pr, files, grid, opts, fp, notes, say)
    return _result(product, DONE, dest, grid.count, valid, t0, notes)


def _result(product, status: str, dest: Path, patches: int, valid: int, t0: float, notes) -> StageResult:
    seconds = time.perf_counter() - t0
    return StageResult(
        STAGE, str(product), status, str(dest), patches, seconds, counts={"valid": valid}, notes=notes
    )


def _verify_now(pr, opts: PatchOptions) -> None:
    """Check the files of ``pr`` that the patch stage uses against its ``manifest.safe`` at once."""
    files = pr.require_bands(opts.bands)
    checked = verify_files(pr, product_inputs(pr, [f.path for f in files]))
    if checked.problems:
        raise integrity_error(pr, checked.problems)


def usable_band_files(pr, opts: PatchOptions) -> list:
    """The band files :func:`patch_product` cuts from ``pr``: the selected bands and SCL of a UTM tile.

    Their fingerprint is the stage's input digest (with :func:`stored_result`, the up-to-date rule).

    Raises:
        InvalidProductError: not a UTM tile, or a band at another resolution than 10, 20 or 60 m.
        RsprepError: a selected band (or SCL) is missing.
    """
    if not pr.is_utm:
        raise InvalidProductError(
            f"{pr.path}: CRS {pr.crs_name or ''} (EPSG:{pr.epsg}) is not UTM; "
            "reBEN patches are cut from Sentinel-2 tiles in their UTM zone (EPSG:326xx / 327xx)"
        )
    files = pr.require_bands([*opts.bands, SCL])
    for f in files:
        if f.resolution not in (10, 20, 60):
            raise InvalidProductError(f"{pr.path}: {f.band} has unexpected resolution {f.resolution} m")
    return files


def stored_result(dest: Path, params: dict[str, Any], inputs_digest: str) -> tuple[int, int] | None:
    """(patches, valid) of the store at ``dest`` when its patch stage is current, else None.

    Current: the manifest records ``params`` (:meth:`PatchOptions.to_dict`), ``inputs_digest`` (the
    fingerprint of :func:`usable_band_files`) and this rsprep version. An unreadable or old store
    gives None (it is rebuilt). :func:`patch_product` skips a current store; the build plan asks
    the same question without writing anything.
    """
    try:
        store = TileStore.open(dest)
        if store.is_current(STAGE, params, inputs_digest):
            p = store.stage(STAGE) or {}
            return p.get("patches", 0), p.get("valid", 0)
    except RsprepError:
        pass  # an unreadable or old store is simply rebuilt
    return None


def _write_store(tmp: Path, pr, files, grid: TileGrid, opts: PatchOptions, fp, notes, say: Progress) -> int:
    """Write the arrays, the patch table and the manifest into the store folder ``tmp``; return valid."""
    table, counts = _cut_product(pr, files, grid, opts, tmp / S2_ARRAYS, say)
    _write_table(table, tmp / PATCH_TABLE)
    manifest = {
        "format": STORE_FORMAT,
        "version": STORE_VERSION,
        "grid": grid.to_dict(),
        "product": pr.facts(opts.bands),
        "stages": {
            STAGE: stage_record(
                opts.to_dict(),
                fp["digest"],
                inputs=fp["files"],
                outputs=[S2_ARRAYS, PATCH_TABLE],
                patches=grid.count,
                valid=counts["valid"],
                notes=notes,
            )
        },
        INVENTORY: {S2_ARRAYS: group_inventory(tmp / S2_ARRAYS)},  # later readers check the chunks
    }
    write_json_atomic(tmp / MANIFEST, manifest)
    return counts["valid"]


def _cut_product(pr, files, grid: TileGrid, opts: PatchOptions, dest: Path, say: Progress):
    """Decode, cut, measure and store every band; return the per-patch table columns and counts."""
    import zarr

    finest = min(BANDS_BY_NAME[b].resolution for b in opts.bands)
    union = np.zeros((grid.n * grid.pixels(finest),) * 2, dtype=bool)
    root = zarr.open_group(dest, mode="w", zarr_format=3)
    root.attrs.update(
        {
            "patch_prefix": grid.patch_prefix,
            "patches_per_side": grid.n,
            "patch_size_m": grid.patch_size,
            "bands": list(opts.bands),
            "order": "row-major: index = y * patches_per_side + x",
        }
    )
    scl_counts = _store_bands(root, pr, files, grid, opts, union, finest, say)
    consolidate(dest)
    return _patch_table(pr, grid, union, scl_counts, finest)


def _store_bands(root, pr, files, grid: TileGrid, opts: PatchOptions, union, finest: int, say: Progress):
    """Decode every band file once, cut it and store its patches; return the SCL class counts.

    Spectral bands mark their nodata in ``union`` (at the ``finest`` resolution) as they pass.
    """
    from rsprep.core import kernels

    n = grid.n
    jobs = [(f.band, f.resolution, pr.gdal_path(f)) for f in files]
    scl_counts = None
    with ThreadPoolExecutor(max_workers=1) as pool:
        # Decode band k+1 while band k is cut and compressed (GDAL releases the GIL while decoding).
        def load(job):
            name, res, path = job
            return read_band(path, n * grid.pixels(res), "uint8" if name == SCL else "uint16")

        pending = pool.submit(load, jobs[0])
        for k, (name, res, _path) in enumerate(jobs):
            say(f"{grid.tile_id} {name}")
            tile = pending.result()
            if k + 1 < len(jobs):
                pending = pool.submit(load, jobs[k + 1])
            if name == SCL:
                scl_counts = _store_scl(root, tile, grid, res)
            else:
                kernels.mark_value_upsampled(union, tile, 0, res // finest)
                patches = kernels.cut_patches(tile, grid.pixels(res), n)
                del tile
                _store_band(root, name, res, patches, grid, pr, opts)
    return scl_counts


def _store_scl(root, tile: np.ndarray, grid: TileGrid, res: int) -> np.ndarray:
    """Store the SCL patches of ``tile`` as uint8; return the class counts per patch."""
    from rsprep.core import kernels

    p, n = grid.pixels(res), grid.n
    scl_counts = kernels.class_counts_per_patch(tile, p, n, len(SCL_CLASSES))
    attrs = {"band": SCL, "resolution_m": res, "classes": {str(k): v for k, v in SCL_CLASSES.items()}}
    arr = create_patch_array(root, SCL, shape=(grid.count, p, p), dtype="uint8", chunk_patches=n, attrs=attrs)
    arr[:] = kernels.cut_patches(tile, p, n)
    return scl_counts


def _store_band(root, name: str, res: int, patches: np.ndarray, grid: TileGrid, pr, opts: PatchOptions):
    """Harmonise one spectral band's (N, p, p) patches and store them as the array ``name``."""
    dtype = output_dtype(opts.harmonize)
    p = grid.pixels(res)
    values = harmonize(
        patches,
        mode=opts.harmonize,
        offset=pr.add_offsets.get(name, 0),
        quantification=pr.quantification_value,
    )
    arr = create_patch_array(
        root,
        name,
        shape=(grid.count, p, p),
        dtype=dtype,
        chunk_patches=grid.n,
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


def _patch_table(pr, grid: TileGrid, union: np.ndarray, scl_counts: np.ndarray, finest: int):
    """The per-patch table columns (names, bounds, validity, nodata and SCL fractions, product facts)."""
    from rsprep.core import kernels

    n, count = grid.n, grid.count
    nodata_px = kernels.count_value_per_patch(union, True, grid.pixels(finest), n)
    area = grid.pixels(finest) ** 2

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
        **scl_fractions(scl_counts, grid.pixels(SCL_RESOLUTION) ** 2),
        "product_id": pr.product_uri,
        "tile": pr.tile_id,
        "sensing_time": pr.sensing_time or pr.datatake_time,
        "season": season(pr.sensing_time or pr.datatake_time),
        "processing_baseline": pr.processing_baseline,
        "quality_passed": pr.quality_passed,
    }
    return table, {"valid": int(valid.sum())}


def _write_table(columns: dict[str, Any], path: Path) -> None:
    """Write the patch table: array columns as they are, one value repeated for every patch."""
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


def _patch_one(
    product: str, out: str, options: PatchOptions, force: bool, sen2cor: str | None
) -> StageResult:
    return patch_product(product, out=out, options=options, force=force, sen2cor=sen2cor)


def patch_products(
    products: Sequence[str | Path],
    *,
    out: str | Path,
    options: PatchOptions | None = None,
    force: bool = False,
    sen2cor: str | None = None,
    workers: int = 1,
    on_result: Callable[[StageResult], None] | None = None,
) -> list[StageResult]:
    """Patch several products (in ``workers`` processes); a failing product never stops the others.

    Returns one :class:`StageResult` per input, in input order; failed ones carry the error message.
    """
    opts = options or PatchOptions()
    check_workers(workers)
    if not products:
        raise InvalidParameterError("no products given; pass SAFE folders or .zip files")
    results: list[StageResult | None] = [None] * len(products)
    tasks, slots = [], []
    first_of: dict[str, str] = {}
    for i, p in enumerate(products):
        # Two inputs with the same patch names (one product given twice, two generations of one
        # datatake) would race for one store: the later one is refused.
        prefix = _prefix_or_none(p) if len(products) > 1 else None
        if prefix is not None and prefix in first_of:
            error = f"{p} gives the same patch names ({prefix}_x_y) as {first_of[prefix]}; pass only one"
            results[i] = StageResult(STAGE, str(p), FAILED, error=error)
            continue
        if prefix is not None:
            first_of[prefix] = str(p)
        tasks.append((STAGE, str(p), _patch_one, (str(p), str(out), opts, force, sen2cor)))
        slots.append(i)
    sweep_temporaries(Path(out))  # half stores of dead runs (their own stores' builds sweep too)
    for i, r in zip(slots, execute(tasks, workers=workers, on_result=on_result), strict=True):
        results[i] = r
    return [r for r in results if r is not None]


def _prefix_or_none(product) -> str | None:
    try:
        return read_product(product, check_files=False).patch_prefix
    except (RsprepError, OSError):
        return None  # the real run reports this product's problem
