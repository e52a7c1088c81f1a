"""rsprep validate, the rule checks: labels re-derived from the reference maps, splits re-derived from
the recorded method (each on a damaged copy of the demo dataset, and on the official sample tables)."""

from __future__ import annotations

import shutil

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from rsprep.core.grid import parse_patch_ids
from rsprep.core.leakage import overlapping_pairs
from rsprep.core.positions import positions
from rsprep.store import dataset as ds
from rsprep.validation import validate

#: The noise variant copies the tables' labels and splits, so the noise check rightly reports a change
#: made to the tables as well; the tests that change them leave it out.
NOT_NOISE = ("noise",)


@pytest.fixture
def copy(full_dataset, tmp_path):
    out = tmp_path / "ds"
    shutil.copytree(full_dataset, out)
    return out


def _first_patch(path) -> str:
    return pq.read_table(path).column("patch_id")[0].as_py()


def _set(table: pa.Table, patch_id: str, column: str, value) -> pa.Table:
    """``table`` with ``column`` of the row ``patch_id`` set to ``value`` (other rows unchanged)."""
    col = table.column(column)
    mask = pc.equal(table.column("patch_id"), patch_id)
    new = pc.if_else(mask, pa.scalar(value, col.type), col)
    return table.set_column(table.column_names.index(column), column, new)


def _only(report, check: str, fragment: str, where: str) -> None:
    """``check`` reports an error containing ``fragment`` at ``where``; no other check has an error."""
    found = [(p.check, p.message, p.where) for p in report.errors]
    assert (check, where) in {(c, w) for c, m, w in found if fragment in m}, found
    others = [p for p in report.errors if p.check != check]
    assert not others, others


def test_the_clean_demo_dataset_passes_both_rule_checks(full_dataset):
    report = validate(full_dataset, checks=["labels", "split"], full=True)
    assert report.ok and not report.warnings, report.problems
    labels, split = report.outcome("labels"), report.outcome("split")
    assert labels.checked == 31 and "the work store's reference stage" in labels.note
    assert "from zarr" in labels.note and "compared for 31 row(s)" in labels.note
    assert "stages.metadata.options.split" in split.note and "on patches.parquet" in split.note


def test_a_changed_label_is_reported_from_every_output(copy):
    meta = copy / ds.METADATA
    pid = _first_patch(meta)
    table = pq.read_table(meta)
    old = table.filter(pc.equal(table.column("patch_id"), pid)).column("labels")[0].as_py()
    new = old[1:] if len(old) > 1 else sorted({*old, "Marine waters"})
    ds.write_metadata(_set(table, pid, "labels", new), meta)
    report = validate(copy, full=True, skip=NOT_NOISE)
    _only(report, "labels", "its reference map gives", pid)
    assert any("Zarr's multi-hot labels" in p.message and p.where == pid for p in report.errors)
    shutil.rmtree(copy / "zarr")  # the maps now come from the LMDB, then from the GeoTIFF layout
    assert "from lmdb" in validate(copy, checks=["labels"], full=True).outcome("labels").note
    _only(validate(copy, checks=["labels"], full=True), "labels", "its reference map gives", pid)
    shutil.rmtree(copy / "lmdb")
    report = validate(copy, checks=["labels"], full=True)
    assert "from tiff" in report.outcome("labels").note
    _only(report, "labels", "its reference map gives", pid)


def test_an_empty_label_list_is_an_error(copy):
    meta = copy / ds.METADATA
    pid = _first_patch(meta)
    ds.write_metadata(_set(pq.read_table(meta), pid, "labels", []), meta)
    report = validate(copy, checks=["labels"], full=True)
    _only(report, "labels", "has no labels in the tables", pid)


def test_a_patch_moved_in_the_tables_and_the_sidecar_breaks_the_split(copy):
    meta, side = copy / ds.METADATA, copy / ds.SIDECAR
    pid = _first_patch(meta)
    table = pq.read_table(meta)
    old = table.filter(pc.equal(table.column("patch_id"), pid)).column("split")[0].as_py()
    new = "test" if old != "test" else "validation"
    ds.write_metadata(_set(table, pid, "split", new), meta)
    sidecar = pq.read_table(side)
    pq.write_table(_set(sidecar, pid, "split", new), side)
    report = validate(copy, full=True, skip=NOT_NOISE)
    _only(report, "split", f"{new!r} in metadata.parquet, {new!r} in patches.parquet", pid)
    mismatch = next(p for p in report.errors if p.where == pid and "recorded method" in p.message)
    assert f"gives {old!r}" in mismatch.message and "tile-border" in mismatch.message
    assert report.outcome("labels").status == "ok"
    # the report's counts were written for the old splits; the Zarr store still has the old split
    assert any(p.where == ds.SPLIT_REPORT and p.message.startswith(f"counts.{new} ") for p in report.errors)
    assert any(p.where == pid and f"{old!r} in zarr" in p.message for p in report.errors)


def test_overlapping_patches_in_two_splits_break_tile_border(copy):
    meta, side = copy / ds.METADATA, copy / ds.SIDECAR
    sidecar = pq.read_table(side)
    pos = positions(sidecar, parse_patch_ids(sidecar.column("patch_id")), patch_size=1200.0)
    i, j = overlapping_pairs(np.zeros(sidecar.num_rows, dtype=np.int8), pos)  # two dates of one tile
    in_meta = set(pq.read_table(meta).column("patch_id").to_pylist())
    ids = sidecar.column("patch_id").to_pylist()
    a, b = next((ids[a], ids[b]) for a, b in zip(i, j, strict=True) if ids[a] in in_meta)
    old = sidecar.filter(pc.equal(sidecar.column("patch_id"), a)).column("split")[0].as_py()
    new = "test" if old != "test" else "validation"
    ds.write_metadata(_set(pq.read_table(meta), a, "split", new), meta)
    pq.write_table(_set(sidecar, a, "split", new), side)
    report = validate(copy, checks=["split"], full=True)
    assert any(
        p.where == a and f"covers the same ground as {b} ({old}) but is in {new}" in p.message
        for p in report.errors
    ), report.errors


def test_a_patch_moved_in_one_table_only_disagrees_with_the_sidecar(copy):
    meta = copy / ds.METADATA
    pid = _first_patch(meta)
    table = pq.read_table(meta)
    old = table.filter(pc.equal(table.column("patch_id"), pid)).column("split")[0].as_py()
    new = "test" if old != "test" else "validation"
    ds.write_metadata(_set(table, pid, "split", new), meta)
    report = validate(copy, full=True, skip=NOT_NOISE)
    _only(report, "split", f"is in more than one split: {new!r} in metadata.parquet", pid)
    disagree = next(p for p in report.errors if "more than one split" in p.message)
    assert f"{old!r} in patches.parquet" in disagree.message
    # the sidecar still holds the split the method gives, so the leakage report still agrees with it
    assert not any(p.where == ds.SPLIT_REPORT for p in report.problems)


def test_a_patch_in_both_metadata_files_is_a_schema_error(copy):
    meta, flagged = copy / ds.METADATA, copy / ds.FLAGGED
    pid = _first_patch(meta)
    table = pq.read_table(meta)
    row = table.filter(pc.equal(table.column("patch_id"), pid))
    ds.write_metadata(pa.concat_tables([pq.read_table(flagged), row]), flagged)
    report = validate(copy, full=True, skip=NOT_NOISE)  # the noise variant names the patch once
    assert report.outcome("labels").status == report.outcome("split").status == "ok"
    assert "compared as a set" in report.outcome("completeness").note
    _only(report, "schema", "in both", pid)


def test_a_missing_split_report_is_a_warning_for_an_rsprep_dataset(copy):
    (copy / ds.SPLIT_REPORT).unlink()
    report = validate(copy, checks=["split"], full=True)
    assert report.ok and [p.where for p in report.warnings] == [ds.SPLIT_REPORT]


def test_a_changed_split_report_figure_is_named(copy):
    path = copy / ds.SPLIT_REPORT
    path.write_text(path.read_text().replace('"overlapping_pairs": 11', '"overlapping_pairs": 12', 1))
    report = validate(copy, checks=["split"], full=True)
    assert [(p.where, p.message) for p in report.errors] == [
        (ds.SPLIT_REPORT, "overlapping_pairs is 12; recomputed from the splits: 11")
    ]


def test_the_official_sample_splits_are_reben_tile_border_splits(shared_data, tmp_path):
    sample = shared_data("reben-v2-metadata-sample")
    report = validate(sample, checks=["split"])
    outcome = report.outcome("split")
    assert outcome.status == "ok" and outcome.checked == 24, report.problems
    assert "reBEN's default" in outcome.note and not report.problems
    # the check does compare: one official patch moved to another split is named
    out = tmp_path / "sample"
    shutil.copytree(sample, out)
    out.chmod(0o755)
    meta = out / ds.METADATA
    meta.chmod(0o644)
    table = pq.read_table(meta)
    pid = table.column("patch_id")[0].as_py()  # T33UUP_37_88: 3.6 km from the border, train
    pq.write_table(_set(table, pid, "split", "test"), meta)
    report = validate(out, checks=["split"])
    errors = [(p.where, p.message.split(";")[0]) for p in report.errors]
    assert errors == [(pid, "split 'test' in metadata.parquet")]


def test_a_map_that_fails_the_rule_is_an_error(copy):
    import tifffile

    from rsprep.formats.geotiff import band_files

    pid = _first_patch(copy / ds.METADATA)
    shutil.rmtree(copy / "zarr")
    shutil.rmtree(copy / "lmdb")
    path = copy / band_files("map", pid)["Data"]
    tifffile.imwrite(path, np.zeros(tifffile.imread(path).shape, dtype=np.uint16))  # all "no polygon"
    report = validate(copy, checks=["labels"], full=True)
    _only(report, "labels", "fails the label rule (BEN19, unlabeled fraction 1.0000, not below 0.25)", pid)


def test_the_official_sample_map_gives_the_official_labels(shared_data, tmp_path):
    out = tmp_path / "official"
    for name in ("BigEarthNet-S2", "BigEarthNet-S1", "Reference_Maps"):
        shutil.copytree(shared_data("reben-v2-patches") / name, out / name)
    sample = shared_data("reben-v2-metadata-sample")
    for name in (ds.METADATA, ds.FLAGGED):
        shutil.copyfile(sample / name, out / name)
    report = validate(out, checks=["labels"], full=True)
    outcome = report.outcome("labels")
    assert outcome.status == "ok" and outcome.checked == 1, report.problems  # T33UUP_26_57 has a map
    assert "the reBEN rule" in outcome.note and "from tiff" in outcome.note
    meta = out / ds.METADATA
    meta.chmod(0o644)
    pid = "S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_26_57"
    pq.write_table(_set(pq.read_table(meta), pid, "labels", ["Arable land"]), meta)
    _only(validate(out, checks=["labels"], full=True), "labels", "its reference map gives", pid)
