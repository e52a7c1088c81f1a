"""``rsprep reference``: CLC reference maps and scene-level labels for every patch of a tile store.

Per store: read the CLC polygons whose envelope meets the tile (bbox filter at read time),
reproject them to the tile CRS, rasterize the whole grid once at 10 m straight into patch layout
(pixel-centre rule, burn value = CLC code, 0 where no polygon; identical to GDAL's rasterizer),
then histogram codes per patch and apply the label rule (:mod:`rsprep.core.labels`).

Outputs in the store (atomic, skipped when parameters and inputs are unchanged):
``reference.zarr/reference_map`` uint16 (N, P/10, P/10) aligned with ``s2.zarr``, and
``labels.parquet`` (one row per grid patch; layout in docs/workstore.md).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rsprep.core.grid import TileGrid
from rsprep.core.labels import CODE_BINS, DEFAULT_MAX_UNLABELED, PatchLabels, label_patches
from rsprep.core.nomenclature import Nomenclature
from rsprep.core.nomenclature import get as get_nomenclature
from rsprep.core.rasterize import rasterize_patches
from rsprep.errors import InvalidParameterError
from rsprep.inputs.clc import ClcSource, open_clc, read_clc
from rsprep.stages.runner import DONE, SKIPPED, StageResult, check_workers, execute, store_tasks
from rsprep.store.atomic import building, digest, fingerprint_files
from rsprep.store.workstore import (
    LABELS_TABLE,
    REFERENCE_ARRAYS,
    TileStore,
    consolidate,
    create_patch_array,
    find_stores,
    stage_record,
)

STAGE = "reference"
STATUS_LABELED = "labeled"
STATUS_TOO_UNLABELED = "unlabeled_fraction_too_high"
STATUS_QUALITY_FAILED = "quality_failed"


@dataclass(frozen=True)
class ReferenceOptions:
    """What the reference stage does besides the CLC file itself."""

    nomenclature: str = "ben19"
    max_unlabeled: float = DEFAULT_MAX_UNLABELED

    def validate(self) -> Nomenclature:
        if not 0.0 < self.max_unlabeled <= 1.0:
            raise InvalidParameterError(
                f"--max-unlabeled {self.max_unlabeled} is outside (0, 1]; reBEN uses 0.25"
            )
        return get_nomenclature(self.nomenclature)


def grid_maps(source: ClcSource, grid: TileGrid) -> tuple[np.ndarray, int]:
    """Reference maps of every patch of ``grid``: uint16 (N, P/10, P/10), and the polygons read."""
    p = grid.pixels(10)
    extent = grid.n * grid.patch_size
    bounds = (grid.ulx, grid.uly - extent, grid.ulx + extent, grid.uly)
    polys = read_clc(source, bounds, f"EPSG:{grid.epsg}")
    maps = rasterize_patches(polys.geometries, polys.codes, ulx=grid.ulx, uly=grid.uly, res=10, p=p, n=grid.n)
    return maps, len(polys.codes)


def reference_store(
    store: TileStore, source: ClcSource, options: ReferenceOptions | None = None, *, force: bool = False
) -> StageResult:
    """Write ``reference.zarr`` and ``labels.parquet`` for one tile store.

    Raises:
        WorkStoreError: the patch stage has not run.
        ClcError: unusable CLC data for this tile (bad codes, CRS that cannot be transformed).
    """
    t0 = time.perf_counter()
    opts = options or ReferenceOptions()
    nomenclature = opts.validate()
    store.require_stage("patch", "run `rsprep patch` first")
    grid = store.grid
    params = parameters(source, opts)
    quality_passed = bool(store.product.get("quality_passed", True))
    inputs = inputs_digest(grid, quality_passed, source)
    rec = store.stage(STAGE)
    outputs_there = (store.path / REFERENCE_ARRAYS).is_dir() and (store.path / LABELS_TABLE).is_file()
    if not force and outputs_there and store.is_current(STAGE, params, inputs):
        counts = {"labeled": rec.get("labeled", 0), "polygons": rec.get("polygons", 0)}
        return _result(store, SKIPPED, grid.count, t0, counts)
    maps, n_polygons = grid_maps(source, grid)
    warnings = _overlap_warnings(store, source, grid, n_polygons)
    labels = label_patches(maps, nomenclature, opts.max_unlabeled)
    table = label_table(store, labels, quality_passed)
    labeled = int(np.count_nonzero(labels.rule_passed)) if quality_passed else 0
    _write_outputs(store, grid, source, maps, table)
    store.record_stage(
        STAGE,
        stage_record(
            params,
            inputs,
            outputs=[REFERENCE_ARRAYS, LABELS_TABLE],
            patches=grid.count,
            labeled=labeled,
            polygons=n_polygons,
        ),
    )
    return _result(store, DONE, grid.count, t0, {"labeled": labeled, "polygons": n_polygons}, warnings)


def parameters(source: ClcSource, options: ReferenceOptions) -> dict:
    """The parameters the reference stage records for ``source`` and ``options`` (its up-to-date rule).

    Raises:
        InvalidParameterError: an unknown nomenclature or a ``max_unlabeled`` outside [0, 1].
    """
    return {
        "clc": source.describe(),
        "clc_crs": source.crs,
        "nomenclature": options.validate().name,
        "max_unlabeled": options.max_unlabeled,
    }


def inputs_digest(grid: TileGrid, quality_passed: bool, source: ClcSource) -> str:
    """The digest of what a stored result depends on besides :func:`parameters`: the tile grid,
    whether the product passed the quality check, and the fingerprint of the CLC files.

    :func:`reference_store` skips a store whose record holds both (and this rsprep version); the
    build plan asks the same question without writing anything.
    """
    return digest(
        {
            "grid": grid.to_dict(),
            "quality_passed": quality_passed,
            "clc_files": fingerprint_files(list(source.files))["digest"],
        }
    )


def _overlap_warnings(store: TileStore, source: ClcSource, grid: TileGrid, n_polygons: int) -> list[str]:
    """A warning when no CLC polygon overlaps the tile (all its patches are then unlabeled)."""
    if n_polygons != 0:
        return []
    return [
        f"{store.name}: no CLC polygon of {source.path} (layer {source.layer}) overlaps tile "
        f"{grid.tile_id}; all {grid.count} patches are unlabeled"
    ]


def _write_outputs(store: TileStore, grid: TileGrid, source: ClcSource, maps: np.ndarray, table) -> None:
    """Write ``reference.zarr`` (the maps, consolidated) and ``labels.parquet``, each atomically."""
    import pyarrow.parquet as pq
    import zarr

    with (
        building(store.path / REFERENCE_ARRAYS) as tmp_arrays,
        building(store.path / LABELS_TABLE, folder=False) as tmp_table,
    ):
        root = zarr.open_group(tmp_arrays, mode="w", zarr_format=3)
        arr = create_patch_array(
            root,
            "reference_map",
            shape=maps.shape,
            dtype="uint16",
            chunk_patches=grid.n,
            fill_value=0,
            attrs={
                "values": "CLC level-3 codes (e.g. 211); 0 = no CLC polygon; 999 = CLC NODATA",
                "rasterization": "pixel-centre rule (GDAL, ALL_TOUCHED=FALSE), 10 m, tile CRS",
                "resolution_m": 10,
                "crs": f"EPSG:{grid.epsg}",
                "clc": source.describe(),
            },
        )
        arr[:] = maps
        consolidate(tmp_arrays)
        pq.write_table(table, tmp_table, compression="zstd")


def _result(store: TileStore, status: str, patches: int, t0: float, counts: dict, warnings=()) -> StageResult:
    seconds = time.perf_counter() - t0
    path = str(store.path)
    return StageResult(STAGE, path, status, path, patches, seconds, counts=counts, warnings=list(warnings))


def label_table(store: TileStore, labels: PatchLabels, quality_passed: bool):
    """The ``labels.parquet`` table of one store (one row per grid patch, in index order)."""
    import pyarrow as pa

    grid = store.grid
    nom = labels.nomenclature
    n = grid.count
    ok = labels.rule_passed & quality_passed
    status = np.where(
        ~np.full(n, quality_passed), STATUS_QUALITY_FAILED, np.where(ok, STATUS_LABELED, STATUS_TOO_UNLABELED)
    )
    xy = [grid.xy(i) for i in range(n)]
    alpha = labels.multi_hot("alphabetical")
    native = labels.multi_hot("native")
    null = ~ok

    def ragged(mask: np.ndarray, values: np.ndarray, arrow_type, row_mask=None):
        # one list per row holding values[i, j] for the j where mask[i, j], in column order
        rows, cols = np.nonzero(mask)
        offsets = np.zeros(n + 1, dtype=np.int32)
        np.cumsum(np.bincount(rows, minlength=n), out=offsets[1:])
        return pa.ListArray.from_arrays(
            pa.array(offsets),
            pa.array(values[rows, cols], arrow_type),
            type=pa.list_(pa.field("element", arrow_type)),
            mask=None if row_mask is None else pa.array(row_mask),
        )

    def vectors(hot: np.ndarray):
        return pa.FixedSizeListArray.from_arrays(
            pa.array(hot.reshape(-1), pa.uint8()), nom.size, mask=pa.array(null)
        )

    names = np.broadcast_to(np.asarray(nom.alphabetical, dtype=object), alpha.shape)
    counts = labels.code_counts[:, :-1]
    codes = np.broadcast_to(CODE_BINS, counts.shape)
    native_col = f"multi_hot_{nom.native_order_name}"
    table = pa.table(
        {
            "index": pa.array(np.arange(n, dtype=np.int32)),
            "patch_id": pa.array([grid.patch_id(x, y) for x, y in xy], pa.string()),
            "unlabeled_fraction": pa.array(labels.unlabeled_fraction),
            "label_status": pa.array(status.tolist(), pa.string()),
            "labels": ragged(alpha.astype(bool), names, pa.string(), null),
            native_col: vectors(native),
            "multi_hot_alphabetical": vectors(alpha),
            "clc_codes": ragged(counts > 0, codes, pa.uint16()),
            "clc_code_counts": ragged(counts > 0, counts.astype(np.int32), pa.int32()),
        }
    )
    meta = {
        **nom.describe(),
        "label_rule": f"labelled when unlabeled_fraction < {labels.max_unlabeled}; labels alphabetical",
        "vector_columns": {native_col: nom.native_order_name, "multi_hot_alphabetical": "alphabetical"},
    }
    return table.replace_schema_metadata({"rsprep:labels": json.dumps(meta)})


def reference_work(
    work: str | Path,
    clc: str | Path,
    *,
    options: ReferenceOptions | None = None,
    layer: str | None = None,
    code_field: str | None = None,
    clc_crs: str | None = None,
    workers: int = 1,
    force: bool = False,
    on_result: Callable[[StageResult], None] | None = None,
) -> tuple[list[StageResult], ClcSource]:
    """Reference every store of ``work``; a failing store never stops the others.

    The CLC file is opened (layer, code field, CRS resolved) once, before any store is touched, so
    a wrong file fails fast with one message.
    """
    opts = options or ReferenceOptions()
    opts.validate()
    source = open_clc(clc, layer=layer, code_field=code_field, crs=clc_crs)
    check_workers(workers)
    tasks = store_tasks(STAGE, _reference_one, find_stores(work), source, opts, force)
    return execute(tasks, workers=workers, on_result=on_result), source


def _reference_one(path: str, source: ClcSource, options: ReferenceOptions, force: bool) -> StageResult:
    return reference_store(TileStore.open(path), source, options, force=force)
