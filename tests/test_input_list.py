"""The input list of a recipe (docs/build.md#the-input-list): the shipped reBEN list is the official
one; present / missing / extra products (an L2A made from a listed L1C counts); --allow-extra;
--verify-inputs against the official SHA-256; the report in the plan head and in OUT/build.json;
``rsprep recipe inputs`` in both formats and with --missing."""

from __future__ import annotations

import csv
import fnmatch
import hashlib
import json
import tomllib
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rsprep.build.input_list import ExtraProductsError, InputHashError, check_inputs, missing_products
from rsprep.build.recipe import load_recipe
from rsprep.build.run import build
from rsprep.cli.main import app
from rsprep.errors import InputNotFoundError, InvalidParameterError
from rsprep.inputs.product_list import file_sha256, match_products, product_key, read_product_list
from rsprep.synth import SynthConfig, synthesize

ROOT = Path(__file__).resolve().parents[1]
LIST = ROOT / "recipes" / "reben-inputs.csv"
CLC = "clc/U2018_CLC2018_V2020_20u1.gpkg"
COUNTRIES = "countries/countries.gpkg"
#: Three listed L1C products, and what is made of them below.
SAFE_L1C = "S2A_MSIL1C_20170613T101031_N0205_R022_T34VER_20170613T101025.SAFE"
ZIP_L1C = "S2A_MSIL1C_20170617T113321_N0205_R080_T29UPU_20170617T113319.SAFE"
L2A_OF = "S2A_MSIL1C_20170701T093031_N0205_R136_T35VPK_20170701T093032.SAFE"
#: An L2A made from L2A_OF by a later sen2cor: same satellite, datatake and tile; other baseline/generation.
L2A = "S2A_MSIL2A_20170701T093031_N0500_R136_T35VPK_20230115T120000.SAFE"
#: A product of a tile the list does not hold for that datatake.
UNLISTED = "S2A_MSIL1C_20170701T093031_N0205_R136_T35VPL_20170701T093032.SAFE"


@pytest.fixture(scope="module")
def official() -> dict[str, dict[str, str]]:
    with LIST.open(newline="") as f:
        return {r["name"]: r for r in csv.DictReader(f)}


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    """The synthetic demo archive: its S2A T33UUP 2017-06-13 L2A is made from a listed L1C, the other
    three products are not on the list; its S1, CLC and countries make a reben dry run possible."""
    root = tmp_path_factory.mktemp("inputs") / "archive"
    synthesize(root, SynthConfig())
    return root


def products(folder: Path, *, zipped: str | None = ZIP_L1C, extra: bool = True) -> Path:
    """A listed SAFE folder, a listed L1C zip (not the official bytes), an L2A made from a listed L1C
    and (``extra``) an unlisted product, in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / SAFE_L1C).mkdir()
    (folder / L2A).mkdir()
    if zipped:
        with zipfile.ZipFile(folder / f"{zipped}.zip", "w") as z:
            z.writestr(f"{zipped}/manifest.safe", "<not the official product/>")
    if extra:
        (folder / UNLISTED).mkdir()
    return folder


def reben(*sets: str):
    return load_recipe("reben", ["inputs.s2_level=any", *sets])


def found(folder: Path) -> list[Path]:
    return sorted(folder.iterdir())


def dry_run(archive: Path, s2: Path, out: Path, *extra: str) -> list[str]:
    a = archive
    return [
        *("build", "reben", "--s2", str(s2), "--s1", str(a / "s1"), "--clc", str(a / CLC)),
        *("--countries", str(a / COUNTRIES), "--out", str(out), "--dry-run"),
        *("--set", "inputs.s2_level=any", "--set", "s1.source=scenes", *extra),  # the archive's S1 scenes
    ]


# --------------------------------------------------------------------------------------------
# The shipped list
# --------------------------------------------------------------------------------------------
def test_the_shipped_list_is_the_official_one(shared_data, official):
    src = shared_data("reben-inputs")
    with (src / "bigearthnet_s2_tile_ids.csv").open(newline="") as f:
        ids = [(r["tile"], r["id"]) for r in csv.DictReader(f)]
    with (src / "ben_s2_l1c_hashes.csv").open(newline="") as f:
        hashes = {r["name"].removesuffix(".out"): r["hash-sha256"] for r in csv.DictReader(f)}
    assert [(n, i, hashes[i]) for n, i in ids] == [
        (r["name"], r["product_id"], r["sha256"]) for r in official.values()
    ]
    assert len(official) == 125 and len(hashes) == 125
    licence = ROOT / "recipes" / "LICENSE-bigearthnet-pipeline"
    assert licence.read_bytes() == (src / "LICENSE-bigearthnet-pipeline").read_bytes()
    note = (ROOT / "recipes" / "reben-inputs.md").read_text(encoding="utf-8")
    assert "kai-tub/bigearthnet-pipeline" in note and "78551a6" in note and "MIT" in note
    listed = read_product_list(LIST)
    assert [e.name for e in listed] == list(official) and len({e.key for e in listed}) == 125


def test_the_reben_recipe_names_the_list_and_the_package_ships_it():
    assert load_recipe("reben").product_list_path().resolve() == LIST.resolve()
    assert (
        load_recipe("reben").with_overrides({"split.seed": 2}).product_list_path().resolve() == LIST.resolve()
    )
    assert load_recipe("demo").product_list_path() is None
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    shipped = ["reben-inputs.csv", "reben-inputs.md", "LICENSE-bigearthnet-pipeline", "reben.yaml"]
    for name in shipped:
        assert any(fnmatch.fnmatch(f"recipes/{name}", p) for p in patterns["rsprep"]), name


def test_a_recipe_file_elsewhere_reads_its_list_beside_it(tmp_path):
    digest = hashlib.sha256(b"x").hexdigest()
    (tmp_path / "mine.csv").write_text(f"name,product_id,sha256\n{SAFE_L1C},abc-1,{digest}\n")
    (tmp_path / "mine.yaml").write_text("inputs:\n  product_list: mine.csv\n")
    recipe = load_recipe(tmp_path / "mine.yaml")
    assert recipe.product_list_path() == tmp_path / "mine.csv"
    report = check_inputs(recipe, [tmp_path / SAFE_L1C])
    assert report.lines()[0] == "input list mine.csv (recipe mine): 1 of 1 products present, 0 missing"
    (tmp_path / "other.yaml").write_text("inputs:\n  product_list: gone.csv\n")
    with pytest.raises(
        InputNotFoundError, match=r"inputs\.product_list 'gone\.csv' names .*gone\.csv, which "
    ):
        check_inputs(load_recipe(tmp_path / "other.yaml"), [tmp_path / SAFE_L1C])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tile,id\n", r"the header is 'tile,id'; it must be name,product_id,sha256"),
        (f"name,product_id,sha256\n{SAFE_L1C},abc,XYZ\n", r"line 2: sha256 'XYZ' is not 64 lowercase hex"),
        ("name,product_id,sha256\nnot-a-product,abc,\n", r"line 2: product name 'not-a-product' does not"),
        (f"name,product_id,sha256\n{SAFE_L1C},,\n", r"line 2: product_id '' is empty or not an id"),
        (f"name,product_id,sha256\n{SAFE_L1C},a,\n{SAFE_L1C},b,\n", r"line 3: .* is the product of line 2"),
        ("name,product_id,sha256\n", r"lists no product"),
    ],
)
def test_a_malformed_list_is_refused_naming_the_line(tmp_path, text, message):
    path = tmp_path / "list.csv"
    path.write_text(text)
    with pytest.raises(InvalidParameterError, match=message) as exc:
        read_product_list(path)
    assert str(path) in str(exc.value)


# --------------------------------------------------------------------------------------------
# Present, missing, extra
# --------------------------------------------------------------------------------------------
def test_an_l2a_made_from_a_listed_l1c_matches_it():
    assert product_key(L2A) == product_key(L2A_OF) == ("S2A", "20170701T093031", "T35VPK")
    assert product_key(f"{ZIP_L1C}.zip") == product_key(ZIP_L1C.removesuffix(".SAFE") + ".zip")
    listed = read_product_list(LIST)
    match = match_products(listed, [(L2A, product_key(L2A)), (UNLISTED, product_key(UNLISTED))])
    assert match.present == {L2A_OF: [L2A]} and match.extra == [UNLISTED] and len(match.missing) == 124


def test_unlisted_products_are_refused_naming_them_and_the_flag(tmp_path):
    folder = products(tmp_path / "s2")
    with pytest.raises(ExtraProductsError) as exc:
        check_inputs(reben(), found(folder))
    assert str(exc.value) == (
        "1 product(s) are not on the input list of recipe reben (reben-inputs.csv; matched by satellite, "
        f"datatake and tile): {folder / UNLISTED}; the dataset would not be reben: leave them out of --s2, "
        "or pass --allow-extra to build with them"
    )


def test_present_missing_and_allowed_extra_are_reported(tmp_path, official):
    folder = products(tmp_path / "s2")
    report = check_inputs(reben(), found(folder), allow_extra=True)
    lines = report.lines()
    assert lines[0] == (
        "input list reben-inputs.csv (recipe reben): 3 of 125 products present, 122 missing, 1 extra "
        "(--allow-extra)"
    )
    assert lines[1] == (
        "  missing (download them by product id; "
        "`rsprep recipe inputs reben --missing --s2 DIR --format txt` lists the ids):"
    )
    missing = [n for n in official if n not in {SAFE_L1C, ZIP_L1C, L2A_OF}]
    assert lines[2 : 2 + 122] == [f"    {n} (product id {official[n]['product_id']})" for n in missing]
    assert lines[124:] == [
        "  extra, not on the list (built because of --allow-extra):",
        f"    {folder / UNLISTED}",
    ]
    assert report.present == {
        SAFE_L1C: [str(folder / SAFE_L1C)],
        ZIP_L1C: [str(folder / f"{ZIP_L1C}.zip")],
        L2A_OF: [str(folder / L2A)],
    }
    d = report.to_dict()
    assert (d["listed"], d["present"], len(d["missing"]), d["extra"]) == (
        125,
        3,
        122,
        [str(folder / UNLISTED)],
    )
    assert d["digest"] == hashlib.sha256(LIST.read_bytes()).hexdigest() and d["verified"] is None


def test_another_l1c_of_a_listed_datatake_and_tile_is_present_with_a_warning(tmp_path):
    other = "S2A_MSIL1C_20170613T101031_N0500_R022_T34VER_20230301T000000.SAFE"  # re-processed
    (tmp_path / other).mkdir()
    report = check_inputs(reben(), [tmp_path / other])
    assert report.present == {SAFE_L1C: [str(tmp_path / other)]}
    assert report.lines()[-1] == (
        f"  warning: {tmp_path / other} matches {SAFE_L1C} by datatake and tile but is another L1C "
        "(processing baseline or generation time differ): the dataset may differ from the official one"
    )


def test_a_product_that_cannot_be_identified_is_refused(tmp_path):
    (tmp_path / "renamed.SAFE").mkdir()
    with pytest.raises(
        InvalidParameterError, match=r"cannot tell which product .*renamed\.SAFE is: its name"
    ):
        check_inputs(reben(), [tmp_path / "renamed.SAFE"])


def test_a_recipe_without_a_list_checks_nothing_but_refuses_verify(tmp_path):
    folder = products(tmp_path / "s2")
    assert check_inputs(load_recipe("demo"), found(folder)) is None
    with pytest.raises(InvalidParameterError, match=r"recipe demo has no input list \(inputs\.product_list"):
        check_inputs(load_recipe("demo"), found(folder), verify=True)


# --------------------------------------------------------------------------------------------
# --verify-inputs
# --------------------------------------------------------------------------------------------
def test_a_zip_that_is_not_the_official_download_is_named(tmp_path, official):
    folder = products(tmp_path / "s2", extra=False)
    zipped = folder / f"{ZIP_L1C}.zip"
    got = hashlib.sha256(zipped.read_bytes()).hexdigest()
    assert file_sha256(zipped) == got
    with pytest.raises(InputHashError) as exc:
        check_inputs(reben(), found(folder), verify=True)
    row = official[ZIP_L1C]
    assert str(exc.value) == (
        f"1 zip(s) are not the ones the official reben was built from: {zipped} has SHA-256 {got}, the "
        f"official zip of {ZIP_L1C} (product id {row['product_id']}) has {row['sha256']}. A changed hash "
        "means the dataset will differ from the official one (the Copernicus Data Space has re-packaged "
        "products before): download them again by product id, or build without --verify-inputs to accept "
        "the difference"
    )


def test_folders_and_l2a_zips_cannot_be_verified_and_the_report_says_so(tmp_path):
    folder = products(tmp_path / "s2", zipped=None, extra=False)
    l2a_zip = "S2A_MSIL2A_20170613T101031_N0500_R022_T34VER_20230301T000000.SAFE.zip"
    (folder / SAFE_L1C).rmdir()
    with zipfile.ZipFile(folder / l2a_zip, "w") as z:
        z.writestr("x", "y")
    report = check_inputs(reben(), found(folder), verify=True)
    assert report.verified == [] and report.lines()[-3:] == [
        "  verified: 0 zip(s) have the official SHA-256",
        "  warning: 1 SAFE folder(s) cannot be verified (the official SHA-256 is of the downloaded zip; keep "
        f"the zips to verify them): {folder / L2A}",
        "  warning: 1 L2A zip(s) cannot be verified (the official SHA-256 is of the L1C zip they were made "
        f"from): {folder / l2a_zip}",
    ]


def test_a_zip_with_the_listed_hash_is_verified(tmp_path):
    zipped = tmp_path / "s2" / f"{ZIP_L1C}.zip"
    zipped.parent.mkdir()
    with zipfile.ZipFile(zipped, "w") as z:
        z.writestr("a", "b")
    (tmp_path / "mine.csv").write_text(f"name,product_id,sha256\n{ZIP_L1C},id-1,{file_sha256(zipped)}\n")
    (tmp_path / "mine.yaml").write_text("inputs:\n  product_list: mine.csv\n")
    report = check_inputs(load_recipe(tmp_path / "mine.yaml"), [zipped], verify=True)
    assert report.verified == [str(zipped)] and not report.warnings
    assert report.lines()[-1] == "  verified: 1 zip(s) have the official SHA-256"
    # a shard hashes only its own zips (verify_only): another shard's zip is not read here
    other = check_inputs(load_recipe(tmp_path / "mine.yaml"), [zipped], verify=True, verify_only=[])
    assert other.verified == [] and len(other.present) == 1


# --------------------------------------------------------------------------------------------
# rsprep build: the plan head and OUT/build.json
# --------------------------------------------------------------------------------------------
def test_dry_run_reports_the_list_in_the_plan_head_and_refuses_extras(archive, tmp_path):
    runner, out = CliRunner(), tmp_path / "out"
    s2 = archive / "s2"
    unlisted = sorted(str(p) for p in s2.iterdir() if "20170613T101031_N9999_R022_T33UUP" not in p.name)
    r = runner.invoke(app, dry_run(archive, s2, out))
    assert r.exit_code == 1
    assert "rsprep: error: 3 product(s) are not on the input list of recipe reben" in r.output
    assert f"tile): {', '.join(unlisted)}; the dataset would not be reben" in r.output
    assert "or pass --allow-extra to build with them" in r.output
    r = runner.invoke(app, dry_run(archive, s2, out, "--allow-extra"))
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[1] == (
        "input list reben-inputs.csv (recipe reben): 1 of 125 products present, 124 missing, 3 extra "
        "(--allow-extra)"
    )
    assert "    S2A_MSIL1C_20170613T101031_N0205_R022_T33UUP_20170613T101608.SAFE" not in r.output
    assert f"    {SAFE_L1C} (product id 225addc0-3e9f-5415-a5cf-9c1de6ba935a)" in lines
    assert lines[127:131] == ["  extra, not on the list (built because of --allow-extra):"] + [
        f"    {p}" for p in unlisted
    ]
    assert lines[131].startswith("  S2A_MSIL2A_") and not out.exists()


def test_dry_run_verify_inputs_names_the_changed_zip(archive, tmp_path):
    folder = products(tmp_path / "s2", extra=False)
    r = CliRunner().invoke(app, dry_run(archive, folder, tmp_path / "out", "--verify-inputs"))
    assert r.exit_code == 1
    assert "rsprep: error: 1 zip(s) are not the ones the official reben was built from: " in r.output
    assert f"{folder / (ZIP_L1C + '.zip')} has SHA-256 " in r.output
    assert "A changed hash means the dataset will differ from the official one" in r.output


def test_the_build_record_holds_the_report(archive, tmp_path):
    """A real build (its one product is an empty SAFE folder, so the patch stage fails fast):
    OUT/build.json records the report under inputs.product_list."""
    folder = tmp_path / "s2"
    folder.mkdir()
    (folder / SAFE_L1C).mkdir()
    a, out = archive, tmp_path / "out"
    result = build(
        load_recipe("reben"),
        s2=[folder],
        s1=a / "s1",
        clc=a / CLC,
        countries=a / COUNTRIES,
        out=out,
        workers=1,
        verify_inputs=True,
    )
    assert result.failures and result.failures[0]["stage"] == "patch"
    listed = json.loads((out / "build.json").read_text())["inputs"]["product_list"]
    assert listed["present"] == 1 and listed["present_products"] == {SAFE_L1C: [str(folder / SAFE_L1C)]}
    assert len(listed["missing"]) == 124 and listed["extra"] == [] and listed["verified"] == []
    assert listed["warnings"] == [
        "1 SAFE folder(s) cannot be verified (the official SHA-256 is of the downloaded zip; keep the zips "
        f"to verify them): {folder / SAFE_L1C}"
    ]
    assert (
        result.plan.lines()[1]
        == "input list reben-inputs.csv (recipe reben): 1 of 125 products present, 124 missing"
    )


# --------------------------------------------------------------------------------------------
# rsprep recipe inputs
# --------------------------------------------------------------------------------------------
def test_recipe_inputs_prints_the_list_as_csv_and_txt(official):
    runner = CliRunner()
    r = runner.invoke(app, ["recipe", "inputs", "reben"])
    assert r.exit_code == 0, r.output
    assert r.output == LIST.read_text()
    r = runner.invoke(app, ["recipe", "inputs", "reben", "--format", "txt"])
    assert r.exit_code == 0 and r.output.splitlines() == [row["product_id"] for row in official.values()]


def test_recipe_inputs_missing_leaves_out_what_is_there(tmp_path, official):
    folder = products(tmp_path / "s2", extra=False)
    runner = CliRunner()
    args = ["recipe", "inputs", "reben", "--missing", "--s2", str(folder), "--set", "inputs.s2_level=any"]
    r = runner.invoke(app, [*args, "--format", "txt"])
    assert r.exit_code == 0, r.output
    have = {SAFE_L1C, ZIP_L1C, L2A_OF}
    assert r.output.splitlines() == [row["product_id"] for n, row in official.items() if n not in have]
    r = runner.invoke(app, args)
    rows = list(csv.reader(r.output.splitlines()))
    assert rows[0] == ["name", "product_id", "sha256"] and len(rows) == 1 + 122
    assert [x[0] for x in rows[1:]] == [n for n in official if n not in have]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert len(missing_products(load_recipe("reben"), [empty])) == 125  # nothing downloaded yet
    # the recipe's own level (L1C): the L2A does not count
    r = runner.invoke(app, ["recipe", "inputs", "reben", "--missing", "--s2", str(folder), "--format", "txt"])
    assert len(r.output.splitlines()) == 123 and official[L2A_OF]["product_id"] in r.output


def test_recipe_inputs_errors():
    runner = CliRunner()
    r = runner.invoke(app, ["recipe", "inputs", "demo"])
    assert r.exit_code == 1
    assert "rsprep: error: recipe demo has no input list (inputs.product_list is not set)" in r.output
    r = runner.invoke(app, ["recipe", "inputs", "reben", "--missing"])
    assert r.exit_code == 2 and "give the products you have with --s2 DIR" in r.output
    r = runner.invoke(app, ["recipe", "inputs", "reben", "--missing", "--s2", "/nonexistent/s2"])
    assert r.exit_code == 1 and "rsprep: error: --s2 /nonexistent/s2 does not exist" in r.output
