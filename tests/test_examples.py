"""examples/: the Makefile pipeline (examples/reben.mk) and the SLURM array-job scripts (examples/slurm/)
on the synthetic demo archive, each against one `rsprep build demo` of the same archive: the same
dataset byte for byte, a second `make` that does nothing, incremental reruns, L1C zips through sen2cor,
the Makefile's defaults equal to the reben recipe, and the slurm scripts' own command lines run as
separate processes (two shards at once, then the finalize job)."""

from __future__ import annotations

import json
import os
import re
import shlex
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from test_build import COUNTRIES, inputs, tree_hashes

from rsprep.build.recipe import load_recipe
from rsprep.build.recipe_steps import NoiseSection
from rsprep.build.run import build
from rsprep.core.bands import SPECTRAL_BANDS
from rsprep.synth import SynthConfig, synthesize

ROOT = Path(__file__).resolve().parents[1]
MAKEFILE = ROOT / "examples" / "reben.mk"
SLURM = ROOT / "examples" / "slurm"
RSPREP = Path(sys.executable).with_name("rsprep")  # the console script of this environment
CLC = "clc/U2018_CLC2018_V2020_20u1.gpkg"


def make(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "-f", str(MAKEFILE), f"RSPREP={RSPREP}", *args],
        capture_output=True,
        text=True,
        timeout=900,
        **kw,
    )


def demo_vars(archive: Path, out: Path) -> list[str]:
    """`make` variables for the demo archive with the demo recipe's parameters."""
    a = archive
    return [
        *("PRESET=demo", f"S2={a / 's2'}", f"S1={a / 's1'}", f"CLC={a / CLC}"),
        *(f"COUNTRIES={a / COUNTRIES}", f"OUT={out}"),
    ]


def mtimes(root: Path) -> dict[str, int]:
    """Every file and link under ``root`` with its mtime (ns), links not followed."""
    return {str(p.relative_to(root)): p.lstat().st_mtime_ns for p in sorted(root.rglob("*"))}


def build_record(dataset: Path, out: Path) -> dict:
    """The dataset's build.json without what differs between two runs: the seconds each stage took,
    and the absolute OUT a stage may record."""

    def clean(v):
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items() if k != "seconds"}
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v.replace(str(out.resolve()), "OUT").replace(str(out), "OUT") if isinstance(v, str) else v

    return clean(json.loads((dataset / "build.json").read_text()))


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo archive and one `rsprep build demo` of it (the reference bytes)."""
    root = tmp_path_factory.mktemp("examples")
    archive = root / "archive"
    synthesize(archive, SynthConfig())
    one = root / "one-build"
    assert build(load_recipe("demo"), **inputs(archive), out=one, workers=1).ok
    return {
        "root": root,
        "archive": archive,
        "one": one,
        "dataset": tree_hashes(one / "dataset"),
        "work": tree_hashes(one / "work"),
        "record": build_record(one / "dataset", one),
    }


@pytest.fixture(scope="module")
def made(demo):
    """`make -j2` of examples/reben.mk with the demo parameters, into another OUT."""
    out = demo["root"] / "make"
    r = make("-j2", *demo_vars(demo["archive"], out))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return {
        "out": out,
        "log": r.stdout,
        "dataset": tree_hashes(out / "dataset"),
        "work": tree_hashes(out / "work"),
    }


# --------------------------------------------------------------------------------------------
# The Makefile pipeline
# --------------------------------------------------------------------------------------------
def test_makefile_builds_the_dataset_of_rsprep_build(demo, made):
    """The same files byte for byte. build.json, which holds the seconds each stage took, is left out
    of the hashes and compared without those seconds (and without the OUT a stage records)."""
    assert made["dataset"] == demo["dataset"] and len(made["dataset"]) > 500
    assert made["work"] == demo["work"]
    assert build_record(made["out"] / "dataset", made["out"]) == demo["record"]
    log = made["log"]
    for stage in ("patch", "stack", "s1", "reference"):  # one command per product and stage
        assert len(re.findall(rf"rsprep -q {stage} ", log)) == 4, stage
    steps = ["metadata", "split", "noise", "convert lmdb", "convert zarr", "convert tiff", "stats", "card"]
    at = [log.index(f"rsprep -q {s} ") for s in [*steps, "validate"]]
    assert at == sorted(at)  # the dataset-wide steps in the order of rsprep build


def test_second_make_does_nothing_then_one_touched_product_redoes_only_itself(demo, made):
    out, archive = made["out"], demo["archive"]
    args = demo_vars(archive, out)
    before = mtimes(out)
    assert make("-q", *args).returncode == 0
    again = make(*args)
    assert again.returncode == 0 and "Nothing to be done for 'all'" in again.stdout, again.stdout
    assert mtimes(out) == before  # not one file rewritten or touched, the make bookkeeping included

    safe = sorted((archive / "s2").glob("*.SAFE"))[1]
    band = sorted(safe.rglob("*_B02_10m.jp2"))[0]
    kept = band.stat()
    try:
        os.utime(band)  # touch one band file of one product
        assert make("-q", *args).returncode == 1
        plan = make("-n", *args).stdout
        assert re.findall(r"rsprep -q patch (\S+)", plan) == [str(safe)]
        links = set(re.findall(r"make/products/(\w+)", plan.split("rsprep -q metadata")[0]))
        assert links == {safe.stem}  # stack, s1 and reference of that product only ...
        for step in ("metadata", "split", "noise", "convert", "stats", "card", "validate"):
            assert f"rsprep -q {step} " in plan  # ... then every dataset-wide step
        r = make("-j2", "products", *args)
        assert r.returncode == 0, r.stderr
        after = mtimes(out)
        changed = {p.split("/")[1] for p in after if after[p] != before.get(p) and p.startswith("work/")}
        store = os.readlink(out / "make" / "products" / safe.stem).rsplit("/", 1)[1]
        assert changed == {store}  # the other products' stores are untouched
        assert make("-q", "products", *args).returncode == 0
    finally:
        os.utime(band, ns=(kept.st_atime_ns, kept.st_mtime_ns))


def test_a_changed_parameter_redoes_its_stage_and_make_n_writes_nothing(demo, made):
    out = made["out"]
    args = demo_vars(demo["archive"], out)
    params = mtimes(out / "make" / "params")
    assert make("-q", *args, "MAX_UNLABELED=0.3").returncode == 1
    plan = make("-n", *args, "MAX_UNLABELED=0.3").stdout
    assert len(re.findall(r"rsprep -q reference .*--max-unlabeled 0.3", plan)) == 4  # every product
    assert not re.search(r"rsprep -q (patch|stack|s1) ", plan)
    assert "REFERENCE changed" in plan and "rsprep -q metadata " in plan
    assert mtimes(out / "make" / "params") == params  # -n and -q only report


def _stand_in_sen2cor(tmp: Path, l2a: Path) -> Path:
    """An ``L2A_Process`` that writes the given L2A product (as tests/test_patch.py's stand-in)."""
    exe = tmp / "L2A_Process"
    exe.write_text(
        textwrap.dedent(f"""\
            #!{sys.executable}
            import shutil, sys, pathlib
            args = sys.argv[1:]
            out = pathlib.Path(args[args.index("--output_dir") + 1])
            for src in pathlib.Path({str(l2a)!r}).glob("*.SAFE"):
                shutil.copytree(src, out / src.name)
            """)
    )
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return exe


def test_an_l1c_zip_goes_through_sen2cor_into_the_store_of_its_l2a(tmp_path):
    """The reben defaults (L1C input) on a zipped L1C product: the store is named after the L2A
    product sen2cor writes, which the product's link in OUT/make/products finds."""
    cfg = dict(tiles=1, acquisitions=1, s1=False, content="gtiff")
    synthesize(tmp_path / "l1c", SynthConfig(level="L1C", zip=True, **cfg))
    synthesize(tmp_path / "l2a", SynthConfig(**cfg))
    (product,) = sorted((tmp_path / "l1c" / "s2").glob("*.zip"))
    out = tmp_path / "out"
    args = [
        *(
            f"S2={tmp_path / 'l1c' / 's2'}",
            f"CLC={tmp_path / 'l1c' / CLC}",
            f"OUT={out}",
            "KEEP_UNPAIRED=yes",
        ),
        f"SEN2COR={_stand_in_sen2cor(tmp_path, tmp_path / 'l2a' / 's2')}",
    ]
    r = make("products", *args)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    link = out / "make" / "products" / product.name.removesuffix(".zip")
    (l2a,) = (tmp_path / "l2a" / "s2").glob("*.SAFE")
    store = l2a.name.rsplit("_", 1)[0]  # the L2A product URI without its generation time
    assert "MSIL1C" in product.name and "_MSIL2A_" in store
    assert os.readlink(link) == f"../../work/{store}"
    manifest = json.loads((out / "work" / store / "manifest.json").read_text())
    assert manifest["product"]["level"] == "L2A" and set(manifest["stages"]) == {"patch", "reference"}
    assert (link / "labels.parquet").is_file()
    assert make("-q", "products", *args).returncode == 0


def test_no_product_and_a_missing_variable_are_clear_errors(tmp_path):
    r = make(f"S2={tmp_path}", "CLC=c.gpkg", f"OUT={tmp_path / 'out'}", "KEEP_UNPAIRED=yes")
    assert r.returncode == 2 and "no Sentinel-2 products (L1C" in r.stderr and "S2_LEVEL=any" in r.stderr
    r = make(f"S2={tmp_path}", f"OUT={tmp_path / 'out'}")
    assert r.returncode == 2 and "CLC is not set; pass CLC=FILE" in r.stderr
    (tmp_path / "S2A_MSIL1C_20170613T101031_N0205_R022_T33UUP_20170613T101032.SAFE").mkdir()
    r = make(f"S2={tmp_path}", "CLC=c.gpkg", f"OUT={tmp_path / 'out'}")
    assert r.returncode == 2 and "pass S1=DIR or KEEP_UNPAIRED=yes" in r.stderr
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------------------------
# The Makefile's defaults are the reben recipe, PRESET=demo the demo recipe
# --------------------------------------------------------------------------------------------
#: Recipe field -> the make variable that holds it.
MAKE_VARIABLES = {
    "inputs.s2_level": "S2_LEVEL",
    "patch.patch_size": "PATCH_SIZE",
    "patch.bands": "BANDS",
    "patch.harmonize": "HARMONIZE",
    "patch.verify": "VERIFY",
    "stack.enabled": "STACK",
    "stack.resampling": "RESAMPLING",
    "s1.source": "S1_SOURCE",
    "s1.max_days": "MAX_DAYS",
    "s1.same_season": "SAME_SEASON",
    "s1.linear": "S1_LINEAR",
    "s1.polarisations": "POL",
    "s1.skip_bad": "SKIP_BAD_S1",
    "reference.nomenclature": "NOMENCLATURE",
    "reference.max_unlabeled": "MAX_UNLABELED",
    "reference.code_field": "CODE_FIELD",
    "reference.layer": "CLC_LAYER",
    "reference.clc_crs": "CLC_CRS",
    "metadata.country_candidates": "COUNTRY_CANDIDATES",
    "metadata.country_field": "COUNTRY_FIELD",
    "metadata.country_layer": "COUNTRY_LAYER",
    "metadata.snow_threshold": "SNOW_THRESHOLD",
    "metadata.cloud_threshold": "CLOUD_THRESHOLD",
    "metadata.keep_unpaired": "KEEP_UNPAIRED",
    "metadata.v1_alignment": "V1_ALIGNMENT",
    "split.method": "SPLIT_METHOD",
    "split.fractions": "FRACTIONS",
    "split.seed": "SPLIT_SEED",
    "split.block_km": "BLOCK_KM",
    "split.buffer": "BUFFER",
    "split.crs": "SPLIT_CRS",
    "outputs.formats": "FORMATS",
    "outputs.zarr.stack": "ZARR_STACK",
    "outputs.zarr.stack_method": "ZARR_STACK_METHOD",
    "outputs.zarr.compressor": "ZARR_COMPRESSOR",
    "outputs.zarr.shard_patches": "ZARR_SHARD_PATCHES",
    "outputs.zarr.class_order": "ZARR_CLASS_ORDER",
    "outputs.stats": "STATS",
    "outputs.card": "CARD",
    "outputs.validation.enabled": "VALIDATE",
    "outputs.validation.full": "VALIDATE_FULL",
}
#: Recipe fields without a variable, and why.
NOT_VARIABLES = {
    "name", "description", "licence",
    "inputs.s1", "inputs.countries", "inputs.v1",  # S1=, COUNTRIES=, V1= given or not
    "inputs.product_list",  # not checked by make: `rsprep recipe inputs --missing --s2 DIR` does
    "metadata.require_quality_passed",  # always true: the stages apply it
    "outputs.validation.checksums",  # always written: checksums.sha256 is the validate target
    "noise",  # NOISE and NOISE_<name>: compared below
    "cluster",  # make runs the commands where it runs (make -j, or a make that submits jobs)
}  # fmt: skip


def _fields(value, path=""):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _fields(v, f"{path}.{k}" if path else k)
    else:
        yield path, value


def _make_database(tmp_path: Path, *extra: str) -> dict[str, str]:
    """The variables examples/reben.mk defines (`make -p -q` on an empty product folder)."""
    s2 = tmp_path / "s2"
    for level in ("L1C", "L2A"):
        (s2 / f"S2A_MSI{level}_20170613T101031_N0205_R022_T33UUP_20170613T101032.SAFE").mkdir(parents=True)
    r = make("-p", "-q", f"S2={s2}", "CLC=c.gpkg", f"OUT={tmp_path / 'out'}", "S1=s1", *extra)
    assert "# Variables" in r.stdout, r.stderr
    found = re.findall(r"^# makefile \(from '[^']*reben\.mk', line \d+\)\n(\S+) :?= ?(.*)$", r.stdout, re.M)
    return dict(found)


def _same(value, text: str) -> bool:
    if isinstance(value, bool):
        return text == ("yes" if value else "no")
    if value is None:
        return text == ""
    if isinstance(value, list):
        return text in (",".join(map(str, value)), " ".join(map(str, value)))
    if isinstance(value, (int, float)):
        return float(text) == float(value)
    return text == value


@pytest.mark.parametrize("recipe", ["reben", "demo"])
def test_makefile_parameters_are_the_recipes(tmp_path, recipe):
    variables = _make_database(tmp_path, *(["PRESET=demo"] if recipe == "demo" else []))
    r = load_recipe(recipe)
    for field, value in _fields(r.resolved()):
        if field in NOT_VARIABLES:
            continue
        assert field in MAKE_VARIABLES, f"examples/reben.mk has no variable for recipe field {field}"
        var = MAKE_VARIABLES[field]
        text = variables[var].split("#")[0].strip()
        if field == "patch.bands" and tuple(value) == SPECTRAL_BANDS:
            assert text == "", var  # empty: all 12
        else:
            assert _same(value, text), (field, value, var, text)
    assert r.outputs.validation.checksums and r.metadata.require_quality_passed
    names = variables["NOISE"].split("#")[0].split()
    assert names == [n or o.default_name() for n, o in r.noise_variants()]
    for name, (_n, options) in zip(names, r.noise_variants(), strict=True):
        words = shlex.split(variables[f"NOISE_{name}"])
        given = {w[2:].replace("-", "_"): v for w, v in zip(words[::2], words[1::2], strict=True)}
        given["splits"] = given.get("splits", "train").split(",")
        assert NoiseSection(**given).options() == options, name


# --------------------------------------------------------------------------------------------
# The SLURM array job
# --------------------------------------------------------------------------------------------
SCRIPTS = ["build-shard.sbatch", "finalize.sbatch", "submit.sh"]

#: A stand-in for `sbatch` with the semantics the scripts rely on: --array=A-B runs the script once
#: per task id at the same time (SLURM_ARRAY_TASK_ID, SLURM_CPUS_PER_TASK=1, the caller's
#: environment: --export=ALL), --dependency=afterok:ID runs it only when every task of ID exited 0;
#: --parsable prints the job id. It returns once its job ended, and records exit codes in $SBATCH_STATE.
SBATCH = """#!{python}
import os, subprocess, sys, pathlib
state = pathlib.Path(os.environ["SBATCH_STATE"])
state.mkdir(exist_ok=True)
args, script = sys.argv[1:-1], sys.argv[-1]
opts = dict(a[2:].split("=", 1) for a in args if a.startswith("--") and "=" in a)
assert "--parsable" in args and opts.get("export") == "ALL", args
job = str(101 + len(list(state.glob("*.rc"))))
env = dict(os.environ, SLURM_JOB_ID=job, SLURM_CPUS_PER_TASK="1")
dep = opts.get("dependency")
if dep:
    kind, _, on = dep.partition(":")
    assert kind == "afterok", dep
    if (state / f"{{on}}.rc").read_text().split() != ["0"] * len((state / f"{{on}}.rc").read_text().split()):
        (state / f"{{job}}.rc").write_text("never")
        print(job)
        sys.exit(0)
ids = [None]
if "array" in opts:
    lo, hi = map(int, opts["array"].split("-"))
    ids = list(range(lo, hi + 1))
procs = []
for i in ids:
    e = dict(env, **({{"SLURM_ARRAY_JOB_ID": job, "SLURM_ARRAY_TASK_ID": str(i)}} if i is not None else {{}}))
    log = open(state / f"{{job}}_{{i}}.out", "w")
    procs.append(subprocess.Popen(["bash", script], env=e, stdout=log, stderr=subprocess.STDOUT))
(state / f"{{job}}.rc").write_text(" ".join(str(p.wait()) for p in procs))
print(job)
"""

#: The rsprep the scripts call: logs its arguments, then runs the real one.
LOGGED = """#!/usr/bin/env bash
printf '%s\\n' "$*" >> "$RSPREP_LOG"
exec {rsprep} "$@"
"""


def _executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


@pytest.mark.parametrize("script", SCRIPTS)
def test_slurm_scripts_pass_bash_n(script):
    r = subprocess.run(["bash", "-n", str(SLURM / script)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def _rsprep_line(script: str) -> str:
    text = (SLURM / script).read_text().replace("\\\n", " ")
    lines = [" ".join(ln.split()) for ln in text.splitlines() if '"${RSPREP:-rsprep}" build' in ln]
    assert len(lines) == 1, script
    return lines[0]


def test_slurm_scripts_submit_shards_then_finalize_and_equal_one_build(demo, tmp_path):
    """submit.sh with a stand-in sbatch: the array job's two tasks at once, then the finalize job;
    the rsprep command lines that ran are the scripts' own, and the dataset is that of one build."""
    shard, final = _rsprep_line("build-shard.sbatch"), _rsprep_line("finalize.sbatch")
    assert shard.endswith('--shard "${SLURM_ARRAY_TASK_ID}/${N}"') and final.endswith("--finalize")
    assert shard.removesuffix('--shard "${SLURM_ARRAY_TASK_ID}/${N}"') == final.removesuffix("--finalize")
    submit = (SLURM / "submit.sh").read_text()
    assert '--array="0-$((N - 1))"' in submit and '--dependency="afterok:$array"' in submit

    bindir = tmp_path / "bin"
    bindir.mkdir()
    _executable(bindir / "sbatch", SBATCH.format(python=sys.executable))
    logged = _executable(tmp_path / "rsprep", LOGGED.format(rsprep=shlex.quote(str(RSPREP))))
    a, out = demo["archive"], tmp_path / "out"
    settings = tmp_path / "demo.env"
    settings.write_text(
        f"RECIPE=demo\nS2={a / 's2'}\nS1={a / 's1'}\nCLC={a / CLC}\nCOUNTRIES={a / COUNTRIES}\n"
        f"OUT={out}\nN=2\nRSPREP={logged}\n"
    )
    env = dict(os.environ, PATH=f"{bindir}{os.pathsep}{os.environ['PATH']}")
    env |= {"SBATCH_STATE": str(tmp_path / "jobs"), "RSPREP_LOG": str(tmp_path / "rsprep.log")}

    # the finalize job alone, before any shard: it refuses and names the missing products
    alone = {"RECIPE": "demo", "S2": str(a / "s2"), "S1": str(a / "s1"), "CLC": str(a / CLC)}
    alone |= {"COUNTRIES": str(a / COUNTRIES), "OUT": str(out), "RSPREP": str(logged)}
    early = subprocess.run(
        ["bash", str(SLURM / "finalize.sbatch")], env=env | alone, capture_output=True, text=True
    )
    assert early.returncode == 1 and "--finalize: 4 of 4 product(s) are not built yet" in early.stderr
    assert all(p.name in early.stderr for p in (a / "s2").glob("*.SAFE")), early.stderr
    (tmp_path / "rsprep.log").unlink()

    r = subprocess.run(
        ["bash", str(SLURM / "submit.sh"), str(settings)], env=env, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    assert (
        r.stdout.strip()
        == f"array job 101: 2 shards of demo into {out}; finalize job 102 runs once all succeeded"
    )
    jobs = tmp_path / "jobs"
    assert (jobs / "101.rc").read_text() == "0 0", [p.read_text()[-2000:] for p in jobs.glob("101_*.out")]
    assert (jobs / "102.rc").read_text() == "0", (jobs / "102_None.out").read_text()[-2000:]

    common = (
        f"build demo --s2 {a / 's2'} --s1 {a / 's1'} --clc {a / CLC} --countries {a / COUNTRIES} "
        f"--out {out} --workers 1"
    )
    ran = (tmp_path / "rsprep.log").read_text().splitlines()
    assert sorted(ran[:2]) == [f"{common} --shard 0/2", f"{common} --shard 1/2"]
    assert ran[2:] == [f"{common} --finalize"]
    assert tree_hashes(out / "dataset") == demo["dataset"]
    assert tree_hashes(out / "work") == demo["work"]
    assert build_record(out / "dataset", out) == demo["record"]
