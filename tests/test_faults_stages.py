"""Faults of the dataset-level stages (issue 14, item 8): all-or-nothing noise variants, no empty
dataset folder, corrupt store tables named, failure lists that name their stores, negative worker
counts refused, no wall-clock seconds in outputs that claim byte-identical results."""

from __future__ import annotations

import hashlib
import json
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from rsprep.cli.main import app
from rsprep.store.workstore import LABELS_TABLE, MANIFEST, PATCH_TABLE, find_stores

RSPREP = str(Path(sys.executable).with_name("rsprep"))
NOISE = ["--mode", "mixed", "--sub-rate", "0.2", "--add-rate", "0.1"]


def _limited(limit: int):
    def preexec():  # a file-size limit: writes past it fail like a full disk (Python ignores SIGXFSZ)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return preexec


def _run(args: list[str], limit: int | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [RSPREP, *args],
        preexec_fn=_limited(limit) if limit else None,
        capture_output=True,
        text=True,
        check=False,
    )


def _hashes(folder: Path) -> dict[str, str]:
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            out[str(p.relative_to(folder))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def test_noise_on_a_full_disk_leaves_no_half_variant_and_keeps_the_previous_one(dataset, tmp_path):
    ds = tmp_path / "ds"
    shutil.copytree(dataset, ds)
    noise = ds / "noise"
    before = _hashes(ds)
    r = _run(["noise", str(ds), *NOISE, "--name", "v"], limit=4096)
    assert r.returncode == 1, r.stderr
    assert f"writing {noise / 'v'}" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not noise.exists() or not list(noise.iterdir())  # no half variant, no temporary
    assert _hashes(ds) == before
    # A half variant (as an older rsprep left it) does not count: the re-run needs no --overwrite.
    noise.mkdir()
    (noise / "v.parquet").write_bytes(b"half")
    r = _run(["noise", str(ds), *NOISE, "--name", "v"])
    assert r.returncode == 0, r.stderr
    done = _hashes(noise)
    assert {"v.parquet", "v_flips.parquet", "v.json"} == set(done)
    # A failing --overwrite leaves the complete variant as it was.
    r = _run(["noise", str(ds), "--mode", "uniform", "--rate", "0.3", "--name", "v", "--overwrite"], 4096)
    assert r.returncode == 1 and f"writing {noise / 'v'}" in r.stderr, r.stderr
    assert _hashes(noise) == done
    r = _run(["noise", str(ds), *NOISE, "--name", "v"])
    assert r.returncode == 1 and "--overwrite" in r.stderr, r.stderr


def test_metadata_on_a_full_disk_leaves_no_dataset_folder(reference_work, tmp_path):
    out = tmp_path / "new"
    r = _run(["metadata", "--work", str(reference_work), "--out", str(out)], limit=2048)
    assert r.returncode == 1, r.stderr
    assert f"writing {out}" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == []


@pytest.fixture()
def work_copy(reference_work, tmp_path) -> Path:
    work = tmp_path / "work"
    shutil.copytree(reference_work, work)
    return work


@pytest.mark.parametrize("name", [PATCH_TABLE, LABELS_TABLE])
def test_metadata_names_a_truncated_or_random_store_table(work_copy, tmp_path, name):
    store = find_stores(work_copy)[0]
    path = store.path / name
    good = path.read_bytes()
    runner = CliRunner()
    for damaged in (good[: len(good) // 2], bytes(range(256)) * 8):
        path.write_bytes(damaged)
        before = _hashes(work_copy)
        out = tmp_path / "ds"
        r = runner.invoke(app, ["metadata", "--work", str(work_copy), "--out", str(out)])
        assert r.exit_code == 1, r.output
        assert f"{path} of store {store.name} is not a readable parquet file" in r.output, r.output
        assert "--force" in r.output and "Traceback" not in r.output
        assert isinstance(r.exception, SystemExit)
        assert not out.exists() and _hashes(work_copy) == before


def test_reference_failures_name_their_stores(work_copy, reference_work, archive, manifest):
    stores = find_stores(work_copy)
    assert len(stores) == 4
    broken = [stores[1], stores[3]]
    for s in broken:
        doc = json.loads((s.path / MANIFEST).read_text())
        del doc["stages"]["patch"]
        (s.path / MANIFEST).write_text(json.dumps(doc))
    clc = archive / manifest["clc"]["path"]
    r = CliRunner().invoke(app, ["reference", "--clc", str(clc), "--work", str(work_copy), "-j", "1"])
    assert r.exit_code == 1, r.output
    header = next(line for line in r.output.splitlines() if "2 of 4 store(s) failed" in line)
    assert all(s.name in header for s in broken), header
    assert all(f"  {s.name}: " in r.output for s in broken), r.output


def _commands_with_workers() -> list[str]:
    group = typer.main.get_command(app)
    return sorted(
        name
        for name, cmd in group.commands.items()
        if any("--workers" in getattr(p, "opts", ()) for p in cmd.params)
    )


def test_negative_worker_counts_are_refused_by_every_command(tmp_path):
    missing = str(tmp_path / "missing")
    args = {
        "patch": [missing, "--out", missing],
        "stack": [missing],
        "s1": ["--s1", missing, "--work", missing],
        "reference": ["--clc", missing, "--work", missing],
        "convert": ["lmdb", missing],
        "smoke-train": [missing],
        "build": ["demo", "--s2", missing, "--clc", missing, "--out", missing],
    }
    assert _commands_with_workers() == sorted(args)
    runner = CliRunner()
    for cmd, rest in args.items():
        r = runner.invoke(app, [cmd, *rest, "--workers", "-2"])
        assert r.exit_code in (1, 2), (cmd, r.output)
        assert "-2" in r.output and "workers" in r.output, (cmd, r.output)
        assert "does not exist" not in r.output, (cmd, r.output)  # refused before any input is read
    assert not Path(missing).exists()


def test_two_runs_give_byte_identical_manifests_and_noise_reports(dataset, tmp_path):
    from rsprep.core.noise import NoiseOptions
    from rsprep.stages.noise import make_noise
    from rsprep.stages.patch import patch_products
    from rsprep.stages.reference import reference_work
    from rsprep.stages.stack import stack_work
    from rsprep.synth import SynthConfig, load_manifest, synthesize

    arch = tmp_path / "archive"
    synthesize(arch, SynthConfig(tiles=1, acquisitions=1, s1=False, content="gtiff"))
    m = load_manifest(arch)
    manifests = []
    for w in (tmp_path / "w1", tmp_path / "w2"):
        patch_products([arch / p["path"] for p in m["products"]], out=w)
        stack_work(w)
        results, _ = reference_work(w, arch / m["clc"]["path"])
        assert [r.status for r in results] == ["done"]
        (store,) = find_stores(w)
        assert set(store.manifest["stages"]) == {"patch", "stack", "reference"}
        manifests.append((store.path / MANIFEST).read_bytes())
    assert manifests[0] == manifests[1]
    assert b"seconds" not in manifests[0]
    ds = tmp_path / "ds"
    shutil.copytree(dataset, ds)
    runs = []
    for _ in range(2):
        report = make_noise(ds, NoiseOptions(mode="mixed", sub_rate=0.2, add_rate=0.1), overwrite=True)
        assert "seconds" not in report
        runs.append(_hashes(ds / "noise"))
    assert runs[0] == runs[1] and len(runs[0]) == 3
