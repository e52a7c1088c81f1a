"""Labels: each sampled patch's labels re-derived from its reference map with the recorded rule
(docs/labels.md), and Zarr's multi-hot ``labels`` equal to the tables' labels for every row.

The maps come from the first output that holds them (Zarr, then LMDB, then the GeoTIFF layout) and are
labelled in batches by :func:`rsprep.core.labels.label_patches`. A patch whose map fails the rule, or
that has no labels in the tables, is an error: ``rsprep metadata`` keeps labelled patches only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rsprep.core.labels import PatchLabels, label_patches
from rsprep.core.nomenclature import Nomenclature
from rsprep.core.values import MAP_BAND, REFERENCE_MAP, map_key
from rsprep.errors import ReaderError
from rsprep.validation.report import Recorder
from rsprep.validation.view import DatasetView

#: Maps labelled per call of the (numba-backed) rule.
BATCH = 1024
#: What a map read yields for a patch the output does not hold (completeness reports it).
_ABSENT = object()


def run(view: DatasetView, rec: Recorder, sampling) -> None:
    source = _map_source(view)
    if source is None:
        rec.skip("no output holds reference maps (no Zarr store, LMDB or GeoTIFF layout)")
        return
    if not view.patch_ids:
        rec.skip("no metadata table lists labels to compare the reference maps with")
        return
    output, read = source
    nom, max_unlabeled, where_from = view.label_rule
    rows = np.asarray(sampling.rows, dtype=np.int64)
    derived, absent = _rederive(view, rows, read, nom, max_unlabeled, rec)
    rec.note(
        f"rule {nom.name.upper()}, unlabeled fraction < {max_unlabeled:g} ({where_from}); "
        f"{derived} map(s) re-derived from {output} ({len(rows)} of {len(view.patch_ids)} patches sampled)"
    )
    if absent:
        rec.note(f"{absent} sampled patch(es) have no map in {output} (completeness reports them)")
    if view.zarr is not None:
        _zarr_multi_hot(view, rec)


# --------------------------------------------------------------------------------------------
# Re-deriving labels from the maps
# --------------------------------------------------------------------------------------------
def _rederive(view: DatasetView, rows: np.ndarray, read, nom: Nomenclature, max_unl: float, rec):
    """Label the maps of ``rows`` batch by batch and compare; returns (maps labelled, patches without)."""
    labels = view.table.column("labels")
    absent = derived_count = 0
    for start in range(0, len(rows), BATCH):
        batch = rows[start : start + BATCH]
        ids = [view.patch_ids[i] for i in batch]
        maps: dict[tuple, list[tuple[int, str, np.ndarray]]] = {}
        for k, (pid, value) in enumerate(zip(ids, read(ids), strict=True)):
            if value is _ABSENT:
                absent += 1
            elif isinstance(value, Exception):
                rec.error(f"its reference map could not be read ({value})", pid)
            else:
                maps.setdefault(value.shape, []).append((int(batch[k]), pid, value))
        for group in maps.values():
            stack = np.stack([m for _, _, m in group]).astype(np.uint16, copy=False)
            derived = label_patches(stack, nom, max_unl)
            rec.checked(len(group))
            derived_count += len(group)
            table_rows = [r for r, _, _ in group]
            _compare(labels.take(pa.array(table_rows)), [p for _, p, _ in group], derived, rec)
    return derived_count, absent


def _compare(listed: pa.ChunkedArray, ids: list[str], derived: PatchLabels, rec: Recorder) -> None:
    nom = derived.nomenclature
    table, unknown = multi_hot(listed, nom.alphabetical)
    empty = (pc.list_value_length(listed).to_numpy(zero_copy_only=False) == 0) | listed.is_null().to_numpy(
        zero_copy_only=False
    )
    want = derived.multi_hot("alphabetical")
    differ = unknown | (table != want).any(axis=1)
    for k in np.flatnonzero(empty | ~derived.rule_passed | differ):
        pid, frac = ids[k], derived.unlabeled_fraction[k]
        got, rule = derived.labels(int(k)), f"{nom.name.upper()}, unlabeled fraction {frac:.4f}"
        if empty[k]:
            rec.error(
                f"has no labels in the tables; rsprep's metadata stage keeps labelled patches only "
                f"(its reference map gives {got}, {rule})",
                pid,
            )
        elif not derived.rule_passed[k]:
            rec.error(
                f"its reference map fails the label rule ({rule}, not below {derived.max_unlabeled:g}): "
                "an unlabelled patch must not be in the dataset",
                pid,
            )
        else:
            rec.error(
                f"labels {listed[int(k)].as_py()} in the tables; its reference map gives {got} ({rule})",
                pid,
            )


def multi_hot(labels: pa.ChunkedArray | pa.Array, classes) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 (N, C) multi-hot of a ``list<string>`` column in ``classes`` order, bool (N,): a row
    names a class that is not in ``classes``). Vectorised: no Python loop over rows."""
    arr = labels.combine_chunks() if isinstance(labels, pa.ChunkedArray) else labels
    n = len(arr)
    out = np.zeros((n, len(classes)), dtype=np.uint8)
    unknown = np.zeros(n, dtype=bool)
    if n == 0:
        return out, unknown
    flat = pc.list_flatten(arr)
    parent = np.asarray(pc.list_parent_indices(arr).to_numpy(), dtype=np.int64)
    idx = pc.index_in(flat, value_set=pa.array(list(classes), pa.string()))
    known = ~np.asarray(idx.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    col = np.asarray(idx.fill_null(0).to_numpy(), dtype=np.int64)
    out[parent[known], col[known]] = 1
    unknown[parent[~known]] = True
    return out, unknown


# --------------------------------------------------------------------------------------------
# Where the maps are read from
# --------------------------------------------------------------------------------------------
Reader = Callable[[list[str]], Iterator[object]]


def _map_source(view: DatasetView) -> tuple[str, Reader] | None:
    """(output name, read) for the first output with maps; ``read(ids)`` yields a map, ``_ABSENT`` or
    the exception that reading raised, per id."""
    if view.zarr is not None:
        return "zarr", _zarr_maps(view)
    if view.lmdb is not None:
        return "lmdb", _lmdb_maps(view)
    if view.tiff:
        return "tiff", _tiff_maps(view)
    return None


def _zarr_maps(view: DatasetView) -> Reader:
    from rsprep.formats.readers import ZarrReader

    reader = ZarrReader(view.zarr)
    fast = _sharded_maps(view.zarr)

    def read(ids: list[str]) -> Iterator[object]:
        index = reader.index
        rows = [index.get(p) for p in ids]
        if fast is not None:  # one pread per map, as ZarrReader reads them
            for r in rows:
                yield _ABSENT if r is None else _fast_row(fast, r)
            return
        have = sorted({r for r in rows if r is not None})
        try:
            arr = reader.group[REFERENCE_MAP]
            if have and have[-1] - have[0] + 1 == len(have):
                block = arr[have[0] : have[-1] + 1]
            else:
                block = arr.get_orthogonal_selection(np.asarray(have, dtype=np.int64))
        except (KeyError, OSError, ValueError) as exc:
            yield from (_ABSENT if r is None else exc for r in rows)
            return
        at = {r: k for k, r in enumerate(have)}
        yield from (_ABSENT if r is None else block[at[r]] for r in rows)

    return read


def _sharded_maps(store):
    """The reference_map array through the shard reader (None: another layout, read by zarr-python)."""
    import json

    from rsprep.formats.readers import ShardedPatchArray

    try:
        meta = json.loads((store / REFERENCE_MAP / "zarr.json").read_text())
    except (OSError, ValueError):
        return None
    return ShardedPatchArray.open(store / REFERENCE_MAP, meta)


def _fast_row(arr, row: int) -> object:
    try:
        return arr[row]
    except (OSError, ValueError, RuntimeError, IndexError) as exc:  # Blosc raises RuntimeError
        return exc


def _lmdb_maps(view: DatasetView) -> Reader:
    from rsprep.formats.readers import LmdbReader

    reader = LmdbReader(view.lmdb)

    def read(ids: list[str]) -> Iterator[object]:
        for pid in ids:
            key = map_key(pid)
            try:
                raw = reader.get(key)
            except ReaderError as exc:
                yield _ABSENT if key not in reader else exc
                continue
            except (OSError, ValueError) as exc:  # safetensors raises on a damaged value
                yield exc
                continue
            yield raw[MAP_BAND] if MAP_BAND in raw else ReaderError(f"{key} holds no {MAP_BAND!r} array")

    return read


def _tiff_maps(view: DatasetView) -> Reader:
    from rsprep.formats.geotiff import band_files
    from rsprep.formats.readers import TiffReader

    reader = TiffReader(view.root)

    def read(ids: list[str]) -> Iterator[object]:
        for pid in ids:
            if not (view.root / band_files("map", pid)[MAP_BAND]).is_file():
                yield _ABSENT
                continue
            try:
                yield reader.get("map", pid)[MAP_BAND]
            except ReaderError as exc:
                yield exc

    return read


# --------------------------------------------------------------------------------------------
# Zarr's multi-hot labels against the tables (every row)
# --------------------------------------------------------------------------------------------
def _zarr_multi_hot(view: DatasetView, rec: Recorder) -> None:
    import zarr

    try:
        group = zarr.open_group(view.zarr, mode="r")
        arr = group["labels"]
        classes = list(arr.attrs.get("classes") or group.attrs.get("classes") or ())
        stored = np.asarray(arr[:])
        zarr_ids = pa.array(np.asarray(group["patch_id"][:]).astype(object), pa.string())
    except (KeyError, OSError, ValueError) as exc:
        rec.error(f"the Zarr labels could not be read ({exc})", "zarr labels")
        return
    if stored.ndim != 2 or stored.shape != (len(zarr_ids), len(classes)):
        rec.error(
            f"labels has shape {stored.shape}; expected ({len(zarr_ids)}, {len(classes)}) "
            "(patches × the classes in its attributes)",
            "zarr labels",
        )
        return
    pos = pc.index_in(zarr_ids, value_set=view.table.column("patch_id").combine_chunks())
    zrows = np.flatnonzero(~np.asarray(pos.is_null().to_numpy(zero_copy_only=False), dtype=bool))
    trows = np.asarray(pos.fill_null(0).to_numpy(), dtype=np.int64)[zrows]
    listed = view.table.column("labels").take(pa.array(trows))
    table, unknown = multi_hot(listed, classes)
    differ = unknown | (table != (stored[zrows] != 0)).any(axis=1)
    names = np.array(classes, dtype=object)
    for k in np.flatnonzero(differ):
        z = sorted(names[stored[zrows[k]] != 0].tolist())
        rec.error(
            f"Zarr's multi-hot labels (row {zrows[k]}) say {z}; the tables say {listed[int(k)].as_py()}",
            zarr_ids[int(zrows[k])].as_py(),
        )
    rec.note(f"Zarr multi-hot labels compared for {len(zrows)} row(s)")
