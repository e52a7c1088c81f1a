"""examples/ci/validate-dataset.sh, as a CI job runs it: report.json and the exit-code contract."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "ci" / "validate-dataset.sh"
RSPREP = Path(sys.executable).with_name("rsprep")


def run_script(cwd: Path, dataset: Path, args: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "RSPREP": str(RSPREP), "DATASET": str(dataset), "VALIDATE_ARGS": args}
    return subprocess.run(
        ["bash", str(SCRIPT)], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )


def test_the_ci_script_passes_a_clean_dataset_and_fails_a_broken_one(full_dataset, tmp_path):
    ds = tmp_path / "ds"
    shutil.copytree(full_dataset, ds)
    ok = run_script(tmp_path, ds, "--sample 5")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["ok"] is True and report["sample"]["patches"] == 5
    assert "0 error(s)" in ok.stdout

    meta = ds / "metadata.parquet"
    table = pq.read_table(meta)
    first = table.column("patch_id")[0].as_py()
    split = pc.if_else(pc.equal(table.column("patch_id"), first), "training", table.column("split"))
    pq.write_table(
        table.set_column(table.column_names.index("split"), "split", split), meta, store_schema=False
    )
    bad = run_script(tmp_path, ds, "--checks schema")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "split 'training'" in bad.stdout and "error [schema]" in bad.stdout
    assert json.loads((tmp_path / "report.json").read_text())["errors"] >= 1

    usage = run_script(tmp_path, ds, "--sample nope")
    assert usage.returncode == 2
    gone = run_script(tmp_path, tmp_path / "nowhere")
    assert gone.returncode == 1 and "no report" in gone.stderr


def test_the_job_definition_runs_the_script():
    job = (ROOT / "examples" / "ci" / "github-actions.yml").read_text()
    assert "bash examples/ci/validate-dataset.sh" in job
    import yaml

    doc = yaml.safe_load(job)
    steps = doc["jobs"]["validate"]["steps"]
    assert any("validate-dataset.sh" in s.get("run", "") for s in steps)
