"""The per-tile work store (docs/workstore.md): one folder per product between the stages.

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

import json
from pathlib import Path
from typing import Any

from rsprep import __version__
from rsprep.core.grid import TileGrid
from rsprep.errors import InputNotFoundError, RsprepError
from rsprep.store.atomic import write_json_atomic

STORE_FORMAT = "rsprep-workstore"
STORE_VERSION = 1
MANIFEST = "manifest.json"
#: Every per-tile file name, owned here (docs/workstore.md): stage -> what it writes.
S2_ARRAYS = "s2.zarr"  # patch: one array per band and SCL
PATCH_TABLE = "patches.parquet"  # patch: one row per grid patch
STACK_ARRAYS = "stack.zarr"  # stack: s2_stacked
S1_ARRAYS = "s1.zarr"  # s1: VV, VH of the paired patches
S1_TABLE = "s1.parquet"  # s1: partner (or the reason for none) per patch
REFERENCE_ARRAYS = "reference.zarr"  # reference: reference_map
LABELS_TABLE = "labels.parquet"  # reference: labels per patch
REFERENCE_MAP = "reference_map"  # the array inside REFERENCE_ARRAYS


class WorkStoreError(RsprepError, ValueError):
    """A work store is missing, incomplete or from an incompatible rsprep version."""


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
