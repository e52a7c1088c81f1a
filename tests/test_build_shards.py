"""``rsprep build --shard I/N`` and ``--finalize`` on the demo archive: the shards and the finalize run
as separate processes (two shards at once) give the bytes of one build; --finalize refuses before
every shard is done, naming the missing products and their shard; bad --shard values; the locks."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_build import CLC, COUNTRIES, cli_args, inputs, tree_hashes
from typer.testing import CliRunner

from rsprep.build import shards
from rsprep.build.recipe import load_recipe
from rsprep.build.run import build
from rsprep.cli.main import app
from rsprep.errors import InvalidParameterError
from rsprep.store.lock import LockedError, locked
from rsprep.synth import SynthConfig, synthesize


def rsprep(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rsprep.cli.main", "-q", *args], capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The archive and one plain build of it (the reference bytes)."""
    root = tmp_path_factory.mktemp("shards")
    archive = root / "archive"
    synthesize(archive, SynthConfig())
    plain = root / "plain"
    assert build(load_recipe("demo"), **inputs(archive), out=plain, workers=1).ok
    return {"root": root, "archive": archive, "plain": plain}


@pytest.fixture(scope="module")
def sharded(demo):
    """OUT after shard 0/2 alone, the --finalize refusal then, then shard 1/2 and --finalize."""
    out = demo["root"] / "sharded"
    a = demo["archive"]
    first = rsprep(*cli_args(a, out, "--workers", "1", "--shard", "0/2"))
    assert first.returncode == 0, first.stderr
    early = rsprep(*cli_args(a, out, "--finalize"))
    early_dry = rsprep(*cli_args(a, out, "--finalize", "--dry-run"))
    both = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rsprep.cli.main",
                "-q",
                *cli_args(a, out, "--workers", "1", "--shard", s),
            ],
            stderr=subprocess.PIPE,
            text=True,
        )
        for s in ("1/2", "0/2")  # 0/2 again, at the same time: its products are up to date
    ]
    for proc in both:
        assert proc.wait(timeout=600) == 0, proc.stderr.read()
    last = rsprep(*cli_args(a, out, "--finalize"))
    assert last.returncode == 0, last.stderr
    return {"out": out, "early": early, "early_dry": early_dry}


def test_shards_and_finalize_equal_one_build(demo, sharded):
    out, plain = sharded["out"], demo["plain"]
    assert tree_hashes(out / "dataset") == tree_hashes(plain / "dataset")
    assert tree_hashes(out / "work") == tree_hashes(plain / "work")
    record = json.loads((out / "build.json").read_text())
    assert record["executor"] == {"kind": "finalize", "shards": 2}
    assert set(record["shards"]) == {"0/2", "1/2"} and not record["failures"]
    assert {p["shard"] for p in record["products"].values()} == {"0/2", "1/2"}
    assert len(record["products"]) == 4 and {s["status"] for s in record["steps"].values()} == {"done"}
    for shard in ("0-of-2", "1-of-2"):
        rec = json.loads((out / "shards" / f"{shard}.json").read_text())
        assert rec["format"] == "rsprep-build-shard" and len(rec["products"]) == 2 and "steps" not in rec


def test_finalize_before_every_shard_refuses_naming_the_missing(demo, sharded):
    early = sharded["early"]
    assert early.returncode == 1
    where = shards.assignment(sorted((demo["archive"] / "s2").glob("*.SAFE")), 2)
    missing = [Path(p).name for p, i in where.items() if i == 1]
    assert len(missing) == 2
    assert "--finalize: 2 of 4 product(s) are not built yet" in early.stderr
    for name in missing:
        assert f"{name} (shard 1/2: patch to do: not patched yet)" in early.stderr
    assert not any(Path(p).name in early.stderr for p, i in where.items() if i == 0)
    dry = sharded["early_dry"]
    assert dry.returncode == 0 and "--finalize would refuse: 2 of 4" in dry.stdout
    assert all(f"{name} (shard 1/2)" in dry.stdout for name in missing)


def test_assignment_is_stable_disjoint_complete_and_balanced(demo):
    products = sorted((demo["archive"] / "s2").glob("*.SAFE"))
    names = [
        f"S2A_MSIL2A_20180{m:02d}1T101031_N0500_R022_T{t}_20230101T000000.SAFE"
        for m in range(1, 10)
        for t in ("32TQM", "33UUP", "31UFS", "29SND")
    ]
    for count in (1, 2, 3, 5, 7):
        parts = [shards.select(products, shards.Shard(i, count)) for i in range(count)]
        assert sorted(p for part in parts for p in part) == products  # every product exactly once
        where = shards.assignment(names, count)
        assert where == shards.assignment(list(reversed(names)), count)  # order does not matter
        sizes = [list(where.values()).count(i) for i in range(count)]
        assert max(sizes) - min(sizes) <= 1, sizes
    twins = [products[0], products[0].with_suffix(".zip")]  # one store, one shard
    assert len(set(shards.assignment(twins + products[1:], 2)[str(p)] for p in twins)) == 1


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("2/2", "the index must be 0..1 for 2 shard(s)"),
        ("-1/2", "the index must be 0..1"),
        ("0/0", "the number of shards must be at least 1, not 0"),
        ("1", "give I/N"),
        ("a/b", "give I/N"),
        ("", "give I/N"),
    ],
)
def test_bad_shard_values(demo, value, words):
    with pytest.raises(InvalidParameterError, match=f"--shard '{value}': {re.escape(words)}"):
        shards.parse_shard(value)
    r = CliRunner().invoke(app, cli_args(demo["archive"], demo["root"] / "never", "--shard", value))
    assert r.exit_code == 2 and words in re.sub(r"[\s│╭╮╰╯─]+", " ", r.output), r.output
    assert not (demo["root"] / "never").exists()


def test_shard_with_finalize_refused(demo):
    r = CliRunner().invoke(
        app, cli_args(demo["archive"], demo["root"] / "never", "--shard", "0/2", "--finalize")
    )
    assert r.exit_code == 2 and "separate runs" in r.output


def test_shard_dry_run_plans_only_its_products(demo):
    r = CliRunner().invoke(
        app, cli_args(demo["archive"], demo["root"] / "fresh", "--shard", "1/3", "--dry-run")
    )
    where = shards.assignment(sorted((demo["archive"] / "s2").glob("*.SAFE")), 3)
    mine = [Path(p).name for p, i in where.items() if i == 1]
    assert r.exit_code == 0 and f"plan: {len(mine)} product(s)" in r.output
    assert all(n in r.output for n in mine) and "metadata" not in r.output
    assert not (demo["root"] / "fresh").exists()


def test_finalize_and_full_build_refuse_while_a_shard_runs(demo, tmp_path):
    out = tmp_path / "out"
    (out / "shards").mkdir(parents=True)
    code = (
        "import sys, time; from rsprep.store.lock import locked\n"
        "with locked(sys.argv[1], 'build shard 1/2'):\n    print('held', flush=True); time.sleep(60)"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(out / "shards" / "1-of-2.json")], stdout=subprocess.PIPE
    )
    try:
        assert holder.stdout.readline().strip() == b"held"
        for finalize in (True, False):
            with pytest.raises(LockedError, match=rf"shard 1/2 is running: .*process {holder.pid}"):
                build(load_recipe("demo"), **inputs(demo["archive"]), out=out, workers=1, finalize=finalize)
        # the other shard is not held up by it
        result = build(
            load_recipe("demo"), **inputs(demo["archive"]), out=out, workers=1, shard=shards.Shard(0, 2)
        )
        assert result.ok and (out / "shards" / "0-of-2.json").is_file() and not (out / "build.json").exists()
    finally:
        holder.kill()
        holder.wait()


def test_shard_refuses_while_a_full_build_holds_out(tmp_path):
    out = tmp_path / "out"
    with locked(out, "build output"):
        code = (
            "import sys; from rsprep.build import shards; from rsprep.store.lock import LockedError\n"
            "shards.GATE_WAIT = 0.3\n"
            "try:\n    with shards.shard_lock(sys.argv[1], shards.Shard(0, 2)): print('entered')\n"
            "except LockedError as exc: print(exc)"
        )
        r = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True, timeout=60)
    assert f"build output {out} is in use by process {os.getpid()}" in r.stdout, r.stdout + r.stderr


STAND_IN = """#!{python}
import shutil, sys, pathlib
args = sys.argv[1:]
out = pathlib.Path(args[args.index("--output_dir") + 1])
for src in pathlib.Path({l2a!r}).glob("*.SAFE"):
    shutil.copytree(src, out / src.name)
"""


def test_finalize_counts_an_l1c_product_that_its_shard_built(tmp_path, monkeypatch):
    """An L1C product's patch stage always plans as to do (sen2cor's output is checked when it runs):
    --finalize takes the shard record's word for it, with the same input fingerprint."""
    from rsprep.build.finalize import ShardsNotDoneError

    cfg = {"tiles": 1, "acquisitions": 1, "s1": False, "content": "gtiff"}
    synthesize(tmp_path / "l1c", SynthConfig(level="L1C", **cfg))
    synthesize(tmp_path / "l2a", SynthConfig(**cfg))
    exe = tmp_path / "L2A_Process"
    exe.write_text(STAND_IN.format(python=sys.executable, l2a=str(tmp_path / "l2a" / "s2")))
    exe.chmod(0o755)
    monkeypatch.setenv("RSPREP_SEN2COR", str(exe))
    fast = ["inputs.s2_level=any", "inputs.s1=false", "metadata.keep_unpaired=true", "noise=[]"]
    fast += ["outputs.card=false", "outputs.stats=false", "outputs.validation.enabled=false"]  # one tile
    recipe = load_recipe("demo", fast)
    a = tmp_path / "l1c"
    where = {"s2": [a / "s2"], "s1": None, "clc": a / CLC, "countries": a / COUNTRIES, "workers": 1}
    out = tmp_path / "out"
    with pytest.raises(ShardsNotDoneError, match=r"1 of 1 product\(s\) .*no shard ran yet: patch to do: L1C"):
        build(recipe, **where, out=out, finalize=True)
    assert build(recipe, **where, out=out, shard=shards.Shard(0, 1)).ok
    result = build(recipe, **where, out=out, finalize=True)
    assert result.ok and result.steps_run and not result.missing, result.failures
    (store,) = json.loads((out / "build.json").read_text())["products"].values()
    assert "_MSIL2A_" in store["store"] and store["shard"] == "0/1"
