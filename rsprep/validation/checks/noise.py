"""Noise variants (docs/noise.md): each ``noise/<name>.parquet`` against the dataset, flip log and report.

For each variant: its clean ``labels`` equal the dataset's (the clean labels are never changed) and its
``split`` the dataset's, every patch_id is a dataset patch (once), ``labels_noisy`` holds class names of
the nomenclature, the flip log ``<name>_flips.parquet`` is exactly the set of differences between
``labels`` and ``labels_noisy`` (each ``add`` / ``remove`` as logged, nothing unlogged, nothing twice),
changes lie only in the splits the report ``<name>.json`` names, and the report's per-class counts
(positives, negatives, removed, added), totals and target rows match what the files hold.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rsprep.validation.report import Recorder
from rsprep.validation.view import DatasetView

#: Problems listed per kind and variant; the rest are counted in one message.
LIMIT = 20
_COLUMNS = ("patch_id", "split", "labels", "labels_noisy")
_FLIP_COLUMNS = ("patch_id", "class", "action")
_ACTIONS = ("remove", "add")
#: What labels → labels_noisy does to a class, by (in labels, in labels_noisy).
_STATE = {(True, False): "removes", (False, True): "adds", (True, True): "keeps", (False, False): "never has"}
_SEP = "\x1f"  # joins a label list into one comparable string (class names hold commas, never this)


@dataclass
class _Variant:
    rel: str  # noise/<name>.parquet, as problems name it
    ids: pa.Array  # patch_id
    split: np.ndarray  # object (n,)
    classes: list[str]
    clean: np.ndarray  # bool (n, C) from labels
    noisy: np.ndarray  # bool (n, C) from labels_noisy

    def pid(self, row: int) -> str:
        return f"{self.rel}: {self.ids[int(row)].as_py()}"


def run(view: DatasetView, rec: Recorder, sampling) -> None:
    variants = view.noise_variants()
    if not variants:
        rec.skip("no noise variants (no noise/*.parquet)")
        return
    for path in variants:
        _check_variant(view, path, rec)
    rec.note(f"{len(variants)} variant(s)")


def _check_variant(view: DatasetView, path: Path, rec: Recorder) -> None:
    rel, flips_rel, report_rel = (f"noise/{path.stem}{x}" for x in (".parquet", "_flips.parquet", ".json"))
    table = _parquet(path, _COLUMNS, rel, rec)
    if table is None:
        return
    rec.checked(table.num_rows)
    report = _report(path.with_suffix(".json"), report_rel, rec)
    flips = _parquet(path.with_name(f"{path.stem}_flips.parquet"), _FLIP_COLUMNS, flips_rel, rec)
    nomenclature = view.label_rule[0]
    classes = list(nomenclature.classes)
    noisy, rows, names = _multi_hot(table.column("labels_noisy"), classes)
    split = np.asarray(table.column("split").to_numpy(zero_copy_only=False), dtype=object)
    ids = table.column("patch_id").combine_chunks()
    v = _Variant(rel, ids, split, classes, _multi_hot(table.column("labels"), classes)[0], noisy)
    _against_dataset(view, table, v, rec)
    nom = nomenclature.name.upper()
    _each(
        np.unique(rows),
        f"have labels_noisy outside {nom}",
        v,
        rec,
        lambda r: f"labels_noisy holds {names[rows == r].tolist()}, not {nom} class names",
    )
    counts = None
    if flips is not None:
        rec.checked(flips.num_rows)
        counts = _flip_log(flips, v, flips_rel, rec)
    if report is not None:
        _against_report(report, v, counts, table.num_rows, report_rel, rec)


def _parquet(path: Path, columns: tuple[str, ...], rel: str, rec: Recorder) -> pa.Table | None:
    if not path.is_file():
        rec.error("is missing; every noise variant has it (docs/noise.md#outputs)", rel)
        return None
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        rec.error(f"not a readable parquet file ({exc})", rel)
        return None
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        rec.error(f"lacks the column(s) {', '.join(missing)}; expected {', '.join(columns)}", rel)
        return None
    return table


def _report(path: Path, rel: str, rec: Recorder) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        rec.error(f"the variant's report is missing or not JSON ({exc})", rel)
        return None
    splits = doc.get("configuration", {}).get("splits") if isinstance(doc, dict) else None
    if not isinstance(splits, list) or not isinstance(doc.get("classes"), list):
        rec.error("the report lacks configuration.splits or the per-class list 'classes'", rel)
        return None
    return doc


def _multi_hot(col: pa.ChunkedArray, classes: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """bool (n, C) from a list<string> column, and the rows and names of the names outside ``classes``."""
    arr = col.combine_chunks()
    flat = pc.list_flatten(arr)
    rows = pc.list_parent_indices(arr).to_numpy()
    idx = _index(flat, pa.array(classes, pa.string()))
    out = np.zeros((len(arr), len(classes)), dtype=bool)
    keep = idx >= 0
    out[rows[keep], idx[keep]] = True
    names = np.asarray(flat.to_numpy(zero_copy_only=False), dtype=object)
    return out, rows[~keep], names[~keep]


def _joined(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Each label list as one string (null lists as empty), for a vectorised comparison."""
    return np.asarray(
        pc.fill_null(pc.binary_join(col, _SEP), "").to_numpy(zero_copy_only=False), dtype=object
    )


def _each(rows: np.ndarray, what: str, v: _Variant, rec: Recorder, message) -> None:
    """One problem per row (``message(row)``), at most LIMIT, then one count of the rest."""
    for r in rows[:LIMIT]:
        rec.error(message(r), v.pid(r))
    _more(rec, len(rows), f"rows {what}", v.rel)


def _more(rec: Recorder, total: int, what: str, rel: str) -> None:
    if total > LIMIT:
        rec.error(f"{total - LIMIT} more {what}", rel)


def _change(v: _Variant, row: int, c: int) -> str:
    """What labels → labels_noisy does to class ``c`` of ``row``."""
    return f"labels → labels_noisy {_STATE[bool(v.clean[row, c]), bool(v.noisy[row, c])]} {v.classes[c]!r}"


def _against_dataset(view: DatasetView, table: pa.Table, v: _Variant, rec: Recorder) -> None:
    """Every patch a dataset patch, listed once, with the dataset's split and its clean labels unchanged."""
    ref = view.table
    index = _index(v.ids, ref.column("patch_id").combine_chunks())
    _each(
        np.flatnonzero(index < 0), "are not dataset patches", v, rec, lambda r: "not a patch of the dataset"
    )
    counts = pc.value_counts(v.ids)
    twice = pc.filter(counts.field("values"), pc.greater(counts.field("counts"), 1))
    dupes = np.flatnonzero(pc.is_in(v.ids, value_set=twice).to_numpy(zero_copy_only=False))
    _each(dupes, "are listed more than once", v, rec, lambda r: "listed more than once")
    known = np.flatnonzero(index >= 0)
    take = pa.array(index[known], pa.int64())
    got = _joined(table.column("labels").take(pa.array(known, pa.int64())))
    same = got == _joined(ref.column("labels").take(take))
    _each(
        known[~same],
        "have changed clean labels",
        v,
        rec,
        lambda r: (
            f"clean labels changed: the variant has {table['labels'][int(r)].as_py()}, the dataset "
            f"{ref['labels'][int(index[r])].as_py()} (the clean labels are never changed)"
        ),
    )
    ref_split = np.asarray(ref.column("split").take(take).to_numpy(zero_copy_only=False), dtype=object)
    _each(
        known[v.split[known] != ref_split],
        "have another split than the dataset",
        v,
        rec,
        lambda r: f"split is {v.split[r]!r}, the dataset says {ref['split'][int(index[r])].as_py()!r}",
    )


def _flip_log(flips: pa.Table, v: _Variant, rel: str, rec: Recorder) -> np.ndarray:
    """Check the log against labels → labels_noisy; returns logged (removals, additions) per class (C, 2)."""
    r, c, a = _flip_entries(flips, v, rel, rec)

    def where(k: int) -> str:
        return f"{rel}: {v.ids[int(r[k])].as_py()}"

    _, first, n = np.unique(r * len(v.classes) + c, return_index=True, return_counts=True)
    for k, times in list(zip(first[n > 1], n[n > 1], strict=True))[:LIMIT]:
        rec.error(f"the flip of {v.classes[c[k]]!r} is logged {times} times", where(k))
    is_add = a == 1
    wrong = np.flatnonzero((v.clean[r, c] == is_add) | (v.noisy[r, c] != is_add))
    for k in wrong[:LIMIT]:
        rec.error(f"logged as {_ACTIONS[a[k]]}, but {_change(v, r[k], c[k])}", where(k))
    _more(rec, len(wrong), "flips disagree with labels → labels_noisy", rel)
    logged = np.zeros_like(v.clean)
    logged[r, c] = True
    rows, cols = np.nonzero((v.clean != v.noisy) & ~logged)
    for k in range(min(len(rows), LIMIT)):
        rec.error(f"a difference not logged: {_change(v, rows[k], cols[k])}, not in {rel}", v.pid(rows[k]))
    _more(rec, len(rows), "differences between labels and labels_noisy are not logged", v.rel)
    counts = np.zeros((len(v.classes), 2), dtype=np.int64)
    np.add.at(counts, (c, a), 1)
    return counts


def _flip_entries(
    flips: pa.Table, v: _Variant, rel: str, rec: Recorder
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, class, action) indices of the flips that name a variant row, a class and add/remove."""
    row = _index(flips.column("patch_id"), v.ids)
    cls = _index(flips.column("class"), pa.array(v.classes, pa.string()))
    act = _index(flips.column("action"), pa.array(_ACTIONS, pa.string()))
    ok = (row >= 0) & (cls >= 0) & (act >= 0)
    bad = np.flatnonzero(~ok)
    for i in bad[:LIMIT]:
        entry = {k: flips.column(k)[int(i)].as_py() for k in _FLIP_COLUMNS}
        rec.error(
            f"flip {entry} names no patch of {v.rel}, no class of the nomenclature or an action "
            "other than add/remove",
            f"{rel}: {entry['patch_id']}",
        )
    _more(rec, len(bad), "flips name unknown patches, classes or actions", rel)
    return row[ok], cls[ok], act[ok]


def _index(col: pa.ChunkedArray | pa.Array, values: pa.Array) -> np.ndarray:
    """Position of each value of ``col`` in ``values`` (-1 when absent or null)."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    return pc.fill_null(pc.index_in(arr, value_set=values), -1).to_numpy().astype(np.int64)


def _against_report(
    report: dict[str, Any], v: _Variant, counts: np.ndarray | None, rows: int, rel: str, rec: Recorder
) -> None:
    """Changes only in the report's splits; its target rows, row count, per-class counts and totals."""
    splits = report["configuration"]["splits"]
    target = np.isin(v.split, np.array(splits, dtype=object))
    changed = (v.clean != v.noisy).any(axis=1)
    _each(
        np.flatnonzero(changed & ~target),
        f"outside the splits {splits} have noisy labels",
        v,
        rec,
        lambda r: (
            f"labels_noisy differs from labels in split {v.split[r]!r}, but {rel} says "
            f"the noise acts on {splits} only"
        ),
    )
    totals = report.get("totals", {})
    _same(report.get("target_rows"), int(target.sum()), "target_rows", "the rows of its splits", rel, rec)
    _same(report.get("input", {}).get("rows"), rows, "input.rows", v.rel, rel, rec)
    _same(totals.get("patches_changed"), int(changed.sum()), "totals.patches_changed", v.rel, rel, rec)
    for k, key in enumerate(("removed", "added") if counts is not None else ()):
        _same(totals.get(key), int(counts[:, k].sum()), f"totals.{key}", "the flip log", rel, rec)
    _per_class(report["classes"], v, v.clean[target], counts, rel, rec)


def _per_class(
    entries: list, v: _Variant, clean: np.ndarray, counts: np.ndarray | None, rel: str, rec: Recorder
) -> None:
    """Each class's positives and negatives among the target rows, and its logged removals and additions."""
    by_name = {d.get("name"): d for d in entries if isinstance(d, dict)}
    for name in sorted(set(by_name) - set(v.classes), key=str):
        rec.error(f"the report has counts for {name!r}, which is not a class of the nomenclature", rel)
    for k, name in enumerate(v.classes):
        positives = int(clean[:, k].sum())
        want = {"positives": positives, "negatives": len(clean) - positives}
        if counts is not None:
            want.update(removed=int(counts[k, 0]), added=int(counts[k, 1]))
        d = by_name.get(name)
        if d is None:
            if any(want.get(key) for key in ("positives", "removed", "added")):
                rec.error(f"the report has no entry for class {name!r}", rel)
            continue
        for key, value in want.items():
            source = "the flip log" if key in ("removed", "added") else "the clean labels of the target rows"
            _same(d.get(key), value, f"class {name!r}: {key}", source, rel, rec)


def _same(got: Any, want: int, what: str, source: str, rel: str, rec: Recorder) -> None:
    if got != want:
        rec.error(f"{what} is {got!r} in the report, but {want} in {source}", rel)
