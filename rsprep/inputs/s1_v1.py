"""Sentinel-1 patches of BigEarthNet v1.0 (docs/reben.md#s1-from-bigearthnet-v10-patches).

A BigEarthNet-S1-v1.0 folder holds one folder per S1 patch, ``<s1_name>/<s1_name>_VV.tif`` and
``_VH.tif`` (120 × 120 float32 dB at 10 m, in the tile's UTM CRS), beside
``<s1_name>_labels_metadata.json``. Which v1 S1 patch partners a reBEN patch comes from the v1
alignment (:func:`s1_names`, by default ``rsprep.inputs.v1_align.align_patch_ids``). A v1 patch is
used as it is, never resampled, so it must lie exactly on its S2 patch's 10 m grid: same CRS, same
transform, same size (:func:`read_v1_patch`, else :class:`S1GridError` naming both georeferences).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from rsprep.errors import InputNotFoundError, RsprepError
from rsprep.inputs.s1 import FIX, BadS1Error

#: The tolerance (metres) of the comparison of a v1 patch's transform with the S2 patch's.
TOLERANCE_M = 1e-6


class S1GridError(RsprepError, ValueError):
    """A v1 S1 patch does not lie on its S2 patch's grid (another CRS, place, pixel size or shape)."""


@dataclass(frozen=True)
class Georef:
    """Where a patch lies: CRS (EPSG code or WKT), affine transform (a, b, c, d, e, f) and size."""

    crs: str
    transform: tuple[float, ...]
    width: int
    height: int

    def describe(self) -> str:
        a, _, c, _, e, f = self.transform
        left, top = c, f
        right, bottom = c + a * self.width, f + e * self.height
        return (
            f"{self.crs}, bounds ({left:.2f}, {bottom:.2f}, {right:.2f}, {top:.2f}), "
            f"{a:g} m pixels, {self.width} × {self.height} px"
        )

    def same_grid(self, other: Georef) -> bool:
        return (
            self.crs == other.crs
            and (self.width, self.height) == (other.width, other.height)
            and all(abs(p - q) <= TOLERANCE_M for p, q in zip(self.transform, other.transform, strict=True))
        )


def check_folder(v1_dir: str | Path) -> Path:
    """The v1 S1 folder, checked to exist and to hold at least one patch folder.

    Raises:
        InputNotFoundError: it does not exist, or holds no ``<name>/<name>_VV.tif``.
    """
    root = Path(v1_dir)
    if not root.is_dir():
        raise InputNotFoundError(f"BigEarthNet-S1-v1.0 folder {root} does not exist")
    with_patch = next((d for d in root.iterdir() if d.is_dir() and (d / f"{d.name}_VV.tif").is_file()), None)
    if with_patch is None:
        raise InputNotFoundError(
            f"{root} holds no BigEarthNet v1.0 S1 patch (<s1_name>/<s1_name>_VV.tif); pass the "
            "BigEarthNet-S1-v1.0 folder (the one that holds the patch folders)"
        )
    return root


def patch_files(v1_dir: Path, s1_name: str, pols: Sequence[str]) -> dict[str, Path]:
    """The files of v1 S1 patch ``s1_name``, by polarisation (they may not exist)."""
    return {p: v1_dir / s1_name / f"{s1_name}_{p}.tif" for p in pols}


def s1_names(
    patch_ids: Iterable[str], names: Mapping[str, str | None] | None = None
) -> dict[str, str | None]:
    """patch_id → the v1 S1 partner's name (None: no v1 counterpart), for ``patch_ids``.

    ``names`` (e.g. a hand-made mapping) is used when given; otherwise BigEarthNet v1.0's own tables
    decide (``rsprep.inputs.v1_align.align_patch_ids``, the optional extra ``reben``).
    """
    ids = list(patch_ids)
    if names is not None:
        return {p: names.get(p) for p in ids}
    from rsprep.inputs.v1_align import align_patch_ids

    table = align_patch_ids(ids, _v1_tables())
    got = dict(zip(table.column("patch_id").to_pylist(), table.column("s1_name").to_pylist(), strict=True))
    return {p: got.get(p) for p in ids}


@lru_cache(maxsize=1)
def _v1_tables():
    """BigEarthNet v1.0's tables, loaded once per process (a build aligns one store at a time)."""
    from rsprep.inputs.v1_tables import load_v1_tables

    return load_v1_tables()


def georef_of(ds) -> Georef:
    """The :class:`Georef` of an open rasterio dataset (CRS as ``EPSG:<code>`` when it has one)."""
    epsg = ds.crs.to_epsg() if ds.crs is not None else None
    crs = f"EPSG:{epsg}" if epsg else (ds.crs.to_wkt() if ds.crs is not None else "no CRS")
    return Georef(crs, tuple(float(v) for v in tuple(ds.transform)[:6]), ds.width, ds.height)


def read_v1_patch(files: Mapping[str, Path], expected: Georef, what: str) -> dict[str, np.ndarray]:
    """The arrays of one v1 S1 patch (polarisation → (h, w) float32 dB), checked against ``expected``.

    ``what`` names the S2 patch in messages (``S2 patch <patch_id> of store <name>``).

    Raises:
        BadS1Error: a file is missing, unreadable or truncated (the stage may skip the patch).
        S1GridError: a file lies on another grid than ``expected``, or is not float32.
    """
    import rasterio
    from rasterio._err import CPLE_BaseError

    out = {}
    for pol, path in files.items():
        if not path.is_file():
            raise BadS1Error(f"BigEarthNet v1.0 S1 file {path} (for {what}) does not exist; {FIX}")
        try:
            with rasterio.open(path) as ds:
                got = georef_of(ds)
                if not got.same_grid(expected):
                    raise S1GridError(
                        f"BigEarthNet v1.0 S1 file {path} does not lie on the grid of {what}: the file is "
                        f"on {got.describe()}, the S2 patch on {expected.describe()}; a v1 S1 patch is "
                        "used without resampling, so check the name mapping (s1_name) and the "
                        "--s1-v1 folder"
                    )
                if ds.dtypes[0] != "float32" or ds.count != 1:
                    raise S1GridError(
                        f"BigEarthNet v1.0 S1 file {path} holds {ds.count} band(s) of {ds.dtypes[0]}, "
                        "not one float32 dB band; pass the BigEarthNet-S1-v1.0 folder"
                    )
                out[pol] = ds.read(1)
        except (rasterio.errors.RasterioError, CPLE_BaseError) as exc:
            why = " ".join(str(exc).split())
            raise BadS1Error(
                f"BigEarthNet v1.0 S1 file {path} (for {what}) is unreadable ({why}); {FIX}"
            ) from exc
    return out
