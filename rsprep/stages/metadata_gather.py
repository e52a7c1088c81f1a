"""Reading a work store for ``rsprep metadata``: the patches of every tile store that enter the dataset.

Each store's patch, label and S1 tables are read (a corrupt or mismatched table is an error naming it
and the command that rewrites it); only valid, labelled patches with an S1 partner are kept.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rsprep.store import dataset as ds
from rsprep.store.workstore import LABELS_TABLE, PATCH_TABLE, S1_TABLE, TileStore, WorkStoreError, find_stores

PATCH_COLUMNS = (
    "patch_id", "x", "y", "left", "bottom", "right", "top", "nodata_fraction", "cloud_fraction",
    "shadow_fraction", "snow_fraction", "scl_nodata_fraction", "product_id", "tile", "sensing_time",
    "season", "processing_baseline",
)  # fmt: skip


def _store_table(store: TileStore, keep_unpaired: bool) -> tuple[pa.Table, dict[str, int]]:
    store.require_stage("patch", "re-run `rsprep patch`")
    store.require_stage("reference", "run `rsprep reference --clc CLC --work WORK` first")
    patches = _read(store, PATCH_TABLE, "rsprep patch --force PRODUCT --out WORK")
    labels = _read(store, LABELS_TABLE, "rsprep reference --force")
    _check_rows(store, LABELS_TABLE, patches, labels, "rsprep reference --force")
    n = patches.num_rows
    if store.stage("s1") is not None:
        s1 = _read(store, S1_TABLE, "rsprep s1 --force")
        _check_rows(store, S1_TABLE, patches, s1, "rsprep s1 --force")
        s1_name = s1.column("s1_name")
    elif keep_unpaired:
        s1_name = pa.nulls(n, pa.string())
    else:
        raise WorkStoreError(
            f"{store.path}: the s1 stage has not run, so no patch has a Sentinel-1 partner; run "
            "`rsprep s1 --s1 S1_DIR --work WORK` first, or pass --keep-unpaired for an S2-only dataset"
        )
    valid = patches.column("valid").to_numpy()
    status = np.asarray(labels.column("label_status").to_numpy(zero_copy_only=False), dtype=object)
    labelled = status == "labeled"
    paired = ~np.asarray(pc.is_null(s1_name).to_numpy(zero_copy_only=False), dtype=bool)
    keep = valid & labelled & (paired | keep_unpaired)
    counts = {
        "grid_patches": n,
        "invalid": int((~valid).sum()),
        "unlabeled_fraction_too_high": int((valid & (status == "unlabeled_fraction_too_high")).sum()),
        "quality_failed": int((valid & (status == "quality_failed")).sum()),
        "no_s1_partner": int((valid & labelled & ~paired).sum()) if not keep_unpaired else 0,
        "kept": int(keep.sum()),
    }
    g = store.grid
    mask = pa.array(keep)
    cols = {c: patches.column(c).filter(mask) for c in PATCH_COLUMNS}
    cols["unlabeled_fraction"] = labels.column("unlabeled_fraction").filter(mask)
    cols["labels"] = labels.column("labels").filter(mask).cast(ds.LABELS_TYPE)
    cols["s1_name"] = s1_name.filter(mask)
    k = int(keep.sum())
    cols["epsg"] = pa.array(np.full(k, g.epsg, dtype=np.int32))
    cols["tile_size_m"] = pa.array(np.full(k, g.tile_size_m, dtype=np.float64))
    cols["patch_size_m"] = pa.array(np.full(k, g.patch_size, dtype=np.float64))
    return pa.table(cols), counts


def _read(store: TileStore, name: str, fix: str) -> pa.Table:
    """A parquet table of ``store``; a truncated or corrupt file is an error naming it and the fix."""
    try:
        return store.table(name)
    except (pa.ArrowException, OSError) as exc:
        raise WorkStoreError(
            f"{store.path / name} of store {store.name} is not a readable parquet file ({exc}); "
            f"re-run `{fix}`"
        ) from exc


def _check_rows(store: TileStore, name: str, patches: pa.Table, other: pa.Table, fix: str) -> None:
    if other.num_rows != patches.num_rows or not other.column("patch_id").equals(patches.column("patch_id")):
        raise WorkStoreError(
            f"{store.path / name} does not match patches.parquet row for row (the patch stage was redone "
            f"after it); re-run `{fix}`"
        )


def gather(work: Path, keep_unpaired: bool) -> tuple[pa.Table, dict[str, int], list[TileStore]]:
    stores = find_stores(work)
    tables, totals = [], {}
    for store in stores:
        t, c = _store_table(store, keep_unpaired)
        tables.append(t)
        for key, v in c.items():
            totals[key] = totals.get(key, 0) + v
    table = pa.concat_tables(tables)
    table = table.take(pc.sort_indices(table.column("patch_id")))
    ids = table.column("patch_id")
    if pc.count_distinct(ids).as_py() != len(ids):
        raise WorkStoreError(f"{work}: the same patch_id occurs in two stores; remove the duplicate store")
    return table, {"stores": len(stores), **totals}, stores
