"""rsprep validate: the noise variants (clean labels, flip logs, reports) and checksums.sha256."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from rsprep.cli.main import app
from rsprep.core.noise import NoiseOptions
from rsprep.formats.lmdb import LmdbReader
from rsprep.stages.noise import make_noise
from rsprep.validation import validate
from rsprep.validation.checks.checksums import CHECKSUMS, write_checksums

VARIANT = "mixed_sub0.2_add0.1_seed0"
#: A variant with flips (the fixture's mixed one has none at 8 train rows): 2 per class.
FLIPPED = "uniform_test"


@pytest.fixture
def ds(full_dataset, tmp_path) -> Path:
    out = tmp_path / "ds"
    shutil.copytree(full_dataset, out)
    return out


@pytest.fixture
def noisy(ds) -> Path:
    """The copy with a second variant that flips labels in train and validation."""
    make_noise(ds, NoiseOptions(mode="uniform", rate=0.3, splits=("train", "validation")), name=FLIPPED)
    return ds


def problems(report, check: str) -> list[tuple[str, str | None]]:
    return [(p.message, p.where) for p in report.problems if p.check == check]


def only(report, check: str, fragment: str, where: str) -> None:
    """The check found errors, and one of them says ``fragment`` at ``where``."""
    found = problems(report, check)
    assert report.outcome(check).status == "errors", found
    assert any(fragment in m and w == where for m, w in found), found


# --------------------------------------------------------------------------------------------
# noise
# --------------------------------------------------------------------------------------------
def test_clean_variants_pass(full_dataset, noisy):
    report = validate(full_dataset, checks=["noise"])
    assert report.outcome("noise").status == "ok" and report.outcome("noise").checked == 12
    report = validate(noisy, checks=["noise"])
    outcome = report.outcome("noise")
    flips = pq.read_table(noisy / "noise" / f"{FLIPPED}_flips.parquet").num_rows
    assert flips > 10
    assert outcome.status == "ok", problems(report, "noise")
    assert outcome.checked == 12 + 12 + flips and outcome.note == "2 variant(s)"


def test_no_noise_folder_is_skipped(ds):
    shutil.rmtree(ds / "noise")
    outcome = validate(ds, checks=["noise"]).outcome("noise")
    assert outcome.status == "skipped" and "no noise variants" in outcome.note


def test_a_changed_clean_label_is_an_error(ds):
    path = ds / "noise" / f"{VARIANT}.parquet"
    table = pq.read_table(path)
    labels = table.column("labels").to_pylist()
    pid = table.column("patch_id")[0].as_py()
    labels[0] = sorted({*labels[0], "Beaches, dunes, sands"} - {labels[0][0]})
    pq.write_table(table.set_column(2, "labels", pa.array(labels, table.schema.field("labels").type)), path)
    report = validate(ds, checks=["noise"])
    only(report, "noise", "clean labels changed", f"noise/{VARIANT}.parquet: {pid}")


def test_a_flip_missing_from_the_log_is_an_error(noisy):
    path = noisy / "noise" / f"{FLIPPED}_flips.parquet"
    flips = pq.read_table(path)
    dropped = flips.slice(0, 1).to_pylist()[0]
    pq.write_table(flips.slice(1), path)
    report = validate(noisy, checks=["noise"])
    where = f"noise/{FLIPPED}.parquet: {dropped['patch_id']}"
    only(report, "noise", "a difference not logged: labels → labels_noisy", where)
    action = "removes" if dropped["action"] == "remove" else "adds"
    assert any(f"{action} {dropped['class']!r}" in m for m, w in problems(report, "noise") if w == where)
    # the report's counts no longer match the shortened log either
    only(report, "noise", f"class {dropped['class']!r}: {dropped['action']}", f"noise/{FLIPPED}.json")


def test_a_wrongly_logged_flip_and_bad_noisy_names_are_errors(noisy):
    path = noisy / "noise" / f"{FLIPPED}_flips.parquet"
    flips = pq.read_table(path).to_pylist()
    flips[0]["action"] = "add" if flips[0]["action"] == "remove" else "remove"
    pq.write_table(pa.Table.from_pylist(flips), path)
    variant = noisy / "noise" / f"{FLIPPED}.parquet"
    table = pq.read_table(variant)
    noisy_labels = table.column("labels_noisy").to_pylist()
    noisy_labels[-1] = [*noisy_labels[-1], "Moon dust"]
    column = pa.array(noisy_labels, table.schema.field("labels_noisy").type)
    pq.write_table(table.set_column(3, "labels_noisy", column), variant)
    report = validate(noisy, checks=["noise"])
    only(report, "noise", "logged as", f"noise/{FLIPPED}_flips.parquet: {flips[0]['patch_id']}")
    last = table.column("patch_id")[-1].as_py()
    only(report, "noise", "labels_noisy holds ['Moon dust']", f"noise/{FLIPPED}.parquet: {last}")


def test_flips_outside_the_reported_splits_are_errors(noisy):
    path = noisy / "noise" / f"{FLIPPED}.json"
    doc = json.loads(path.read_text())
    doc["configuration"]["splits"] = ["train"]
    path.write_text(json.dumps(doc))
    flips = pq.read_table(noisy / "noise" / f"{FLIPPED}_flips.parquet")
    table = pq.read_table(noisy / "noise" / f"{FLIPPED}.parquet")
    split = dict(zip(table.column("patch_id").to_pylist(), table.column("split").to_pylist(), strict=True))
    pid = next(p for p in flips.column("patch_id").to_pylist() if split[p] == "validation")
    report = validate(noisy, checks=["noise"])
    only(report, "noise", "in split 'validation'", f"noise/{FLIPPED}.parquet: {pid}")
    only(report, "noise", "target_rows is 10 in the report", f"noise/{FLIPPED}.json")


def test_a_patch_that_is_no_dataset_patch_is_an_error(ds):
    path = ds / "noise" / f"{VARIANT}.parquet"
    table = pq.read_table(path)
    ids = table.column("patch_id").to_pylist()
    ids[-1] = "S2A_MSIL2A_20990101T000000_N9999_R022_T33UUP_9_9"
    pq.write_table(table.set_column(0, "patch_id", pa.array(ids)), path)
    report = validate(ds, checks=["noise"])
    only(report, "noise", "not a patch of the dataset", f"noise/{VARIANT}.parquet: {ids[-1]}")


# --------------------------------------------------------------------------------------------
# checksums
# --------------------------------------------------------------------------------------------
def a_tiff(ds: Path) -> str:
    return next(p.relative_to(ds).as_posix() for p in sorted((ds / "BigEarthNet-S2").rglob("*.tif")))


def test_checksums_of_a_clean_copy_pass(ds):
    assert validate(ds, checks=["checksums"]).outcome("checksums").status == "skipped"
    path, entries = write_checksums(ds)
    assert path == ds / CHECKSUMS
    lines = path.read_text().splitlines()
    assert len(lines) == entries and lines == sorted(lines, key=lambda line: line[66:])
    paths = [line[66:] for line in lines]
    assert "metadata.parquet" in paths and "build.json" not in paths and CHECKSUMS not in paths
    assert "lmdb/data.mdb" not in paths
    keys = [p for p in paths if p.startswith("lmdb/data.mdb::")]
    assert len(keys) == 93  # 31 S2 + 31 S1 + 31 maps
    report = validate(ds, checks=["checksums"])
    assert report.outcome("checksums").status == "ok", problems(report, "checksums")
    assert report.outcome("checksums").checked == entries
    # build.json and a hidden temporary do not count
    (ds / "build.json").write_text((ds / "build.json").read_text() + "\n")
    (ds / ".metadata.parquet.tmp-1").write_bytes(b"x")
    assert validate(ds, checks=["checksums"]).outcome("checksums").status == "ok"


def test_a_changed_lmdb_value_names_its_key(ds):
    import lmdb

    write_checksums(ds)
    LmdbReader(ds / "lmdb").close()
    key = pq.read_table(ds / "metadata.parquet").column("patch_id")[0].as_py()
    env = lmdb.open(str(ds / "lmdb"), map_size=64 << 20)
    with env.begin(write=True) as txn:
        value = bytearray(txn.get(key.encode()))
        value[-1] ^= 0xFF
        txn.put(key.encode(), bytes(value))
    env.close()
    (ds / "lmdb" / "lock.mdb").unlink()
    report = validate(ds, checks=["checksums"])
    only(report, "checksums", "changed", f"lmdb/data.mdb::{key}")
    assert len(problems(report, "checksums")) == 1


def test_changed_missing_and_stray_files(ds):
    write_checksums(ds)
    tiff = a_tiff(ds)
    with (ds / tiff).open("ab") as f:
        f.write(b"\0")
    table = pq.read_table(ds / "metadata.parquet")
    pq.write_table(table.slice(1), ds / "metadata.parquet")
    (ds / "split_report.txt").unlink()
    (ds / "noise" / "notes.txt").write_text("mine\n")
    report = validate(ds, checks=["checksums"])
    only(report, "checksums", "changed", tiff)
    only(report, "checksums", "changed", "metadata.parquet")
    only(report, "checksums", "missing", "split_report.txt")
    only(report, "checksums", "not in checksums.sha256", "noise/notes.txt")
    assert len(problems(report, "checksums")) == 4


def test_a_malformed_line_and_a_missing_key(ds):
    write_checksums(ds)
    lines = (ds / CHECKSUMS).read_text().splitlines()
    key_line = next(i for i, line in enumerate(lines) if "::" in line)
    key = lines[key_line].split("::", 1)[1]
    lines[key_line] = lines[key_line].replace("::", "::gone_")
    lines.insert(2, "not a checksum line")
    (ds / CHECKSUMS).write_text("\n".join(lines) + "\n")
    report = validate(ds, checks=["checksums"])
    only(report, "checksums", "malformed line 3", f"{CHECKSUMS}:3")
    only(report, "checksums", "missing", f"lmdb/data.mdb::gone_{key}")
    only(report, "checksums", "not in checksums.sha256", f"lmdb/data.mdb::{key}")
    assert len(problems(report, "checksums")) == 3


def test_cli_writes_checksums_and_passes(ds):
    r = CliRunner().invoke(app, ["validate", str(ds), "--write-checksums", "--checks", "checksums,noise"])
    assert r.exit_code == 0, r.output
    assert (ds / CHECKSUMS).is_file() and f"wrote {ds / CHECKSUMS}" in r.output
    report = validate(ds, checks=["checksums"])
    assert report.outcome("checksums").status == "ok"


def test_a_failed_checksum_write_names_the_file_and_keeps_the_old_one(full_dataset, tmp_path):
    import resource
    import subprocess
    import sys

    copy = tmp_path / "ds"
    shutil.copytree(full_dataset, copy)
    (copy / "checksums.sha256").write_text("old\n")
    rsprep = str(Path(sys.executable).with_name("rsprep"))

    def limit():  # a 1 KiB file-size limit: the write fails like a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))

    r = subprocess.run(
        [rsprep, "validate", str(copy), "--write-checksums", "--checks", "checksums"],
        preexec_fn=limit,
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 1 and f"writing {copy / 'checksums.sha256'} failed" in r.stderr, r.stderr
    assert (copy / "checksums.sha256").read_text() == "old\n"
    assert not [p for p in copy.iterdir() if ".tmp-" in p.name]
