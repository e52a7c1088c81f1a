"""The docs stand alone: no pointers outside the repository, every docs/ link resolves, the README's
Python examples import what they name."""

from __future__ import annotations

import ast
import importlib
import re
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"

#: Pointers to files outside the checkout, which users who clone or pip-install rsprep do not have.
FORBIDDEN = re.compile(r"\.\./shared|\bDESIGN\b")
#: ``docs/<name>.md`` optionally followed by ``#<anchor>``.
DOC_REF = re.compile(r"docs/([A-Za-z0-9_.-]+?\.md)(?:#([A-Za-z0-9_-]+))?")


def _python_sources() -> list[Path]:
    return sorted((ROOT / "rsprep").rglob("*.py"))


def _forbidden_lines(name: str, text: str) -> list[str]:
    return [
        f"{name}:{i}: {line.strip()}" for i, line in enumerate(text.splitlines(), 1) if FORBIDDEN.search(line)
    ]


# --------------------------------------------------------------------------------------------
# (a) nothing points at files users do not have
# --------------------------------------------------------------------------------------------
def test_readme_and_sources_do_not_point_outside_the_repository():
    bad = _forbidden_lines("README.md", README.read_text(encoding="utf-8"))
    for path in _python_sources():
        bad += _forbidden_lines(str(path.relative_to(ROOT)), path.read_text(encoding="utf-8"))
    assert not bad, "lines that mention ../shared or DESIGN:\n" + "\n".join(bad)


def _command_paths() -> list[list[str]]:
    """Every command path of the CLI: [] (the root), then each subcommand, recursively."""
    import typer.main

    from rsprep.cli.main import app

    root = typer.main.get_command(app)
    paths: list[list[str]] = [[]]

    def walk(group, prefix: list[str]) -> None:
        for name, cmd in sorted(getattr(group, "commands", {}).items()):
            paths.append([*prefix, name])
            walk(cmd, [*prefix, name])

    walk(root, [])
    return paths


def test_cli_lists_its_subcommands():
    names = {p[0] for p in _command_paths() if p}
    assert {"patch", "reference", "metadata", "convert"} <= names


@pytest.mark.parametrize("path", _command_paths(), ids=lambda p: " ".join(["rsprep", *p]))
def test_help_does_not_point_outside_the_repository(path):
    from typer.testing import CliRunner

    from rsprep.cli.main import app

    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    bad = _forbidden_lines(" ".join(["rsprep", *path, "--help"]), result.output)
    assert not bad, "help lines that mention ../shared or DESIGN:\n" + "\n".join(bad)


# --------------------------------------------------------------------------------------------
# (b) every docs/<page>.md[#anchor] reference resolves
# --------------------------------------------------------------------------------------------
def github_anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lowercase, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`([^`]*)`", r"\1", heading.strip())
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # links keep their text
    kept = [ch for ch in text.lower() if ch in " -_" or unicodedata.category(ch)[0] in "LMN"]
    return "".join(kept).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors of every Markdown heading of ``path`` (outside fenced code), with GitHub's -1, -2
    suffixes for repeated headings."""
    seen: dict[str, int] = {}
    out: set[str] = set()
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
            continue
        m = None if fenced else re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m is None:
            continue
        base = github_anchor(m.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def test_github_anchor_rules():
    assert github_anchor("metadata.parquet") == "metadataparquet"
    assert github_anchor("Sentinel-2") == "sentinel-2"
    assert github_anchor("CORINE Land Cover") == "corine-land-cover"
    assert github_anchor("GeoTIFF layout") == "geotiff-layout"
    assert github_anchor("`rsprep split TARGET --method tile-border|block`") == (
        "rsprep-split-target---method-tile-borderblock"
    )


def _referencing_files() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md")), *_python_sources()]


def test_docs_references_resolve():
    cache: dict[str, set[str] | None] = {}
    bad = []
    found = 0
    for path in _referencing_files():
        rel = path.relative_to(ROOT)
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for m in DOC_REF.finditer(line):
                found += 1
                page, anchor = m.group(1), m.group(2)
                if page not in cache:
                    target = DOCS / page
                    cache[page] = anchors(target) if target.is_file() else None
                if cache[page] is None:
                    bad.append(f"{rel}:{i}: docs/{page} does not exist")
                elif anchor is not None and anchor not in cache[page]:
                    bad.append(f"{rel}:{i}: docs/{page} has no heading with anchor #{anchor}")
    assert found > 0
    assert not bad, "broken docs references:\n" + "\n".join(bad)


@pytest.mark.parametrize(
    "ref",
    [
        "inputs.md#sentinel-2",
        "inputs.md#corine-land-cover",
        "inputs.md#sentinel-1",
        "inputs.md#country-borders",
        "formats.md#lmdb",
        "formats.md#zarr",
        "formats.md#geotiff-layout",
        "dataset.md#metadataparquet",
        "dataset.md#patchesparquet",
        "architecture.md#execution",
        "grid.md",
        "labels.md",
        "splits.md",
        "noise.md",
        "convert.md",
        "workstore.md",
        "synth.md",
        "reference.md",
    ],
)
def test_pages_and_anchors_that_code_links_to_exist(ref):
    page, _, anchor = ref.partition("#")
    assert (DOCS / page).is_file(), f"docs/{page} is missing"
    if anchor:
        assert anchor in anchors(DOCS / page), f"docs/{page} has no heading for #{anchor}"


# --------------------------------------------------------------------------------------------
# (c) the README's Python examples import what they name
# --------------------------------------------------------------------------------------------
def _readme_python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), re.S | re.M)


def test_readme_has_a_library_example():
    text = README.read_text(encoding="utf-8")
    assert "## As a library" in text
    assert any("from rsprep.stages import patch, reference" in b for b in _readme_python_blocks())


def test_readme_python_imports_resolve():
    checked = 0
    for block in _readme_python_blocks():
        for node in ast.walk(ast.parse(block)):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "rsprep":
                module = importlib.import_module(node.module)
                for alias in node.names:
                    if not hasattr(module, alias.name):
                        importlib.import_module(f"{node.module}.{alias.name}")  # a submodule
                    checked += 1
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == "rsprep":
                        importlib.import_module(alias.name)
                        checked += 1
    assert checked > 0
