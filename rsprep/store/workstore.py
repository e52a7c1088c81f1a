"""The per-tile work store (docs/workstore.md): one folder per product between per-tile and dataset-wide stages.

Layout of ``WORK/<patch prefix>/`` (the product URI without its generation time)::

    manifest.json     format, tile grid, product facts, and per stage: parameters, input fingerprint,
                      outputs, rsprep version
    s2.zarr/          patch stage: one array per band, (N, h, w) at native resolution, plus SCL
    patches.parquet   patch stage: one row per patch of the grid, row i = array index i
    stack.zarr/       stack stage: (N, 12, 10m, 10m)
    s1.zarr/          s1 stage: VV, VH (M, 10m, 10m) for the M paired patches
    s1.parquet        s1 stage: partner (or the reason for none) per patch

Every stage writes its files under temporary names and renames them into place, then replaces the
manifest; the patch stage builds the whole folder as a temporary sibling. A crash never leaves a
file that looks complete. Arrays are chunked by one row of patches (``n`` patches), not one file per patch.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rsprep import __version__
from rsprep.core.grid import patch_bounds, patch_name
from rsprep.errors import InputNotFoundError, RsprepError

STORE_FORMAT = "rsprep-workstore"
STORE_VERSION = 1
MANIFEST = "manifest.json"


class WorkStoreError(RsprepError, ValueError):
    """A work store is missing, incomplete or from an incompatible rsprep version."""


@dataclass(frozen=True)
class TileGrid:
    """The patch grid of one product's tile (docs/grid.md)."""

    tile_id: str  # "T33UUP"
    epsg: int
    ulx: float
    uly: float
    tile_size_m: float
    patch_size: int
    n: int  # complete patches per side
    patch_prefix: str

    @property
    def count(self) -> int:
        return self.n * self.n

    def pixels(self, resolution: int) -> int:
        """Pixels per patch side at ``resolution``."""
        return self.patch_size // resolution

    def xy(self, index: int) -> tuple[int, int]:
        """(x, y) of the patch stored at array row ``index`` (row-major)."""
        return index % self.n, index // self.n

    def index(self, x: int, y: int) -> int:
        return y * self.n + x

    def patch_id(self, x: int, y: int) -> str:
        return patch_name(self.patch_prefix, x, y, self.n)

    def bounds(self, x: int, y: int) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in the tile CRS."""
        return patch_bounds(self.ulx, self.uly, x, y, self.patch_size)

    def transform(self, x: int, y: int, resolution: int) -> tuple[float, float, float, float, float, float]:
        """Coefficients (a, b, c, d, e, f of ``affine.Affine``) of patch (x, y) at ``resolution``."""
        left, _, _, top = self.bounds(x, y)
        return (float(resolution), 0.0, left, 0.0, -float(resolution), top)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TileGrid:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})


# --------------------------------------------------------------------------------------------
# Fingerprints and atomic writes
# --------------------------------------------------------------------------------------------
def fingerprint_files(paths: list[Path]) -> dict[str, Any]:
    """Size and modification time of each input file, and one digest of them all.

    Cheap enough for 1 GB products (no hashing of contents); a re-downloaded or edited file changes
    its size or mtime and so invalidates the stage.
    """
    files = {}
    for p in sorted(paths, key=str):
        st = p.stat()
        files[str(p.resolve())] = [st.st_size, st.st_mtime_ns]
    digest = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
    return {"digest": digest, "files": files}


def digest(obj: Any) -> str:
    """SHA-256 of the canonical JSON of ``obj``."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write ``obj`` as JSON to ``path`` through a temporary sibling and a rename."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def temp_sibling(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def replace_path(tmp: Path, dest: Path) -> None:
    """Move ``tmp`` to ``dest``, replacing a file or folder there, never leaving ``dest`` half-written."""
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
        if old.exists():
            shutil.rmtree(old) if old.is_dir() else old.unlink()
        os.replace(dest, old)
        os.replace(tmp, dest)
        shutil.rmtree(old) if old.is_dir() else old.unlink()
    else:
        os.replace(tmp, dest)


@contextlib.contextmanager
def building(dest: Path, *, folder: bool = True) -> Iterator[Path]:
    """Yield a temporary sibling of ``dest`` to build in; move it to ``dest`` only on success.

    With ``folder`` the sibling is created as an empty folder; otherwise the caller writes a file there.
    """
    tmp = temp_sibling(dest)
    _remove(tmp)
    if folder:
        tmp.mkdir(parents=True)
    try:
        yield tmp
        replace_path(tmp, dest)
    finally:
        _remove(tmp)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------
# Zarr helpers
# --------------------------------------------------------------------------------------------
def compressors():
    """The codec of every work-store array: fast enough to keep up with JPEG2000 decoding."""
    from zarr.codecs import BloscCodec

    return [BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")]


def consolidate(path: Path) -> None:
    """Write consolidated metadata (a zarr-python extension to Zarr v3, read by xarray)."""
    import warnings

    import zarr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        zarr.consolidate_metadata(path)


def create_patch_array(group, name: str, *, shape, dtype, chunk_patches: int, attrs=None, fill_value=0):
    """An (N, ...) array chunked by ``chunk_patches`` patches, with dimension names."""
    dims = ("patch", "band", "y", "x") if len(shape) == 4 else ("patch", "y", "x")
    arr = group.create_array(
        name,
        shape=shape,
        chunks=(max(1, min(chunk_patches, shape[0] or 1)), *shape[1:]),
        dtype=dtype,
        compressors=compressors(),
        fill_value=fill_value,
        dimension_names=dims,
        attributes=attrs or {},
    )
    return arr


# --------------------------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------------------------
class TileStore:
    """One product's folder in the work store."""

    def __init__(self, path: Path, manifest: dict[str, Any]) -> None:
        self.path = path
        self.manifest = manifest

    @classmethod
    def open(cls, path: str | Path) -> TileStore:
        """Open the store at ``path``.

        Raises:
            WorkStoreError: no manifest, or a manifest of another format or version.
        """
        path = Path(path)
        mpath = path / MANIFEST
        if not mpath.is_file():
            raise WorkStoreError(
                f"{path} is not an rsprep work store (no {MANIFEST}); create it with `rsprep patch`"
            )
        try:
            manifest = json.loads(mpath.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise WorkStoreError(f"{mpath} is unreadable ({exc}); re-run `rsprep patch --force`") from exc
        if manifest.get("format") != STORE_FORMAT or manifest.get("version") != STORE_VERSION:
            raise WorkStoreError(
                f"{mpath} is not a version-{STORE_VERSION} {STORE_FORMAT} manifest; "
                "re-run `rsprep patch --force` with this rsprep version"
            )
        return cls(path, manifest)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def grid(self) -> TileGrid:
        return TileGrid.from_dict(self.manifest["grid"])

    @property
    def product(self) -> dict[str, Any]:
        return self.manifest["product"]

    def stage(self, name: str) -> dict[str, Any] | None:
        return self.manifest.get("stages", {}).get(name)

    def require_stage(self, name: str, hint: str) -> dict[str, Any]:
        rec = self.stage(name)
        if rec is None:
            raise WorkStoreError(f"{self.path}: the {name} stage has not run; {hint}")
        return rec

    def table(self, filename: str):
        """Read a parquet table of this store."""
        import pyarrow.parquet as pq

        p = self.path / filename
        if not p.is_file():
            raise WorkStoreError(
                f"{p} is missing; the work store is incomplete, re-run its stage with --force"
            )
        return pq.read_table(p)

    def zarr(self, name: str):
        """Open one of this store's Zarr groups read-only."""
        import zarr

        p = self.path / name
        if not (p / "zarr.json").is_file():
            raise WorkStoreError(
                f"{p} is missing; the work store is incomplete, re-run its stage with --force"
            )
        return zarr.open_group(p, mode="r")

    def record_stage(self, name: str, record: dict[str, Any]) -> None:
        """Store a finished stage in the manifest (atomically)."""
        self.manifest.setdefault("stages", {})[name] = record
        write_json_atomic(self.path / MANIFEST, self.manifest)

    def is_current(self, name: str, parameters: dict[str, Any], inputs_digest: str) -> bool:
        rec = self.stage(name)
        return (
            rec is not None
            and rec.get("parameters") == parameters
            and rec.get("inputs_digest") == inputs_digest
            and rec.get("rsprep_version") == __version__
        )


def stage_record(parameters: dict[str, Any], inputs_digest: str, **extra: Any) -> dict[str, Any]:
    return {"parameters": parameters, "inputs_digest": inputs_digest, "rsprep_version": __version__, **extra}


def find_stores(work: str | Path) -> list[TileStore]:
    """The stores in ``work``: the folder itself when it is one, else its sub-folders, sorted by name.

    Raises:
        InputNotFoundError: ``work`` does not exist.
        WorkStoreError: it holds no work store.
    """
    work = Path(work)
    if not work.is_dir():
        raise InputNotFoundError(
            f"work store {work} does not exist; create it with `rsprep patch ... --out {work}`"
        )
    if (work / MANIFEST).is_file():
        return [TileStore.open(work)]
    stores = [
        TileStore.open(p)
        for p in sorted(work.iterdir())
        if p.is_dir() and not p.name.startswith(".") and (p / MANIFEST).is_file()
    ]
    if not stores:
        raise WorkStoreError(f"{work} holds no work store; run `rsprep patch PRODUCT... --out {work}` first")
    return stores
