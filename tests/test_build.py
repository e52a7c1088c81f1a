"""``rsprep build`` on the synthetic demo archive: end to end, equal to the chained single-stage
commands, a plan that touches nothing, reruns that change no byte, kill -9 and resume, a corrupted
product, --keep-going, a second build refused, inputs never modified, a moved dataset + work store."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rsprep.build.recipe import load_recipe
from rsprep.build.run import build
from rsprep.cli.main import app
from rsprep.store import dataset as ds
from rsprep.store.lock import LockedError
from rsprep.synth import SynthConfig, synthesize

CLC = "clc/U2018_CLC2018_V2020_20u1.gpkg"
COUNTRIES = "countries/countries.gpkg"
#: Files that record when and how long, not what: left out of the byte comparisons.
TIMING = {"build.json"}


def tree_hashes(root: Path, skip: set[str] = TIMING) -> dict[str, str]:
    """SHA-256 of every file under ``root`` by relative path (``skip``: file names left out)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name not in skip
    }


def inputs(archive: Path) -> dict:
    return {
        "s2": [archive / "s2"],
        "s1": archive / "s1",
        "clc": archive / CLC,
        "countries": archive / COUNTRIES,
    }


def cli_args(archive: Path, out: Path, *extra: str) -> list[str]:
    a = archive
    return [
        *("build", "demo", "--s2", str(a / "s2"), "--s1", str(a / "s1"), "--clc", str(a / CLC)),
        *("--countries", str(a / COUNTRIES), "--out", str(out), "--workers", "2", *extra),
    ]


def chained(archive: Path, out: Path) -> None:
    """The Makefile's demo-stages commands, in this process, into OUT/work and OUT/dataset."""
    a, work, dataset = archive, out / "work", out / "dataset"
    safes = sorted(str(p) for p in (a / "s2").glob("*.SAFE"))
    commands = [
        ["patch", *safes, "--out", str(work), "-j", "1"],
        ["stack", str(work), "-j", "1"],
        ["s1", "--s1", str(a / "s1"), "--work", str(work), "-j", "1"],
        ["reference", "--clc", str(a / CLC), "--work", str(work), "-j", "1"],
        ["metadata", "--work", str(work), "--out", str(dataset), "--countries", str(a / COUNTRIES)],
        ["split", str(dataset), "--method", "tile-border"],
        ["noise", str(dataset), "--mode", "mixed", "--sub-rate", "0.2", "--add-rate", "0.1", "--overwrite"],
        ["convert", "lmdb", str(dataset), "--workers", "1"],
        ["convert", "zarr", str(dataset), "--stack", "--workers", "1"],
        ["convert", "tiff", str(dataset), "--workers", "1"],
        ["stats", str(dataset)],
        ["card", str(dataset), "--countries", str(a / COUNTRIES)],
        ["validate", str(dataset), "--write-checksums", "--full"],
    ]
    runner = CliRunner()
    for cmd in commands:
        r = runner.invoke(app, ["-q", *cmd])
        assert r.exit_code == 0, (cmd, r.output)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The archive, the chained commands' dataset (hashes), then a demo build in the same place."""
    root = tmp_path_factory.mktemp("build")
    archive = root / "archive"
    synthesize(archive, SynthConfig())
    before = tree_hashes(archive, skip=set())
    out = root / "out"
    chained(archive, out)
    chain = tree_hashes(out / "dataset")
    shutil.rmtree(out)
    t0 = time.perf_counter()
    result = build(load_recipe("demo"), **inputs(archive), out=out, workers=1)
    seconds = time.perf_counter() - t0
    return {
        **{"root": root, "archive": archive, "out": out, "before": before, "chain": chain},
        **{"result": result, "seconds": seconds},
    }


def test_demo_build_end_to_end(demo):
    result, out = demo["result"], demo["out"]
    assert result.ok and result.steps_run, result.failures
    record = json.loads((out / "build.json").read_text())
    assert record["recipe"]["name"] == "demo" and record["work"] == "work" and record["dataset"] == "dataset"
    assert record["versions"]["rsprep"] and record["inputs"]["clc"]["digest"]
    assert len(record["products"]) == 4 and not record["failures"]
    for p in record["products"].values():
        assert set(p["stages"]) == {"patch", "stack", "s1", "reference"}
        assert all(s["status"] == "done" and s["peak_rss_mb"] > 0 for s in p["stages"].values())
    assert {s["status"] for s in record["steps"].values()} == {"done"}
    assert ds.work_store(out / "dataset") == (out / "work").resolve()
    assert ds.read_build(out / "dataset")["stages"]["metadata"]["work"] == "../work"


def test_build_equals_the_chained_commands(demo):
    assert tree_hashes(demo["out"] / "dataset") == demo["chain"]


def test_dry_run_touches_nothing_and_shows_the_plan(demo):
    out, archive = demo["out"], demo["archive"]
    runner = CliRunner()
    before = tree_hashes(out, skip=set())
    r = runner.invoke(app, cli_args(archive, out, "--dry-run"))
    assert r.exit_code == 0, r.output
    assert "everything is up to date" in r.output and "to do" not in r.output
    assert tree_hashes(out, skip=set()) == before
    fresh = demo["root"] / "fresh"
    r = runner.invoke(app, cli_args(archive, fresh, "--dry-run"))
    assert r.exit_code == 0 and "not patched yet" in r.output and "after the products" in r.output
    assert not fresh.exists() and not (fresh.parent / ".fresh.lock").exists()
    safes = sorted(str(p) for p in (archive / "s2").glob("*.SAFE"))  # --s2 A B C D, as from a shell glob
    args = cli_args(archive, out, "--dry-run")
    i = args.index("--s2")
    r = runner.invoke(app, [*args[: i + 1], *safes, *args[i + 2 :]])
    assert r.exit_code == 0 and "plan: 4 product(s)" in r.output, r.output


def _all_but_the_build_record(out: Path) -> dict[str, str]:
    """Every file of OUT but OUT/build.json (it records this run's times); the dataset's build.json is in."""
    hashes = tree_hashes(out, skip=set())
    del hashes["build.json"]
    return hashes


def test_rerun_is_up_to_date_and_changes_no_byte(demo):
    out = demo["out"]
    before = _all_but_the_build_record(out)
    r = CliRunner().invoke(app, cli_args(demo["archive"], out))
    assert r.exit_code == 0, r.output
    assert "everything is up to date" in r.output
    assert _all_but_the_build_record(out) == before


def _run_until(args: list[str], ready, timeout: float = 120.0) -> None:
    """Start the build CLI in a subprocess and kill -9 it once ``ready()`` (it must not finish first)."""
    proc = subprocess.Popen([sys.executable, "-m", "rsprep.cli.main", "-q", *args], stderr=subprocess.PIPE)
    t_end = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"the build ended before the kill: {proc.stderr.read().decode()}"
        assert time.monotonic() < t_end
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def test_kill_during_patch_reference_and_convert_then_resume(demo):
    """kill -9 of a build (and its workers) while it patches, of the rerun while it references, of the
    next while it converts; the last run equals the uninterrupted build byte for byte (built in the same
    place: some outputs record their paths)."""
    out, ref = demo["out"], demo["root"] / "uninterrupted"
    out.rename(ref)
    args = cli_args(demo["archive"], out)

    def patching() -> bool:
        work = out / "work"
        return work.is_dir() and any(".tmp-" in p.name for p in work.iterdir())

    def referencing() -> bool:  # a store paired with S1 whose labels are not written yet
        work = out / "work"
        stores = [p for p in work.iterdir() if p.is_dir()] if work.is_dir() else []
        return any((p / "s1.parquet").is_file() and not (p / "labels.parquet").is_file() for p in stores)

    def converting() -> bool:
        d = out / "dataset"
        return d.is_dir() and any(".partial" in p.name for p in [*d.iterdir(), *d.glob("zarr/*")])

    try:
        _run_until(args, patching)
        _run_until(args, referencing)
        _run_until(args, converting)
        result = build(load_recipe("demo"), **inputs(demo["archive"]), out=out, workers=1)
        assert result.ok
        assert tree_hashes(out / "dataset") == tree_hashes(ref / "dataset")
        assert tree_hashes(out / "work") == tree_hashes(ref / "work")
        assert not [p for p in out.rglob("*") if ".tmp-" in p.name or ".partial" in p.name]
    finally:
        shutil.rmtree(out, ignore_errors=True)
        ref.rename(out)


def test_corrupted_product_fails_alone_then_keep_going(demo):
    archive = demo["root"] / "corrupt-archive"
    shutil.copytree(demo["archive"], archive, copy_function=shutil.copy2)
    bad = sorted((archive / "s2").glob("*T33UVP*.SAFE"))[0]
    band = next(bad.rglob("*_B11_20m.jp2"))
    band.write_bytes(band.read_bytes()[: band.stat().st_size // 2])
    out = demo["root"] / "corrupt"
    fast = ["--set", "outputs.formats=[lmdb]", "--set", "outputs.card=false", "--set", "outputs.stats=false"]
    r = CliRunner().invoke(app, cli_args(archive, out, *fast))
    assert r.exit_code == 1
    assert f"{bad}: patch:" in r.output and "B11" in r.output and "--keep-going" in r.output
    record = json.loads((out / "build.json").read_text())
    assert [(f["file"], f["stage"]) for f in record["failures"]] == [(str(bad), "patch")]
    reached = {p: v["stages"].get("reference", {}).get("status") for p, v in record["products"].items()}
    done = [p for p, status in reached.items() if status == "done"]
    assert len(done) == 3 and not (out / "dataset").exists()
    r = CliRunner().invoke(app, cli_args(archive, out, *fast, "--keep-going"))
    assert r.exit_code == 1 and "left out of the dataset" in r.output
    assert "failed before" in r.output  # the plan head names what failed last time
    record = json.loads((out / "build.json").read_text())
    assert record["missing"] == [str(bad)] and record["steps"]["validate"]["status"] == "done"
    assert (out / "dataset" / "lmdb").is_dir()


def test_second_build_into_the_same_out_refuses(demo, tmp_path):
    out = demo["out"]
    code = (
        "import sys, time; from rsprep.store.lock import locked\n"
        "with locked(sys.argv[1], 'build output'):\n    print('held', flush=True); time.sleep(60)"
    )
    holder = subprocess.Popen([sys.executable, "-c", code, str(out)], stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == b"held"
        with pytest.raises(LockedError, match=f"in use by process {holder.pid}"):
            build(load_recipe("demo"), **inputs(demo["archive"]), out=out, workers=1)
    finally:
        holder.kill()
        holder.wait()


def test_moved_dataset_and_work_store_still_convert(demo):
    from rsprep.formats.resumable import ConvertOptions
    from rsprep.stages.convert import convert

    moved = demo["root"] / "moved" / "elsewhere"
    shutil.copytree(demo["out"], moved, symlinks=True)
    assert ds.work_store(moved / "dataset") == (moved / "work").resolve()
    # no output of the build records where it was built (convert and stats record relative paths)
    built_at = str(demo["out"].resolve())
    assert built_at not in (moved / "dataset" / ds.BUILD).read_text()
    result = convert("lmdb", moved / "dataset", moved / "again.lmdb", ConvertOptions(workers=1))
    assert result.values and Path(result.path).is_dir()


def test_inputs_never_modified(demo):
    assert tree_hashes(demo["archive"], skip=set()) == demo["before"]


def test_products_are_found_under_folders_by_level(tmp_path):
    from rsprep.build.products import find_products
    from rsprep.errors import InputNotFoundError

    l2a = tmp_path / "a" / "S2A_MSIL2A_20170613T101031_N0205_R022_T33UUP_20170613T101608.SAFE"
    (l2a / "GRANULE").mkdir(parents=True)
    l1c = tmp_path / "b" / "deep" / "S2B_MSIL1C_20180120T102329_N0206_R022_T33UVP_20180120T122512.zip"
    l1c.parent.mkdir(parents=True)
    l1c.write_bytes(b"PK")
    (tmp_path / "b" / "notes.zip").write_bytes(b"PK")  # no product name: not a product
    assert find_products([tmp_path]) == [l2a, l1c]
    assert find_products([tmp_path], "L1C") == [l1c]
    assert find_products([l2a, tmp_path / "a"]) == [l2a]  # each product once
    with pytest.raises(InputNotFoundError, match=r"no Sentinel-2 products .*L2A, as inputs\.s2_level asks"):
        find_products([tmp_path / "b"], "L2A")
    with pytest.raises(InputNotFoundError, match="does not exist"):
        find_products([tmp_path / "missing"])


def test_default_workers_and_thread_caps():
    from rsprep.build.executor import THREAD_VARIABLES, default_workers, thread_caps, threads_per_worker

    gb = 2**30
    assert default_workers(16, 64 * gb) == 16  # cores decide
    assert default_workers(16, 10 * gb) == 4  # memory decides: 10 GB / 2.5 GB
    assert default_workers(4, gb) == 1  # never fewer than one
    assert threads_per_worker(4, 16) == 4 and threads_per_worker(16, 4) == 1
    before = {k: os.environ.get(k) for k in THREAD_VARIABLES}
    with thread_caps(3):
        assert all(os.environ[k] == "3" for k in THREAD_VARIABLES)
    assert {k: os.environ.get(k) for k in THREAD_VARIABLES} == before


def test_the_plan_uses_only_public_stage_helpers():
    """The build asks the stages' own up-to-date questions through their public functions."""
    import re

    from rsprep.stages import patch, reference

    build_dir = Path(__file__).parents[1] / "rsprep" / "build"
    private = re.compile(r"from rsprep\.stages[\w.]* import [^\n]*\b_\w+|rsprep\.stages\.\w+\._\w+")
    assert not [p.name for p in build_dir.glob("*.py") if private.search(p.read_text())]
    for fn in (patch.stored_result, patch.usable_band_files, reference.parameters, reference.inputs_digest):
        assert fn.__doc__ and not fn.__name__.startswith("_")


def test_split_options_type_their_own_numbers():
    """A recipe, `rsprep metadata` (defaults) and `rsprep split` (floats) give the same split options."""
    from dataclasses import asdict

    from rsprep.core.splits import SplitOptions

    recipe = load_recipe("demo").split_options()
    for options in (SplitOptions(), SplitOptions(patch_size=1200.0, tile_size=109_800.0), recipe):
        assert type(options.patch_size) is float and type(options.tile_size) is float
        assert type(options.seed) is int and type(options.buffer) is int and type(options.block_km) is float
    assert json.dumps(asdict(SplitOptions(patch_size=1200, seed=3.0))) == json.dumps(
        asdict(SplitOptions(patch_size=1200.0, seed=3))
    )
    assert SplitOptions(patch_size=1200.5).patch_size == 1200.5 and SplitOptions(seed=1.5).seed == 1.5
    assert not hasattr(__import__("rsprep.build.steps", fromlist=["_"]), "_typed")


def test_a_dataset_without_s1_builds_cards_and_validates(tmp_path):
    """No S1 input (keep_unpaired): the S1 statistics are null (the card shows None), the Zarr S1 arrays
    are all fill value (Zarr writes no shard) and validation accepts that, with every step run."""
    synthesize(tmp_path / "a", SynthConfig(tiles=1, acquisitions=1, s1=False, content="gtiff"))
    a = tmp_path / "a"
    recipe = load_recipe("demo", ["inputs.s1=false", "metadata.keep_unpaired=true", "noise=[]"])
    out = tmp_path / "out"
    result = build(recipe, s2=[a / "s2"], s1=None, clc=a / CLC, countries=a / COUNTRIES, out=out, workers=1)
    assert result.ok and result.steps_run, result.failures
    dataset = out / "dataset"
    assert not list((dataset / "zarr" / "dataset.zarr" / "s1" / "VV").glob("c/*/*/*"))
    assert "native_mean = [" in (dataset / "README.md").read_text()
    assert "# None: the band has no valid pixel" in (dataset / "README.md").read_text()
    record = json.loads((out / "build.json").read_text())
    assert record["steps"]["validate"]["status"] == "done"


def test_progress_names_the_stage_each_running_product_is_in(tmp_path, monkeypatch):
    """The worker writes its current stage (OUT/.progress), the build reports each change as a
    product_stage event, in stage order, and removes the files at the end."""
    from rsprep.build import progress

    monkeypatch.setattr(progress, "INTERVAL", 0.01)
    synthesize(tmp_path / "a", SynthConfig(tiles=1, acquisitions=1, s1=False, content="gtiff"))
    a = tmp_path / "a"
    recipe = load_recipe("demo", ["inputs.s1=false", "metadata.keep_unpaired=true", "noise=[]"])
    events = []
    out = tmp_path / "out"
    build(recipe, s2=[a / "s2"], s1=None, clc=a / CLC, countries=a / COUNTRIES, out=out, workers=1,
          on_event=events.append)  # fmt: skip
    stages = [e.stage for e in events if e.kind == "product_stage"]
    assert stages and stages[0] == "patch" and set(stages) <= {"patch", "stack", "reference"}
    assert stages == sorted(stages, key=["patch", "stack", "reference"].index)
    assert not (out / progress.PROGRESS).exists()
    # a writer killed mid-write leaves a temporary: the next run of that product removes it
    (product,) = {e.name for e in events if e.kind == "product_stage"}
    stale = progress.stage_file(out / progress.PROGRESS, product)
    stale.parent.mkdir()
    (stale.parent / f".{stale.name}.tmp-99999").write_text("{")
    progress.StageWatcher(stale.parent, [product], lambda *_: None).close()
    assert not stale.parent.exists()
