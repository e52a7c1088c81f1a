"""The build record ``OUT/build.json`` (docs/build.md#the-build-record).

It holds the resolved recipe, every input with its fingerprint, the versions of rsprep and its
libraries, per product and stage the status, seconds and peak memory, every failure (file, stage,
message), the products left out (``--keep-going``) and, per dataset-wide step, the key that decides
whether it is up to date. Paths inside ``OUT`` (the work store, the dataset) are relative to ``OUT``,
so the pair can be moved together. The dataset folder keeps its own ``build.json`` of stage records.
"""

from __future__ import annotations

import hashlib
import json
import sys
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from rsprep import __version__
from rsprep.errors import RsprepError
from rsprep.store.atomic import fingerprint_files, write_json_atomic

RECORD = "build.json"
FORMAT = "rsprep-build"
WORK, DATASET = "work", "dataset"
#: Libraries whose versions go into the record (the ones that decide bytes of the outputs).
LIBRARIES = (
    "numpy",
    "pyarrow",
    "zarr",
    "numcodecs",
    "lmdb",
    "rasterio",
    "GDAL",
    "numba",
    "pydantic",
    "PyYAML",
)


class BuildRecordError(RsprepError, ValueError):
    """``OUT/build.json`` cannot be read."""


def record_path(out: Path) -> Path:
    return Path(out) / RECORD


def read_record(out: Path) -> dict[str, Any]:
    """The previous build's record in ``out`` ({} when there is none)."""
    path = record_path(out)
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BuildRecordError(f"{path} is unreadable ({exc}); delete it and build again") from exc


def write_record(out: Path, record: dict[str, Any]) -> None:
    write_json_atomic(record_path(out), {"format": FORMAT, "rsprep_version": __version__, **record})


def versions() -> dict[str, str | None]:
    """rsprep, Python and library versions."""
    found: dict[str, str | None] = {"rsprep": __version__, "python": sys.version.split()[0]}
    for lib in LIBRARIES:
        try:
            found[lib] = importlib_metadata.version(lib)
        except importlib_metadata.PackageNotFoundError:
            found[lib] = None
    return found


def file_digest(path: Path | None) -> str | None:
    """SHA-256 of a file's bytes (None for no file)."""
    if path is None or not Path(path).is_file():
        return None
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def fingerprint_tree(path: Path | None) -> dict[str, Any] | None:
    """Size and mtime of every file under ``path`` (a file or folder) and one digest (None for no path)."""
    if path is None:
        return None
    path = Path(path)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return fingerprint_files(files)


def fingerprint_listing(path: Path | None) -> dict[str, Any] | None:
    """A folder's top-level entry names and mtime, one digest: the fingerprint of a folder too large to
    stat file by file (a BigEarthNet-S1-v1.0 folder: 590,326 patch folders, 1.8 million files), whose
    users fingerprint the files they read themselves (the v1 S1 stage, per store)."""
    if path is None:
        return None
    import os

    path = Path(path)
    names = sorted(e.name for e in os.scandir(path))
    h = hashlib.sha256(f"{path.stat().st_mtime_ns}\n".encode())
    for name in names:
        h.update(name.encode() + b"\n")
    return {"files": names, "digest": h.hexdigest(), "scope": "top-level entries"}
