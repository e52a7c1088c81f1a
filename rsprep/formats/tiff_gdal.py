"""The GeoTIFF layout written through GDAL, one ``rasterio.open`` per band file: the writer before
templates (:mod:`rsprep.formats.tiff_template`), kept as the reference that the tests compare the
layout's writer with, byte for byte (docs/formats.md#geotiff-layout)."""

from __future__ import annotations

from pathlib import Path

from rsprep.errors import WriteError
from rsprep.formats.geotiff import band_files, patch_dir
from rsprep.formats.tiff_long_counts import widen_strip_byte_counts
from rsprep.formats.tiff_template import profile
from rsprep.store.atomic import building


def write_patch_gdal(root: Path, group: str, key: str, values: dict) -> None:
    """Write one patch folder through GDAL per file (the writer before templates; the reference that
    tests compare :func:`write_patch` with): a temporary sibling, then a rename, under its lock."""
    import rasterio

    folder = root / patch_dir(group, key)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with building(folder) as tmp:
        for name, rel in band_files(group, key).items():
            arr = values[name]
            with rasterio.open(
                tmp / rel.name, "w", **profile(group, arr, values["_crs"], values["_transform"][name])
            ) as dst:
                dst.write(arr, 1)
            check_written(tmp / rel.name, folder / rel.name)
            if group == "s1":  # typed as the official (v1) S1 files are; checked again after
                widen_strip_byte_counts(tmp / rel.name)
                check_written(tmp / rel.name, folder / rel.name)


def check_written(path: Path, name: Path) -> None:
    """Raise :class:`WriteError` unless ``path`` holds every strip its header declares.

    GDAL reports a failed write (a full disk, a file-size limit) only in its log and leaves a short
    file; the header (``tifffile``, no decoding) tells the strips' extent, which must fit in the file.
    """
    import tifffile

    try:
        size = path.stat().st_size
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            ends = [o + n for o, n in zip(page.dataoffsets, page.databytecounts, strict=True)]
        complete = bool(ends) and all(n > 0 for n in page.databytecounts) and max(ends) <= size
    except (OSError, ValueError, tifffile.TiffFileError, IndexError):
        complete = False
    if not complete:
        raise WriteError(
            27,  # EFBIG / ENOSPC alike: the file is short
            f"writing {name} failed (GDAL wrote a short or unreadable file: a full disk or a file-size "
            "limit)",
        )
