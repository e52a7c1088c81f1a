"""Tables: the official Arrow schema and order, unique ids in one file only, official split and label
names, and the sidecar's GeoParquet metadata (docs/dataset.md#metadataparquet)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rsprep.core.splits import SPLITS
from rsprep.store import dataset as ds
from rsprep.validation.report import Recorder
from rsprep.validation.view import DatasetView, TableFile

#: Columns a pandas round trip adds, which the official files do not have.
_PANDAS_INDEX = "__index_level_0__"


def run(view: DatasetView, rec: Recorder, sampling) -> None:
    if view.metadata is None:
        if view.kind == "official":  # a GeoTIFF or LMDB download without its tables
            rec.skip(f"no {ds.METADATA}: patch names come from the outputs themselves")
        else:
            rec.error(f"{ds.METADATA} is missing; every dataset rsprep builds has it", ds.METADATA)
        return
    files = [tf for tf in (view.metadata, view.flagged) if tf is not None]
    for tf in files:
        _official_file(tf, rec)
    _across_files(files, rec)
    nomenclature = view.label_rule[0]
    _labels(view.table, nomenclature, rec)
    if view.sidecar is not None:
        _sidecar(view, rec)


def _official_file(tf: TableFile, rec: Recorder) -> None:
    name = tf.path.name
    if tf.table is None:
        rec.error(f"not a readable parquet file ({tf.error})", name)
        return
    table = tf.table
    rec.checked(table.num_rows)
    schema = table.schema
    extra = [n for n in schema.names if n not in ds.METADATA_SCHEMA.names]
    if extra == [_PANDAS_INDEX]:
        rec.warning(f"holds a pandas index column {_PANDAS_INDEX} that the official files do not have", name)
    elif extra:
        rec.error(f"has columns the official schema does not: {', '.join(extra)}", name)
    for want in ds.METADATA_SCHEMA:
        if want.name not in schema.names:
            rec.error(f"lacks the column {want.name} ({want.type})", name)
            continue
        got = schema.field(want.name).type
        if pa.types.is_list(want.type) and pa.types.is_list(got) and got.value_type == want.type.value_type:
            if got.value_field.name != want.type.value_field.name:
                msg = f"column {want.name}: list child {got.value_field.name!r}; official files say 'element'"
                rec.warning(msg, name)
        elif got != want.type:
            rec.error(f"column {want.name} has type {got}, expected {want.type}", name)
    order = [n for n in schema.names if n in ds.METADATA_SCHEMA.names]
    if order != [n for n in ds.METADATA_SCHEMA.names if n in schema.names]:
        rec.error(f"columns are in the order {order}, expected {ds.METADATA_SCHEMA.names}", name)
    if "patch_id" not in schema.names:
        return
    ids = table.column("patch_id")
    if ids.null_count:
        rec.error(f"{ids.null_count} row(s) have no patch_id", name)
    dupes = _duplicates(ids)
    for pid in dupes[:20]:
        rec.error("patch_id appears more than once in the file", f"{name}: {pid}")
    if not dupes and not _is_sorted(ids):
        rec.warning("rows are not sorted by patch_id (the official files are; readers do not need it)", name)
    if "split" in schema.names:
        _split_names(table.column("split"), name, rec)


def _across_files(files: list[TableFile], rec: Recorder) -> None:
    if len(files) < 2 or any(tf.table is None or "patch_id" not in tf.table.column_names for tf in files):
        return
    a, b = (tf.table.column("patch_id") for tf in files)
    both = pc.filter(a, pc.is_in(a, value_set=b.combine_chunks()))
    for pid in both.to_pylist()[:50]:
        rec.error(f"patch is in both {ds.METADATA} and {ds.FLAGGED}", pid)
    if len(both) > 50:
        rec.error(f"{len(both) - 50} more patches are in both files")


def _split_names(split: pa.ChunkedArray, name: str, rec: Recorder) -> None:
    counts = pc.value_counts(split.combine_chunks()).to_pylist()
    for item in counts:
        value = item["values"]
        if value not in SPLITS:
            rec.error(
                f"{item['counts']} row(s) have split {value!r}; official names are {', '.join(SPLITS)}", name
            )


def _labels(table: pa.Table, nomenclature, rec: Recorder) -> None:
    """Rows naming a class outside the nomenclature, else not strictly ascending (column operations;
    only the rows at fault are read as Python lists)."""
    labels = table.column("labels").combine_chunks()
    n, flat = len(labels), pc.list_flatten(labels)
    parent = np.asarray(pc.list_parent_indices(labels).to_numpy(), dtype=np.int64)
    allowed = pa.array(sorted(nomenclature.alphabetical), pa.string())
    known = np.asarray(pc.is_in(flat, value_set=allowed).to_numpy(zero_copy_only=False), dtype=bool)
    unknown_rows = np.bincount(parent[~known], minlength=n) > 0
    unsorted_rows = np.zeros(n, dtype=bool)
    if len(flat) > 1:
        ascending = pc.fill_null(pc.less(flat.slice(0, len(flat) - 1), flat.slice(1)), False)
        same_row = parent[1:] == parent[:-1]
        out_of_order = same_row & ~np.asarray(ascending.to_numpy(zero_copy_only=False), dtype=bool)
        unsorted_rows = np.bincount(parent[1:][out_of_order], minlength=n) > 0
    allowed_set = set(nomenclature.alphabetical)
    ids = table.column("patch_id")
    for r in np.flatnonzero(unknown_rows | unsorted_rows).tolist():
        row = labels[r].as_py() or []
        unknown = [x for x in row if x not in allowed_set]
        if unknown:
            rec.error(f"labels {unknown} are not {nomenclature.name.upper()} class names", ids[r].as_py())
        else:
            rec.error(f"labels {row} are not sorted alphabetically without repeats", ids[r].as_py())


def _sidecar(view: DatasetView, rec: Recorder) -> None:
    tf = view.sidecar
    name = tf.path.name
    if tf.table is None:
        rec.error(f"not a readable parquet file ({tf.error})", name)
        return
    meta = (tf.table.schema.metadata or {}).get(b"geo")
    if meta is None:
        rec.error("has no GeoParquet 'geo' metadata", name)
    else:
        try:
            geo = json.loads(meta)
            col = geo["columns"][geo["primary_column"]]
            if (
                col.get("encoding", "WKB").upper() != "WKB"
                or geo["primary_column"] not in tf.table.column_names
            ):
                rec.error(
                    f"GeoParquet metadata names column {geo['primary_column']!r} (WKB) that is not there",
                    name,
                )
        except (ValueError, KeyError, TypeError) as exc:
            rec.error(f"GeoParquet 'geo' metadata is not valid ({exc})", name)
    missing = view.table.column("patch_id")
    if "patch_id" in tf.table.column_names:
        side = tf.table.column("patch_id").combine_chunks()
        missing = missing.filter(pc.invert(pc.is_in(missing, value_set=side.cast(pa.string()))))
    for pid in missing.slice(0, 20).to_pylist():
        rec.error(f"the sidecar {name} has no row for this patch", pid)


def _duplicates(ids: pa.ChunkedArray) -> list[str]:
    counts = pc.value_counts(ids.combine_chunks())
    dup = pc.filter(counts, pc.greater(counts.field("counts"), 1))
    return sorted(v for v in dup.field("values").to_pylist() if v is not None)


def _is_sorted(ids: pa.ChunkedArray) -> bool:
    arr = ids.combine_chunks()
    return len(arr) < 2 or pc.all(pc.less(arr.slice(0, len(arr) - 1), arr.slice(1))).as_py() is not False
