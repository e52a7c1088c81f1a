"""Split: the recorded split method re-derived for every patch (docs/splits.md), one split per patch
across the metadata files, the sidecar and the Zarr store, no ground overlap across splits where the
method allows none, and the figures of ``split_report.json`` recomputed.

The method comes from ``build.json`` (the ``split`` stage, else the ``metadata`` stage's options), else
reBEN's tile-border 0.5/0.25/0.25 with 1200 m patches and 109,800 m tiles (an official folder). It is
re-derived with :func:`rsprep.core.splits.split_table` on the sidecar (which has positions), else on
the patch names of the metadata tables.
"""

from __future__ import annotations

import json
from dataclasses import fields

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rsprep.core.grid import parse_patch_ids
from rsprep.core.leakage import leakage_report, overlapping_pairs
from rsprep.core.positions import Positions, positions
from rsprep.core.splits import SPLITS, SplitOptions, code_names, counts, split_table
from rsprep.errors import RsprepError
from rsprep.store import dataset as ds
from rsprep.validation.report import Recorder
from rsprep.validation.view import DatasetView

#: Ground-overlapping pairs named one by one; the rest are counted in one more error.
MAX_NAMED = 50


def run(view: DatasetView, rec: Recorder, sampling) -> None:
    recorded = _recorded(view)
    if recorded.num_rows == 0:
        rec.skip("no table holds patches with a split column")
        return
    options, origin = _recorded_options(view, rec)
    if options is None:
        return
    basis, basis_name = _basis(view)
    method = describe(options)
    try:
        outcome = split_table(basis, options, basis_name)
    except RsprepError as exc:
        rec.error(f"the recorded split ({method}) could not be re-derived: {exc}", basis_name)
        return
    rec.note(f"{method}, from {origin}; re-derived on {basis_name}")
    _against_derived(recorded, outcome.patch_id, outcome.codes, method, rec)
    _across_files(recorded, rec)
    codes = _codes_of(_basis_split(view, basis, basis_name))
    lazy = _LazyPositions(basis, options)
    if np.array_equal(codes, outcome.codes):
        report = outcome.report
    else:  # the stored splits differ from the method's: their own leakage is what the report says
        report = {"method": options.method, "counts_all": counts(codes), **leakage_report(codes, lazy.get())}
    _overlap_rule(report, codes, options, outcome.patch_id, lazy, rec)
    _split_report(view, report, basis_name == ds.SIDECAR, rec)


def describe(options: SplitOptions) -> str:
    fr = "/".join(f"{f:g}" for f in options.fractions)
    extra = {
        "tile-border": f"patch / tile size from the table, else {options.patch_size:g} / "
        f"{options.tile_size:g} m",
        "block": f"{options.block_km:g} km blocks, buffer {options.buffer}, seed {options.seed}",
    }.get(options.method, f"seed {options.seed}")
    return f"{options.method} {fr}, {extra}"


# --------------------------------------------------------------------------------------------
# What was recorded
# --------------------------------------------------------------------------------------------
def _recorded_options(view: DatasetView, rec: Recorder) -> tuple[SplitOptions | None, str]:
    stages = view.build.get("stages", {}) if isinstance(view.build, dict) else {}
    found, origin = None, "reBEN's default (no split recorded)"
    if isinstance(stages.get("split", {}).get("options"), dict):
        found, origin = stages["split"]["options"], f"{ds.BUILD} stages.split.options"
    elif isinstance(stages.get("metadata", {}).get("options", {}).get("split"), dict):
        found, origin = stages["metadata"]["options"]["split"], f"{ds.BUILD} stages.metadata.options.split"
    if found is None:
        return SplitOptions(), origin
    known = {f.name for f in fields(SplitOptions)}
    kwargs = {k: v for k, v in found.items() if k in known}
    if "fractions" in kwargs:
        kwargs["fractions"] = tuple(kwargs["fractions"])
    try:
        options = SplitOptions(**kwargs)
        options.validate()
    except (TypeError, ValueError, RsprepError) as exc:
        rec.error(f"the split options recorded in {origin} are not valid ({exc}): {found}", ds.BUILD)
        return None, origin
    return options, origin


def _recorded(view: DatasetView) -> pa.Table:
    """One row per (file, patch) with a split: both metadata files, the sidecar and the Zarr store."""
    parts = []
    for tf in (view.metadata, view.flagged, view.sidecar):
        if tf is None or tf.table is None or not {"patch_id", "split"} <= set(tf.table.column_names):
            continue
        try:
            split = tf.table.column("split").cast(pa.string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue  # the schema check reports the type
        parts.append(_rows(tf.path.name, tf.table.column("patch_id").cast(pa.string()), split))
    zarr_part = _zarr_rows(view)
    if zarr_part is not None:
        parts.append(zarr_part)
    if not parts:
        return _rows("", pa.array([], pa.string()), pa.array([], pa.string()))
    return pa.concat_tables(parts)


def _rows(name: str, ids, split) -> pa.Table:
    n = len(ids)
    return pa.table({"file": pa.repeat(pa.scalar(name), n), "patch_id": ids, "split": split})


def _zarr_rows(view: DatasetView) -> pa.Table | None:
    if view.zarr is None:
        return None
    import zarr

    try:
        group = zarr.open_group(view.zarr, mode="r")
        ids = np.asarray(group["patch_id"][:]).astype(object)
        split = np.asarray(group["split"][:]).astype(object)
    except (KeyError, OSError, ValueError):
        return None  # completeness reports an unreadable store
    split_arr = pa.array(split, pa.string())
    split_arr = pc.if_else(pc.equal(split_arr, ""), pa.scalar(None, pa.string()), split_arr)
    return _rows("zarr", pa.array(ids, pa.string()), split_arr)


def _basis(view: DatasetView) -> tuple[pa.Table, str]:
    """The sidecar (positions, tile sizes) when it is readable, else the unique ids of the tables."""
    side = view.sidecar
    if side is not None and side.table is not None and "patch_id" in side.table.column_names:
        return side.table, ds.SIDECAR
    ids = pc.unique(view.table.column("patch_id").combine_chunks()).drop_null()
    return pa.table({"patch_id": ids}), "the metadata tables"


def _basis_split(view: DatasetView, basis: pa.Table, basis_name: str) -> pa.Array:
    if basis_name == ds.SIDECAR and "split" in basis.column_names:
        return basis.column("split").combine_chunks().cast(pa.string())
    pos = pc.index_in(
        basis.column("patch_id").combine_chunks(), value_set=view.table.column("patch_id").combine_chunks()
    )
    return view.table.column("split").combine_chunks().take(pos)


def _codes_of(split: pa.Array) -> np.ndarray:
    """Split names as codes (0 train, 1 validation, 2 test; -1 for null or any other name)."""
    idx = pc.index_in(split, value_set=pa.array(SPLITS))
    return np.asarray(idx.fill_null(-1).to_numpy(), dtype=np.int8)


# --------------------------------------------------------------------------------------------
# Comparisons
# --------------------------------------------------------------------------------------------
def _against_derived(recorded: pa.Table, ids: pa.Array, codes: np.ndarray, method: str, rec) -> None:
    pos = pc.index_in(recorded.column("patch_id").combine_chunks(), value_set=ids)
    derived = code_names(codes).take(pos)
    valid = np.asarray(pos.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    same = pc.equal(pc.fill_null(recorded.column("split"), "\0"), pc.fill_null(derived, "\0"))
    rec.checked(int(valid.sum()))
    bad = pa.array(np.flatnonzero(valid & ~np.asarray(same.to_numpy(zero_copy_only=False), dtype=bool)))
    rows = recorded.take(bad).append_column("derived", derived.take(bad))
    for pid, group in _by_patch(rows):
        where = ", ".join(f"{r['split']!r} in {r['file']}" for r in group)
        rec.error(f"split {where}; the recorded method gives {group[0]['derived']!r} ({method})", pid)
    if (~valid).any():
        rec.note(f"{int((~valid).sum())} row(s) name patches the split basis lacks (not re-derived)")


def _across_files(recorded: pa.Table, rec: Recorder) -> None:
    """The same patch_id with different splits in two files (or twice in one) is a patch in two splits."""
    filled = recorded.set_column(2, "split", pc.fill_null(recorded.column("split"), "\0"))
    groups = filled.group_by("patch_id").aggregate([("split", "count_distinct")])
    multi = groups.filter(pc.greater(groups.column("split_count_distinct"), 1)).column("patch_id")
    rows = recorded.filter(pc.is_in(recorded.column("patch_id"), value_set=multi.combine_chunks()))
    for pid, group in _by_patch(rows):
        listed = ", ".join(f"{r['split']!r} in {r['file']}" for r in group)
        rec.error(f"is in more than one split: {listed}", pid)


def _by_patch(rows: pa.Table):
    """(patch_id, its rows as dicts) in patch_id order (rows of one patch keep their file order)."""
    order = pc.sort_indices(rows, [("patch_id", "ascending")])  # a stable sort
    group: list[dict] = []
    for row in rows.take(order).to_pylist():
        if group and row["patch_id"] != group[0]["patch_id"]:
            yield group[0]["patch_id"], group
            group = []
        group.append(row)
    if group:
        yield group[0]["patch_id"], group


class _LazyPositions:
    """The basis' positions, computed only when a figure needs them (split_table has its own)."""

    def __init__(self, basis: pa.Table, options: SplitOptions) -> None:
        self.basis, self.options, self._pos = basis, options, None

    def get(self) -> Positions:
        if self._pos is None:
            names = parse_patch_ids(self.basis.column("patch_id"), "split basis")
            col = self.basis.column("patch_size_m") if "patch_size_m" in self.basis.column_names else None
            size = self.options.patch_size
            if col is not None and col.null_count == 0:
                size = np.asarray(col.to_numpy(), dtype=np.float64)
            self._pos = positions(self.basis, names, patch_size=size, crs=self.options.crs)
        return self._pos


def _overlap_allowed(options: SplitOptions) -> bool:
    """tile-border puts every overlap of neighbouring tiles in train; a block split with a buffer drops
    the blocks next to another split's (blocks at least two patches wide, so overlaps are neighbours)."""
    if options.method == "tile-border":
        return False
    wide = options.block_km * 1000 >= 2 * options.patch_size
    return not (options.method == "block" and options.buffer >= 1 and wide)


def _overlap_rule(report: dict, codes: np.ndarray, options: SplitOptions, ids: pa.Array, lazy, rec) -> None:
    cross = {"/".join(p["splits"]): int(p["overlapping_pairs"]) for p in report["pairs"]}
    total = sum(cross.values())
    if _overlap_allowed(options):
        rec.note(f"{total} ground-overlapping pair(s) across splits ({options.method} allows them)")
        return
    if total == 0:
        return
    oi, oj = overlapping_pairs(codes, lazy.get())
    bad = np.flatnonzero(codes[oi] != codes[oj])
    for k in bad[:MAX_NAMED].tolist():
        i, j = int(oi[k]), int(oj[k])
        rec.error(
            f"covers the same ground as {ids[j].as_py()} ({SPLITS[codes[j]]}) but is in {SPLITS[codes[i]]}; "
            f"{options.method} allows no overlap across splits",
            ids[i].as_py(),
        )
    if len(bad) > MAX_NAMED:
        rec.error(f"{len(bad) - MAX_NAMED} more ground-overlapping pairs lie in different splits")


def _split_report(view: DatasetView, report: dict, georeferenced: bool, rec: Recorder) -> None:
    path = view.root / ds.SPLIT_REPORT
    if not path.is_file():
        if view.kind == "rsprep":
            rec.warning("is missing; every rsprep split writes it (re-run `rsprep split`)", ds.SPLIT_REPORT)
        return
    try:
        stored = json.loads(path.read_text())
        have = figures(stored)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        rec.error(f"is not a readable leakage report ({exc})", ds.SPLIT_REPORT)
        return
    positional = not georeferenced and bool(stored.get("georeferenced"))
    for key, value in figures(report).items():
        if positional and not key.startswith(("method", "counts", "dropped")):
            continue  # positions from patch names alone cannot reproduce georeferenced neighbours
        if have.get(key) != value:
            rec.error(f"{key} is {have.get(key)}; recomputed from the splits: {value}", ds.SPLIT_REPORT)
    if positional:
        rec.note(f"{ds.SPLIT_REPORT}: neighbour and overlap figures not recomputed (no sidecar)")


def figures(report: dict) -> dict[str, object]:
    """The comparable figures of a leakage report, flattened: counts, overlaps and neighbour counts."""
    out: dict[str, object] = {"method": report.get("method")}
    for group in ("counts", "counts_all"):
        out.update({f"{group}.{k}": v for k, v in report.get(group, {}).items()})
    for key in ("dropped", "overlapping_pairs", "overlapping_pairs_same_split"):
        out[key] = report.get(key)
    for pair in report.get("pairs", []):
        name = "/".join(pair["splits"])
        out[f"pairs[{name}].overlapping_pairs"] = pair["overlapping_pairs"]
        for dist, cells in pair["neighbours"].items():
            out.update({f"pairs[{name}].neighbours[{dist}].{k}": v for k, v in cells.items()})
    return out
