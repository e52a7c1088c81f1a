"""The band files of a Sentinel-2 product: where the metadata puts them, what is on disk, reading one.

A band file is listed in the product metadata (``IMAGE_FILE``), must exist and must have the size
that ``MTD_TL.xml`` declares for its resolution, because GDAL silently returns zeros for a missing
tile file (docs/inputs.md#sentinel-2). Files are opened through GDAL (``/vsizip/`` inside zips).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rsprep.core.bands import SCL, SCL_RESOLUTION, SPECTRAL_BANDS, band
from rsprep.errors import InvalidProductError
from rsprep.inputs.safe_archive import SafeArchive, gdal_path
from rsprep.inputs.safe_xml import Geocoding


@dataclass(frozen=True)
class BandFile:
    """One band file of the product and what was found on disk."""

    band: str  # B01 ... B12, B8A, or SCL
    resolution: int
    path: str  # relative to the SAFE root, with extension
    listed: bool  # the metadata lists this file
    exists: bool
    declared_shape: tuple[int, int] | None  # (rows, cols) from MTD_TL.xml
    actual_shape: tuple[int, int] | None = None
    error: str | None = None  # why the file could not be opened, if it exists but is unreadable

    @property
    def ok(self) -> bool:
        return (
            self.listed
            and self.exists
            and self.error is None
            and self.actual_shape is not None
            and self.actual_shape == self.declared_shape
        )

    @property
    def problem(self) -> str | None:
        """One line describing what is wrong with this file, or None."""
        where = f"{self.band} ({self.resolution} m)"
        if not self.listed:
            return f"{where}: not listed in the product metadata"
        if not self.exists:
            return f"{where}: file {self.path} is missing"
        if self.error is not None:
            return f"{where}: file {self.path} cannot be read: {self.error}"
        if self.declared_shape is None:
            return f"{where}: MTD_TL.xml declares no size for {self.resolution} m"
        if self.actual_shape != self.declared_shape:
            ar, ac = self.actual_shape or (0, 0)
            dr, dc = self.declared_shape
            return f"{where}: file {self.path} is {ac} × {ar} px but MTD_TL.xml declares {dc} × {dr} px"
        return None


def band_files(
    source: SafeArchive,
    root: str,
    level: str,
    image_files: Sequence[str],
    geocoding: dict[int, Geocoding],
    tile: str,
    *,
    check_files: bool,
) -> list[BandFile]:
    """Every band file a product of ``level`` has, where the metadata lists it, and what is on disk.

    ``check_files`` opens each existing file to read its size; problems are recorded, not raised.
    """
    wanted: list[tuple[str, int]] = [(b, band(b).resolution) for b in SPECTRAL_BANDS]
    if level == "L2A":
        wanted.append((SCL, SCL_RESOLUTION))
    out = []
    for name, res in wanted:
        if level == "L2A":
            suffix = f"_{name}_{res}m"
        else:  # L1C: IMG_DATA/T33UUP_20170613T101031_B01, all bands in one folder
            suffix = f"_{name}"
        listed = [f for f in image_files if f.endswith(suffix)]
        declared = geocoding.get(res)
        declared_shape = (declared.nrows, declared.ncols) if declared else None
        if listed:
            rel = listed[0] + ".jp2"
        else:  # report where the file would be, so the user knows what to look for
            rel = f"GRANULE/*/IMG_DATA/R{res}m/T{tile}_*{suffix}.jp2"
        exists = bool(listed) and source.exists(root, rel)
        actual, error = None, None
        if exists and check_files:
            actual, error = raster_shape(gdal_path(source.path, root, rel))
        out.append(
            BandFile(
                band=name,
                resolution=res,
                path=rel,
                listed=bool(listed),
                exists=exists,
                declared_shape=declared_shape,
                actual_shape=actual,
                error=error,
            )
        )
    return out


def raster_shape(gdal_path: str) -> tuple[tuple[int, int] | None, str | None]:
    import rasterio
    from rasterio.errors import RasterioError

    try:
        with rasterio.open(gdal_path) as ds:
            return (ds.height, ds.width), None
    except (RasterioError, OSError) as exc:
        return None, str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__


def read_band(path: str, size: int, expected_dtype: str) -> np.ndarray:
    """The top-left ``size`` x ``size`` pixels of the band file at GDAL path ``path``, decoded whole.

    Raises:
        InvalidProductError: the file's data type is not ``expected_dtype``, or it cannot be decoded.
    """
    import rasterio
    import rasterio.errors
    from rasterio.windows import Window

    try:
        with rasterio.open(path) as ds:
            if ds.dtypes[0] != expected_dtype:
                raise InvalidProductError(
                    f"{path}: data type {ds.dtypes[0]}, expected {expected_dtype} "
                    "for a Sentinel-2 L2A band file"
                )
            return ds.read(1, window=Window(0, 0, size, size))
    except rasterio.errors.RasterioIOError as exc:
        raise InvalidProductError(f"{path} cannot be decoded ({exc}); download the product again") from exc
