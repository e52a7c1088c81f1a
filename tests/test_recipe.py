"""Recipes (docs/recipes.md): the built-in ones, the demo's equality with the Makefile's chained
commands, --set and option precedence, field-path errors, the schema, packaging and the CLI."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from rsprep.build.recipe import Recipe, RecipeError, builtin_recipes, load_recipe, recipe_schema
from rsprep.cli.main import app

ROOT = Path(__file__).resolve().parents[1]
BUILTIN = {"reben", "demo", "ben43-600m-blocks"}

#: The chained single-stage commands that `rsprep build demo` replaces, with the exact options of the
#: Makefile's `demo` target (checked against the Makefile while it still holds them).
DEMO_COMMANDS = """
synth $(DEMO)/archive --overwrite
inspect $(DEMO)/archive/s2/*.SAFE
patch $(DEMO)/archive/s2/*.SAFE --out $(DEMO)/work
stack $(DEMO)/work
s1 --s1 $(DEMO)/archive/s1 --work $(DEMO)/work
reference --clc $(DEMO)/archive/clc/U2018_CLC2018_V2020_20u1.gpkg --work $(DEMO)/work
metadata --work $(DEMO)/work --out $(DEMO)/dataset --countries $(DEMO)/archive/countries/countries.gpkg \
    --overwrite
split $(DEMO)/dataset --method tile-border
noise $(DEMO)/dataset --mode mixed --sub-rate 0.2 --add-rate 0.1 --overwrite
convert lmdb $(DEMO)/dataset --overwrite
convert zarr $(DEMO)/dataset --stack --overwrite
convert tiff $(DEMO)/dataset --overwrite
stats $(DEMO)/dataset --overwrite
card $(DEMO)/dataset --countries $(DEMO)/archive/countries/countries.gpkg --overwrite
validate $(DEMO)/dataset --write-checksums --full
""".strip().splitlines()  # (a backslash-newline inside the string joins the two lines)


def _makefile_demo(target: str = "demo-stages") -> list[str]:
    """The rsprep commands of a Makefile target (``demo-stages`` chains the single-stage commands)."""
    text = (ROOT / "Makefile").read_text(encoding="utf-8").replace("\\\n", " ")
    body = text.split(f"\n{target}:", 1)[1].split("\n\n", 1)[0]
    return [
        " ".join(line.split("$(BIN)/rsprep", 1)[1].split())
        for line in body.splitlines()
        if "$(BIN)/rsprep" in line
    ]


# --------------------------------------------------------------------------------------------
# The built-in recipes
# --------------------------------------------------------------------------------------------
def test_builtin_recipes_are_the_three_files_of_recipes_folder():
    found = builtin_recipes()
    assert set(found) == BUILTIN
    for name, path in found.items():
        assert path.resolve() == (ROOT / "recipes" / f"{name}.yaml").resolve()
        assert path.read_text(encoding="utf-8").startswith("#"), f"{name}: no comment header"


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_every_builtin_recipe_loads_and_its_options_pass_the_stages(name):
    recipe = load_recipe(name)
    assert recipe.name == name and recipe.description
    recipe.patch_options().validate()
    stack = recipe.stack_options()
    assert stack is None if not recipe.stack.enabled else stack.validate() is None
    recipe.s1_options().validate()
    recipe.reference_options().validate()
    recipe.metadata_options(countries=None, v1=None).validate()
    recipe.split_options().validate()
    for _name, options in recipe.noise_variants():
        options.validate()
    for fmt in recipe.outputs.formats:
        recipe.convert_options(fmt, workers=2).validate()
    json.dumps(recipe.resolved())  # plain JSON-able data


def test_reben_recipe_holds_the_published_parameters():
    from rsprep.core.bands import SPECTRAL_BANDS
    from rsprep.inputs.countries import REBEN_COUNTRIES

    r = load_recipe("reben")
    assert r.patch_options().patch_size == 1200 and r.patch_options().bands == SPECTRAL_BANDS
    assert r.reference_options().nomenclature == "ben19" and r.reference_options().max_unlabeled == 0.25
    assert r.split_options().method == "tile-border" and r.split_options().fractions == (0.5, 0.25, 0.25)
    meta = r.metadata_options(countries=Path("c.gpkg"), v1=None)
    assert meta.country_candidates == REBEN_COUNTRIES and len(REBEN_COUNTRIES) == 10
    assert (meta.snow_threshold, meta.cloud_threshold, meta.keep_unpaired) == (0.0, 0.0, False)
    assert r.s1_options().max_days == 10 and r.metadata.require_quality_passed
    assert r.outputs.formats == ["lmdb", "tiff"] and r.licence == "CDLA-Permissive-1.0"


def test_general_recipe_is_not_reben():
    r = load_recipe("ben43-600m-blocks")
    assert r.patch_options().patch_size == 600 and r.reference_options().nomenclature == "ben43"
    split = r.split_options()
    assert (split.method, split.block_km, split.buffer, split.patch_size) == ("block", 10.0, 1, 600.0)
    assert r.outputs.formats == ["zarr"]


# --------------------------------------------------------------------------------------------
# The demo recipe = the Makefile's chained commands
# --------------------------------------------------------------------------------------------
def test_demo_commands_are_the_makefiles_chained_ones():
    """The commands the equality tests use are those of `make demo-stages` (the chained demo)."""
    assert _makefile_demo() == [" ".join(c.split()) for c in DEMO_COMMANDS]
    assert any(c.startswith("build demo ") for c in _makefile_demo("demo"))


def _capture_cli_options(monkeypatch, demo: Path) -> dict[str, object]:
    """Run each chained command through the real CLI, with the stage functions replaced by spies."""
    import rsprep.stages.convert as convert
    import rsprep.stages.metadata as metadata
    import rsprep.stages.noise as noise
    import rsprep.stages.patch as patch
    import rsprep.stages.reference as reference
    import rsprep.stages.s1 as s1
    import rsprep.stages.split as split
    import rsprep.stages.stack as stack

    seen: dict[str, object] = {}

    def spy(key, pick, result):
        def fake(*args, **kwargs):
            seen[key(args) if callable(key) else key] = pick(args, kwargs)
            return result

        return fake

    monkeypatch.setattr(patch, "patch_products", spy("patch", lambda a, k: k["options"], []))
    monkeypatch.setattr(stack, "stack_work", spy("stack", lambda a, k: a[1], []))
    monkeypatch.setattr(s1, "s1_work", spy("s1", lambda a, k: a[2], ([], None)))
    monkeypatch.setattr(reference, "reference_work", spy("reference", lambda a, k: k["options"], ([], None)))
    monkeypatch.setattr(
        metadata, "build_metadata", spy("metadata", lambda a, k: a[2], SimpleNamespace(warnings=[]))
    )
    monkeypatch.setattr(split, "split_target", spy("split", lambda a, k: a[1], (None, [], None)))
    monkeypatch.setattr(noise, "make_noise", spy("noise", lambda a, k: (k["name"], a[1]), {}))
    monkeypatch.setattr(convert, "convert", spy(lambda a: f"convert {a[0]}", lambda a, k: a[3], None))
    runner = CliRunner()
    for command in DEMO_COMMANDS:
        if command.split()[0] not in (
            "patch",
            "stack",
            "s1",
            "reference",
            "metadata",
            "split",
            "noise",
            "convert",
        ):
            continue
        args = shlex.split(command.replace("$(DEMO)", str(demo)))
        result = runner.invoke(app, ["-q", *args])
        assert result.exit_code == 0, (command, result.output)
    return seen


def test_demo_recipe_options_equal_the_chained_commands_options(monkeypatch, tmp_path):
    cli = _capture_cli_options(monkeypatch, tmp_path)
    r = load_recipe("demo")
    workers = os.cpu_count() or 1  # --workers 0, the CLI default: one per CPU
    countries = tmp_path / "archive/countries/countries.gpkg"
    assert cli["patch"] == r.patch_options()
    assert cli["stack"] == r.stack_options()
    assert cli["s1"] == r.s1_options()
    assert cli["reference"] == r.reference_options()
    assert cli["metadata"] == r.metadata_options(countries=countries, v1=None)
    assert cli["split"] == r.split_options()
    assert [cli["noise"]] == r.noise_variants()
    for fmt in ("lmdb", "zarr", "tiff"):
        assert cli[f"convert {fmt}"] == r.convert_options(fmt, workers=workers, overwrite=True), fmt
    assert r.outputs.formats == ["lmdb", "zarr", "tiff"]
    # the closing commands: stats, the card with the country file, a full validation with checksums
    closing = {c.split()[0]: c for c in DEMO_COMMANDS}
    assert r.outputs.stats and r.outputs.card and r.inputs.countries and "--countries" in closing["card"]
    v = r.outputs.validation
    assert v.enabled and v.full == ("--full" in closing["validate"])
    assert v.checksums == ("--write-checksums" in closing["validate"])


# --------------------------------------------------------------------------------------------
# Precedence: CLI option > --set > recipe > default
# --------------------------------------------------------------------------------------------
def test_set_overrides_the_recipe_and_options_override_set():
    base = load_recipe("demo")
    assert base.split.seed == 0 and base.s1.max_days == 10
    r = load_recipe("demo", ["split.seed=3", "s1.max_days=2.5", "outputs.formats=[zarr]", "noise.0.seed=9"])
    assert (r.split.seed, r.s1.max_days, r.outputs.formats, r.noise[0].seed) == (3, 2.5, ["zarr"], 9)
    cli = r.with_overrides({"split.seed": 5})
    assert cli.split.seed == 5 and cli.s1.max_days == 2.5  # the option wins, the rest of --set stays
    assert r.split.seed == 3  # with_overrides returns a copy


def test_set_reaches_sections_and_list_items_the_file_leaves_out():
    r = load_recipe("ben43-600m-blocks", ["stack.enabled=true", "noise.0.mode=uniform", "noise.0.rate=0.1"])
    assert r.stack_options() is not None and r.stack.resampling == "bilinear"  # the default
    assert r.noise_variants()[0][1].rate == 0.1


def test_a_recipe_leaving_out_a_section_gets_the_stage_defaults(tmp_path):
    f = tmp_path / "mini.yaml"
    f.write_text("description: only defaults\n", encoding="utf-8")
    r = load_recipe(f)
    assert r.name == "mini"  # from the file name
    from rsprep.core.splits import SplitOptions
    from rsprep.stages.patch import PatchOptions
    from rsprep.stages.s1 import S1Options

    assert r.patch_options() == PatchOptions() and r.s1_options() == S1Options()
    assert r.split_options() == SplitOptions() and r.stack_options() is None


# --------------------------------------------------------------------------------------------
# Errors name the field path (and the file line)
# --------------------------------------------------------------------------------------------
def _error(tmp_path, text: str, sets=()) -> str:
    f = tmp_path / "r.yaml"
    f.write_text(text, encoding="utf-8")
    with pytest.raises(RecipeError) as info:
        load_recipe(f, sets)
    return str(info.value)


def test_unknown_key_names_its_path_the_allowed_keys_and_the_line(tmp_path):
    msg = _error(tmp_path, "name: r\npatch:\n  patch_szie: 1200\n")
    assert msg == (
        "recipe r.yaml: patch.patch_szie: unknown key (allowed: patch_size, bands, harmonize, verify); "
        "did you mean patch_size? (line 3)"
    )
    assert "(top level)" not in _error(tmp_path, "name: r\nsplt: {}\n")
    assert "splt: unknown key (allowed: name, description" in _error(tmp_path, "name: r\nsplt: {}\n")


def test_a_value_the_stage_refuses_names_the_field(tmp_path):
    msg = _error(tmp_path, "name: r\nsplit:\n  method: tile-border\n  fractions: [0.5, 0.3, 0.3]\n")
    assert msg.startswith(
        "recipe r.yaml: split.fractions: split fractions must sum to 1, got (0.5, 0.3, 0.3)"
    )
    assert msg.endswith("(line 4)")
    assert "patch.patch_size: patch size 1000 m is not a positive multiple of 60 m" in _error(
        tmp_path, "patch: {patch_size: 1000}\n"
    )
    assert "split.buffer: --buffer applies to --method block only" in _error(tmp_path, "split: {buffer: 1}\n")
    assert "noise.0.mode: noise mode 'loud' is not one of" in _error(tmp_path, "noise: [{mode: loud}]\n")
    assert "noise.0.rate: --rate must lie in [0, 1], got 2" in _error(
        tmp_path, "noise: [{mode: uniform, rate: 2}]\n"
    )
    assert "patch.bands: band 'B13' is not a Sentinel-2 band" in _error(
        tmp_path, "patch: {bands: [B02, B13]}\n"
    )
    assert "metadata.keep_unpaired: must be true when inputs.s1 is false" in _error(
        tmp_path, "inputs: {s1: false}\n"
    )


def test_a_value_of_the_wrong_type_names_the_field_and_the_value(tmp_path):
    msg = _error(tmp_path, "name: r\npatch:\n  patch_size: big\n")
    assert msg == (
        "recipe r.yaml: patch.patch_size: input should be a valid integer, unable to parse string as an "
        "integer, got 'big' (line 3)"
    )
    msg = _error(tmp_path, "outputs: {formats: [lmdb, png]}\n")
    assert "outputs.formats.1: input should be 'lmdb', 'zarr' or 'tiff', got 'png'" in msg


def test_every_problem_is_one_line(tmp_path):
    msg = _error(tmp_path, "patch: {patch_size: 7}\ns1: {max_days: -1}\nsplit: {seed: x}\n")
    lines = msg.splitlines()
    assert len(lines) == 3 and all(line.startswith("recipe r.yaml: ") for line in lines)
    assert {line.split(": ")[1] for line in lines} == {"patch.patch_size", "s1.max_days", "split.seed"}


def test_bad_yaml_names_the_file_and_line(tmp_path):
    msg = _error(tmp_path, "name: r\npatch:\n  patch_size: 1200\n   bands: [B01]\n")
    assert msg == "recipe r.yaml: line 4, column 9: mapping values are not allowed here"
    assert _error(tmp_path, "split:\n  seed: 1\n  seed: 2\n") == (
        "recipe r.yaml: line 3, column 3: key 'seed' given twice (first on line 2)"
    )
    assert "holds a list, not a mapping" in _error(tmp_path, "- a\n- b\n")


def test_set_errors_name_the_path(tmp_path):
    assert _error(tmp_path, "name: r\n", ["split.sed=1"]) == (
        "recipe r.yaml: --set: split.sed: unknown key "
        "(allowed: method, fractions, seed, block_km, buffer, crs); did you mean seed?"
    )
    assert "give key.path=value" in _error(tmp_path, "name: r\n", ["split"])
    assert "split.seed: input should be a valid integer" in _error(tmp_path, "name: r\n", ["split.seed=abc"])
    assert "(from --set split.seed)" in _error(tmp_path, "name: r\n", ["split.seed=abc"])
    assert "noise.2: index '2' is not one of 0..0" in _error(tmp_path, "name: r\n", ["noise.2.mode=mixed"])
    assert "patch.patch_size.x: patch.patch_size is a plain value" in _error(
        tmp_path, "name: r\n", ["patch.patch_size.x=1"]
    )
    with pytest.raises(RecipeError, match=r"split\.sed: unknown key"):
        load_recipe("demo").with_overrides({"split.sed": 1})


def test_an_unknown_recipe_lists_the_builtin_ones():
    with pytest.raises(RecipeError, match=r"'rebn' is neither a built-in recipe .*did you mean reben\?"):
        load_recipe("rebn")
    with pytest.raises(RecipeError, match=r"recipe file nowhere/x\.yaml does not exist"):
        load_recipe("nowhere/x.yaml")
    with pytest.raises(RecipeError, match="format 'png' is not one of lmdb, zarr, tiff"):
        load_recipe("demo").convert_options("png", workers=1)


def test_a_recipe_is_immutable():
    r = load_recipe("demo")
    with pytest.raises(Exception, match="frozen"):
        r.split.seed = 4  # type: ignore[misc]
    assert isinstance(r, Recipe)


# --------------------------------------------------------------------------------------------
# Schema, docs, packaging
# --------------------------------------------------------------------------------------------
def test_schema_file_is_generated_from_the_model():
    on_disk = json.loads((ROOT / "schemas/recipe.schema.json").read_text(encoding="utf-8"))
    assert on_disk == recipe_schema(), "regenerate: rsprep recipe schema > schemas/recipe.schema.json"


def test_builtin_recipes_validate_against_the_schema():
    import jsonschema
    import yaml

    for path in builtin_recipes().values():
        jsonschema.validate(yaml.safe_load(path.read_text(encoding="utf-8")), recipe_schema())


def _field_paths(model, prefix="") -> list[str]:
    from rsprep.build.recipe_paths import item_of, model_of

    out = []
    for name, field in model.model_fields.items():
        item = model_of(item_of(field.annotation))
        sub = model_of(field.annotation)
        if item or sub:
            out += _field_paths(item or sub, f"{prefix}{name}.N." if item else f"{prefix}{name}.")
        else:
            out.append(f"{prefix}{name}")
    return out


def test_docs_describe_every_field():
    text = (ROOT / "docs/recipes.md").read_text(encoding="utf-8")
    missing = [p for p in _field_paths(Recipe) if f"`{p}`" not in text]
    assert not missing, f"docs/recipes.md does not describe {missing}"
    for name in BUILTIN:
        assert f"`{name}`" in text


@pytest.mark.slow
def test_a_built_wheel_ships_the_builtin_recipes(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for item in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / item, src / item)
    ignore = shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc")
    shutil.copytree(ROOT / "rsprep", src / "rsprep", symlinks=True, ignore=ignore)
    shutil.copytree(ROOT / "recipes", src / "recipes")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            ".",
        ],
        cwd=src,
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("rsprep-*.whl")
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)  # a pure-Python wheel: unpacking it is installing it
    # -S: no site module, so no .pth file puts the editable checkout first; the libraries still import
    paths = [str(site), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    code = (
        f"import sys; sys.path[:0] = {paths!r}; import json, rsprep; "
        "from rsprep.build.recipe import builtin_recipes; "
        "print(json.dumps([rsprep.__file__, {k: str(v) for k, v in builtin_recipes().items()}]))"
    )
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    where, found = json.loads(out.stdout)
    assert where.startswith(str(site)) and set(found) == BUILTIN
    assert all(Path(p).is_relative_to(site / "rsprep" / "recipes") for p in found.values())


# --------------------------------------------------------------------------------------------
# The CLI
# --------------------------------------------------------------------------------------------
def test_cli_recipe_show_json_is_the_resolved_recipe():
    result = CliRunner().invoke(app, ["recipe", "show", "demo", "--json", "--set", "split.seed=4"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown == load_recipe("demo", ["split.seed=4"]).resolved() and shown["split"]["seed"] == 4


def test_cli_recipe_show_yaml_round_trips(tmp_path):
    result = CliRunner().invoke(app, ["recipe", "show", "reben"])
    assert result.exit_code == 0, result.output
    f = tmp_path / "reben-resolved.yaml"
    f.write_text(result.output, encoding="utf-8")
    assert load_recipe(f).resolved() == load_recipe("reben").resolved()


def test_cli_recipe_list_and_errors():
    result = CliRunner().invoke(app, ["recipe", "list"])
    assert result.exit_code == 0
    names = [line.split()[0] for line in result.output.splitlines()]
    assert names == sorted(BUILTIN)
    bad = subprocess.run(
        [sys.executable, "-m", "rsprep.cli.main", "recipe", "show", "demo", "--set", "patch.patch_size=7"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1
    assert re.fullmatch(
        r"rsprep: error: recipe demo\.yaml: patch\.patch_size: "
        r"patch size 7 m is not a positive multiple of 60 m.*"
        r"\(from --set patch\.patch_size\)\n",
        bad.stderr,
    )
