"""The command line: exit codes, one-line errors, text and JSON output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rsprep import __version__
from rsprep.cli.main import app

runner = CliRunner()
SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"


def test_version():
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.output.strip() == f"rsprep {__version__}"


def test_help_is_instant_and_imports_nothing_heavy():
    code = (
        "import sys, rsprep.cli.main as m; "
        "mods = ('rasterio', 'numpy', 'numba', 'zarr', 'torch', 'pyogrio', 'shapely'); "
        "heavy = [x for x in mods if x in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    r = runner.invoke(app, ["--help"])
    assert r.exit_code == 0 and "inspect" in r.output and "synth" in r.output


def test_usage_error_exits_2():
    r = runner.invoke(app, ["inspect"])
    assert r.exit_code == 2
    r = runner.invoke(app, ["no-such-command"])
    assert r.exit_code == 2


def test_inspect_text_real_product(t29unu):
    r = runner.invoke(app, ["inspect", str(t29unu)])
    assert r.exit_code == 0, r.output
    assert "S2A_MSIL2A_20221005T115411_N0400_R023_T29UNU_20221005T164454.SAFE" in r.output
    assert "Baseline       04.00" in r.output
    assert "Add offset     -1000 (all bands)" in r.output
    assert "Problems       10" in r.output
    assert r.output.count("MISSING") == 10


def test_inspect_strict_exits_1_on_problems(t22hbd):
    r = runner.invoke(app, ["inspect", "--strict", str(t22hbd)])
    assert r.exit_code == 1
    assert r.output.count("SIZE MISMATCH (100 × 100 px)") == 13


def test_inspect_json_matches_schema(t29unu, t22hbd):
    r = runner.invoke(app, ["inspect", "--json", str(t29unu), str(t22hbd)])
    assert r.exit_code == 0
    docs = json.loads(r.output)
    assert [d["tile_id"] for d in docs] == ["T29UNU", "T22HBD"]
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((SCHEMAS / "product.schema.json").read_text())
    for d in docs:
        jsonschema.validate(d, schema)


def test_missing_input_is_one_line_exit_1(tmp_path):
    r = runner.invoke(app, ["inspect", str(tmp_path / "missing.SAFE")])
    assert r.exit_code == 1
    lines = [x for x in r.output.splitlines() if x]
    assert lines == [
        f"rsprep: error: {tmp_path / 'missing.SAFE'} does not exist; pass a Sentinel-2 .SAFE folder or .zip"
    ]


def test_traceback_only_with_vv(tmp_path):
    r = runner.invoke(app, ["-vv", "inspect", str(tmp_path / "missing.SAFE")])
    assert r.exit_code == 1 and "Traceback" in r.output
    r = runner.invoke(app, ["inspect", str(tmp_path / "missing.SAFE")])
    assert "Traceback" not in r.output


def test_synth_cli_and_refusal(tmp_path):
    out = tmp_path / "a"
    r = runner.invoke(
        app,
        [
            "-q",
            "synth",
            str(out),
            "--tiles",
            "1",
            "--acquisitions",
            "1",
            "--no-s1",
            "--content",
            "gtiff",
            "--patches",
            "2",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "1 L2A products (4 patches)" in r.output
    assert (out / "synth.json").is_file()
    r = runner.invoke(app, ["synth", str(out)])
    assert r.exit_code == 1 and "exists already; pass --overwrite" in r.output
    r = runner.invoke(app, ["synth", str(tmp_path / "b"), "--patch-size", "1000"])
    assert r.exit_code == 1 and "multiple of 60" in r.output
    r = runner.invoke(app, ["inspect", str(next((out / "s2").glob("*.SAFE"))), "--strict"])
    assert r.exit_code == 0 and "Problems       none" in r.output


def test_console_script_runs():
    exe = Path(sys.executable).parent / "rsprep"
    if not exe.exists():
        pytest.skip("console script not installed in this environment")
    out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=True).stdout
    assert out.startswith("rsprep ")


def test_patch_stack_s1_chain(archive, manifest, t29unu, tmp_path):
    work = tmp_path / "work"
    good = [str(archive / p["path"]) for p in manifest["products"][:2]]
    r = runner.invoke(app, ["-q", "patch", *good, "--out", str(work), "--workers", "1"])
    assert r.exit_code == 0, r.output
    assert r.output.count("done") == 2 and "16 patches" in r.output
    r = runner.invoke(app, ["-q", "patch", *good, "-o", str(work)])
    assert r.output.count("skipped") == 2
    # a failing product is listed at the end, the others finish, exit 1
    r = runner.invoke(app, ["patch", str(t29unu), good[0], "-o", str(work), "--force", "-j", "1"])
    assert r.exit_code == 1
    assert "1 of 2 product(s) failed" in r.output and "T29UNU" in r.output and "B02 (10 m)" in r.output
    r = runner.invoke(app, ["patch", good[0], "-o", str(work), "--bands", "B10"])
    assert r.exit_code == 1 and "B10" in r.output
    r = runner.invoke(app, ["-q", "stack", str(work), "--resampling", "nearest"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["s1", "--s1", str(archive / "s1"), "--work", str(work)])
    assert r.exit_code == 0, r.output
    assert "3 S1 scene(s)" in r.output and "valid patches paired" in r.output
    r = runner.invoke(app, ["s1", "--s1", str(tmp_path / "nope"), "--work", str(work)])
    assert r.exit_code == 1 and "does not exist" in r.output


def test_reference_cli(archive, manifest, shared_data, tmp_path):
    work = tmp_path / "work"
    good = [str(archive / p["path"]) for p in manifest["products"][:2]]
    assert runner.invoke(app, ["-q", "patch", *good, "--out", str(work), "-j", "1"]).exit_code == 0
    clc = str(archive / manifest["clc"]["path"])
    r = runner.invoke(app, ["reference", "--clc", clc, "--work", str(work), "-j", "1"])
    assert r.exit_code == 0, r.output
    assert "field Code_18" in r.output and r.output.count("patches labelled") == 2
    r = runner.invoke(app, ["reference", "--clc", clc, "--work", str(work), "-j", "2"])
    assert r.output.count("skipped") == 2
    # a file without the code field fails before any store is touched, naming the fix
    lanjaron = str(shared_data("clc-lanjaron/clc.gpkg"))
    r = runner.invoke(app, ["reference", "--clc", lanjaron, "--work", str(work), "--layer", "lanjaron"])
    assert r.exit_code == 1 and "no layer has a CLC code field" in r.output and "--code-field" in r.output
    r = runner.invoke(app, ["reference", "--clc", clc, "--work", str(work), "--nomenclature", "ben20"])
    assert r.exit_code == 1 and "ben19" in r.output
    r = runner.invoke(app, ["reference", "--clc", clc, "--work", str(work), "--max-unlabeled", "0"])
    assert r.exit_code == 1 and "--max-unlabeled" in r.output


def test_a_negative_worker_count_is_a_usage_error(tmp_path):
    from typer.testing import CliRunner

    from rsprep.cli.main import app

    for cmd in (["stack", str(tmp_path)], ["s1", "--s1", str(tmp_path), "--work", str(tmp_path)]):
        r = CliRunner().invoke(app, [*cmd, "--workers", "-2"])
        assert r.exit_code == 2 and "-2 is negative" in r.output, r.output
