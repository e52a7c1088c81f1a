"""The import contracts of pyproject.toml (docs/architecture.md) hold, and really catch a wrong import."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")  # a dev dependency: missing means a broken install


def lint(package_parent: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(package_parent), "COLUMNS": "250"}
    return subprocess.run(
        [str(LINT), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=package_parent,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def copy_package(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "rsprep", tmp_path / "rsprep", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path / "rsprep"


def test_the_layers_hold():
    r = lint(ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 broken" in r.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("core/bands.py", "from rsprep.store import atomic  # noqa", "Layers only look down"),
        ("core/grid.py", "import rasterio  # noqa", "The core is pure"),
        ("store/dataset.py", "from rsprep.formats import lmdb  # noqa", "Layers only look down"),
        ("stages/stack.py", "from rsprep.stages import patch  # noqa", "A stage never reaches"),
        ("cli/stack.py", "from rsprep.cli import main  # noqa", "No command imports the root"),
        ("formats/sources.py", "import tqdm  # noqa", "Library code has no UI"),
    ],
)
def test_a_wrong_import_breaks_a_contract(tmp_path, module, line, contract):
    pkg = copy_package(tmp_path)
    target = pkg / module
    target.write_text(target.read_text() + f"\n\ndef _wrong():\n    {line}\n")
    r = lint(tmp_path)
    assert r.returncode != 0, r.stdout
    broken = [ln for ln in r.stdout.splitlines() if ln.endswith("BROKEN")]
    assert any(ln.startswith(contract) for ln in broken), r.stdout
