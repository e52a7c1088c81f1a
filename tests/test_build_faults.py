"""``rsprep build`` outputs that do not depend on where they were built (a dataset moved with its work
store still converts, validates and makes its card), and a write failure (a file-size limit, like a
full disk) mid-build: exit 1, one error naming the file, nothing that looks complete, inputs unchanged,
and a rerun that resumes to the bytes of an uninterrupted build."""

from __future__ import annotations

import json
import resource
import shutil
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from rsprep.build.recipe import load_recipe
from rsprep.build.run import build
from rsprep.store import dataset as ds
from rsprep.synth import SynthConfig, synthesize
from tests.test_build import cli_args, inputs, tree_hashes

#: Larger than every per-product file of the demo (< 1 MB), smaller than its LMDB (≈ 10 MB).
LIMIT = 3_000_000


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The archive (and its hashes), and the demo built into ROOT/a/out."""
    root = tmp_path_factory.mktemp("build_faults")
    archive = root / "archive"
    synthesize(archive, SynthConfig())
    out = root / "a" / "out"
    result = build(load_recipe("demo"), **inputs(archive), out=out, workers=1)
    assert result.ok, result.failures
    return {"root": root, "archive": archive, "out": out, "hashes": tree_hashes(out)}


def _no_absolute_path(folder: Path, where: Path) -> list[str]:
    """Files under ``folder`` (build.json left out) whose bytes name ``where``."""
    needle = str(where.resolve()).encode()
    return [
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if p.is_file() and p.name != "build.json" and needle in p.read_bytes()
    ]


def test_outputs_do_not_depend_on_where_they_were_built(built):
    out_a = built["out"]
    assert not _no_absolute_path(out_a, out_a)
    out_b = built["root"] / "b" / "elsewhere" / "out"
    result = build(load_recipe("demo"), **inputs(built["archive"]), out=out_b, workers=2)
    assert result.ok, result.failures
    assert tree_hashes(out_b) == built["hashes"]
    attrs = json.loads((out_a / "dataset/zarr/dataset.zarr/zarr.json").read_text())["attributes"]
    assert attrs["source"]["path"] == "." and attrs["source"]["work"] == "../work"
    report = json.loads(next((out_a / "dataset/noise").glob("*.json")).read_text())
    assert report["input"]["path"] == "metadata.parquet"
    assert ds.resolve_recorded(report["outputs"]["labels"], out_a / "dataset").is_file()
    assert "work store `../work`" in (out_a / "dataset/README.md").read_text()


def test_recorded_paths_are_relative_inside_or_beside_the_dataset_else_absolute(tmp_path):
    dataset = tmp_path / "out" / "dataset"
    assert ds.recorded_path(dataset / "lmdb", dataset) == "lmdb"
    assert ds.recorded_path(tmp_path / "out" / "work", dataset) == "../work"
    assert ds.recorded_path(tmp_path / "far" / "m.csv", dataset) == str(
        (tmp_path / "far" / "m.csv").resolve()
    )
    assert ds.resolve_recorded("../work", dataset) == (tmp_path / "out" / "work").resolve()


def test_a_moved_out_still_converts_validates_and_cards(built, tmp_path):
    from rsprep.card import CardOptions, make_card
    from rsprep.stages.convert import convert
    from rsprep.stages.stats import StatsOptions, write_stats
    from rsprep.validation import validate

    moved = tmp_path / "moved" / "out"
    shutil.copytree(built["out"], moved)
    dataset = moved / "dataset"
    assert ds.work_store(dataset) == (moved / "work").resolve()
    recipe = load_recipe("demo")
    # stats and every conversion again: their build.json records name their paths (absolute ones, by
    # those stages: not in this file's scope), which the card shows relative to the dataset
    for kind in ("lmdb", "zarr", "tiff"):  # with the recipe's options (the demo's Zarr holds the stack)
        result = convert(
            kind, dataset, None, replace(recipe.convert_options(kind, workers=1), overwrite=True)
        )
        assert result.values and Path(result.path).resolve().is_relative_to(dataset.resolve())
    report = validate(dataset, full=True)
    assert report.error_count == 0, [e.message for e in report.errors]
    write_stats(dataset, StatsOptions(), overwrite=True)
    countries = built["archive"] / "countries/countries.gpkg"
    make_card(dataset, CardOptions(countries=countries), overwrite=True)
    assert tree_hashes(moved) == built["hashes"]  # the same bytes, rebuilt where it now lies
    assert str(built["out"]) not in (dataset / "README.md").read_text()


def _limited() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG), like a full disk
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))


def test_a_write_failure_mid_build_stops_cleanly_and_the_rerun_resumes(built):
    archive = built["archive"]
    before = tree_hashes(archive, skip=set())
    out = built["root"] / "full" / "out"
    command = [sys.executable, "-m", "rsprep.cli.main", "-q", *cli_args(archive, out)]
    r = subprocess.run(command, preexec_fn=_limited, capture_output=True, text=True, timeout=600)
    assert r.returncode == 1, r.stderr
    errors = [line for line in r.stderr.splitlines() if "failed (" in line]
    assert len(errors) == 1 and "convert:lmdb" in errors[0] and "data.mdb" in errors[0], r.stderr
    assert "run the same command again" in errors[0] and "Traceback" not in r.stderr
    record = json.loads((out / "build.json").read_text())
    assert record["steps"]["convert:lmdb"]["status"] == "failed"
    assert all(record["steps"].get(s, {}).get("status") != "done" for s in ("convert:zarr", "stats", "card"))
    assert [f["stage"] for f in record["failures"]] == ["convert:lmdb"]
    assert not (out / "dataset" / "lmdb").exists() and not (out / "dataset" / "README.md").exists()
    assert tree_hashes(archive, skip=set()) == before
    r = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert tree_hashes(out) == built["hashes"]
    assert tree_hashes(archive, skip=set()) == before
    assert json.loads((out / "build.json").read_text())["failures"] == []
