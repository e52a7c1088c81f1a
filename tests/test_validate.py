"""rsprep validate: the report, the selection of checks and samples, the CLI's exit codes."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from rsprep.cli.main import app
from rsprep.errors import InputNotFoundError, InvalidParameterError
from rsprep.validation import CHECKS, validate


def test_a_clean_dataset_passes_every_check(full_dataset):
    report = validate(full_dataset, full=True)
    assert report.ok, [p for p in report.problems][:10]
    assert [c.name for c in report.checks] == list(CHECKS)
    assert report.outputs == ["lmdb", "zarr", "tiff"]
    assert report.sample == {"patches": 31, "of": 31, "seed": 0, "full": True}
    assert report.outcome("schema").checked == 31


def test_check_selection_and_bad_arguments(full_dataset, tmp_path):
    report = validate(full_dataset, checks=["schema"])
    assert [c.status for c in report.checks if c.name != "schema"] == ["skipped"] * (len(CHECKS) - 1)
    assert validate(full_dataset, skip=["values"]).outcome("values").status == "skipped"
    with pytest.raises(InvalidParameterError, match=r"unknown check.*nope.*choose from schema"):
        validate(full_dataset, checks=["nope"])
    with pytest.raises(InvalidParameterError, match="--sample"):
        validate(full_dataset, sample=0)
    sampled = validate(full_dataset, sample=5, seed=3).sample
    assert sampled == {"patches": 5, "of": 31, "seed": 3, "full": False}
    assert validate(full_dataset, sample=0.5).sample["patches"] == 16
    with pytest.raises(InputNotFoundError, match="does not exist"):
        validate(tmp_path / "missing")
    with pytest.raises(InputNotFoundError, match="not a reBEN dataset"):
        validate(tmp_path)


def test_official_sample_tables_warn_about_their_pandas_quirks(shared_data):
    report = validate(shared_data("reben-v2-metadata-sample"))
    assert report.ok and report.kind == "official"
    messages = [p.message for p in report.warnings]
    assert any("__index_level_0__" in m for m in messages)
    assert any("'item'" in m for m in messages)


def test_cli_exit_codes_and_json(full_dataset, shared_data):
    runner = CliRunner()
    r = runner.invoke(app, ["validate", str(full_dataset)])
    assert r.exit_code == 0, r.output
    assert "schema" in r.output and "ok, 0 warning(s)" in r.output
    r = runner.invoke(app, ["validate", str(full_dataset), "--json", "--checks", "schema"])
    assert r.exit_code == 0
    doc = json.loads(r.output)
    assert doc["ok"] is True and doc["errors"] == 0 and doc["checks"][0]["name"] == "schema"
    sample = str(shared_data("reben-v2-metadata-sample"))
    assert runner.invoke(app, ["validate", sample, "--checks", "schema"]).exit_code == 0
    strict = runner.invoke(app, ["validate", sample, "--checks", "schema", "--strict"])
    assert strict.exit_code == 1 and "warning [schema]" in strict.output
    assert runner.invoke(app, ["validate", sample, "--checks", "bogus"]).exit_code == 1
    assert runner.invoke(app, ["validate", sample, "--sample", "x"]).exit_code == 2
