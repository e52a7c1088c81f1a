"""Band files of the GeoTIFF layout from templates of GDAL's own bytes (docs/formats.md#geotiff-layout).

A band file that GDAL writes for the layout (:func:`profile`: one band, strips, little-endian classic
TIFF) is a header followed by its strips. The header depends on the group, band shape, dtype, CRS and
pixel size, plus two per-patch values: the upper-left corner (X, Y of the ModelTiepoint) and, for the
DEFLATE-compressed reference maps, the strips' offsets and byte counts. So a :class:`Template` is made
once per (group, shape, dtype, CRS, pixel size) and process: GDAL writes a probe file in ``/vsimem``
(S1: retyped as :mod:`rsprep.formats.tiff_long_counts` does), its tags are parsed (``tifffile``) to
find those values, and a second GDAL file with another corner and other pixels must come out of the
template byte for byte, else there is no template and GDAL writes every file of that kind. A file is
then a copy of the header with the values patched, and the strips: the pixels as they are
(uncompressed), or horizontally differenced (predictor 2) and compressed by the libdeflate that GDAL
itself runs (found in the process's own mappings), at the level that reproduces GDAL's probe strips.

What GDAL's bytes depend on besides these values is refused to the template, so GDAL writes that
file (:func:`gdal_bytes`): an uncompressed strip whose every value is 0 (GDAL skips writing it and
stores it, zeroed, at the end of the file — also for -0.0 in S1), a corner at (0, 0) (GDAL writes no
georeferencing for a default transform), a non-finite corner, another dtype or shape, a CRS that is
not a string; and at template time any tag outside :data:`TAGS` (GDAL_METADATA, a
ModelTransformation), BigTIFF, big-endian, more than one image, tiles, strips out of order.
"""

from __future__ import annotations

import ctypes
import io
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rsprep.errors import WriteError
from rsprep.formats.tiff_long_counts import widened

#: Tags a template may hold: baseline strip tags, predictor, GeoTIFF georeferencing, GDAL's nodata.
TAGS = frozenset(
    {256, 257, 258, 259, 262, 273, 277, 278, 279, 284, 317, 339, 33550, 33922, 34735, 34736, 34737, 42113}
)
TIEPOINT, STRIP_OFFSETS, STRIP_BYTE_COUNTS = 33922, 273, 279
NONE, DEFLATE = 1, 8
#: libdeflate levels tried, in order, to reproduce GDAL's strips (GDAL 3.10's libtiff uses 7).
LEVELS = (7, 6, 8, 9, 5, 4, 3, 2, 1, 10, 11, 12)
_FORMATS = {3: "H", 4: "I"}


def profile(group: str, array, crs, transform) -> dict:
    """The GTiff creation profile of one band file of ``group``."""
    from affine import Affine

    kw = {
        "driver": "GTiff",
        "width": array.shape[1],
        "height": array.shape[0],
        "count": 1,
        "dtype": array.dtype.name,
        "crs": crs,
        "transform": Affine(*transform),
    }
    if group in ("s2", "map"):
        kw["nodata"] = 0
    if group == "map":
        kw.update(compress="deflate", predictor=2)
    return kw


def gdal_bytes(group: str, array, crs, transform) -> bytes:
    """The bytes GDAL writes for one band file (in ``/vsimem``; S1 with StripByteCounts typed LONG)."""
    from rasterio.io import MemoryFile

    with MemoryFile() as mem:
        with mem.open(**profile(group, array, crs, transform)) as dst:
            dst.write(array, 1)
        data = mem.read()
    if group == "s1":
        data = widened(data, "GDAL's S1 file") or data
    return data


@dataclass(frozen=True)
class Template:
    """GDAL's header of one kind of band file and where its per-file values lie in it."""

    header: bytes
    dtype: np.dtype  # little-endian
    shape: tuple[int, int]
    rows: int  # rows per strip
    tiepoint: int  # offset of the corner's X, Y (two doubles)
    offsets: tuple[int, str]  # StripOffsets: offset in the header, struct format of all values
    counts: tuple[int, str]  # StripByteCounts, alike
    level: int | None = None  # libdeflate level of predictor-2 DEFLATE strips; None: uncompressed

    def render(self, array: np.ndarray, transform) -> list | None:
        """The file's bytes as buffers (header, strips), or None where GDAL's bytes would differ."""
        c, f = float(transform[2]), float(transform[5])
        if (c == 0 and f == 0) or not (math.isfinite(c) and math.isfinite(f)):
            return None
        if array.shape != self.shape or array.dtype.char != self.dtype.char:
            return None
        arr = np.ascontiguousarray(array, dtype=self.dtype)
        header = bytearray(self.header)
        struct.pack_into("<2d", header, self.tiepoint, c, f)
        if self.level is None:
            if _has_empty_strip(arr, self.rows):
                return None
            return [header, memoryview(arr).cast("B")]
        diff = arr.copy()
        np.subtract(arr[:, 1:], arr[:, :-1], out=diff[:, 1:])  # horizontal differencing, wrapping
        raw = memoryview(diff).cast("B")
        step = self.rows * arr.shape[1] * arr.itemsize
        strips = [_deflate(raw[i : i + step], self.level) for i in range(0, len(raw), step)]
        sizes = [len(s) for s in strips]
        starts = np.cumsum([len(header), *sizes[:-1]]).tolist()
        struct.pack_into(self.offsets[1], header, self.offsets[0], *starts)
        struct.pack_into(self.counts[1], header, self.counts[0], *sizes)
        return [header, *strips]


def _has_empty_strip(arr: np.ndarray, rows: int) -> bool:
    """Whether a strip holds only zeros (as numbers: -0.0 too), which GDAL stores out of order."""
    if np.count_nonzero(arr) == arr.size:
        return False
    flat, step = arr.reshape(-1), rows * arr.shape[1]
    return any(not flat[i : i + step].any() for i in range(0, flat.size, step))


_TEMPLATES: dict[tuple, Template | None] = {}


def band_buffers(group: str, array: np.ndarray, crs, transform) -> list:
    """The bytes of one band file as GDAL writes them, as buffers: from a template where one applies."""
    tpl = template(group, array, crs, transform)
    parts = tpl.render(array, transform) if tpl is not None else None
    return parts if parts is not None else [gdal_bytes(group, array, crs, transform)]


def template(group: str, array: np.ndarray, crs, transform) -> Template | None:
    """The template of ``array``'s kind of band file (made and proven once per process), or None."""
    key = (group, array.shape, array.dtype.char, crs, transform[0], transform[1], transform[3], transform[4])
    try:
        return _TEMPLATES[key]
    except KeyError:
        pass
    except TypeError:  # a CRS object: not hashable
        return None
    ok = isinstance(crs, str) and array.ndim == 2 and array.dtype.char in ("H", "f")  # uint16, float32
    tpl = _TEMPLATES[key] = (
        make_template(group, array.shape, array.dtype, crs, tuple(transform)) if ok else None
    )
    return tpl


def make_template(group: str, shape, dtype, crs: str, transform) -> Template | None:
    """GDAL's header for this kind of band file, checked against a second GDAL file; None if unsafe."""
    a, b, c, d, e, f = (float(v) for v in transform)
    if c == 0 and f == 0:
        c, f = 1200.0 * a, 1200.0 * e  # any other corner: it is patched per file
    dtype = np.dtype(np.dtype(dtype).name).newbyteorder("<")  # as GDAL stores it, whatever the input's
    probe = _probe(shape, dtype, 0)
    tpl = _parse(gdal_bytes(group, probe, crs, (a, b, c, d, e, f)), probe, c, f)
    if tpl is None:
        return None
    other = (a, b, c + 7 * shape[1] * a + 0.5, d, e, f + 3 * shape[0] * e - 0.25)
    check = _probe(shape, dtype, 1)
    parts = tpl.render(check, other)
    if parts is None or b"".join(parts) != gdal_bytes(group, check, crs, other):
        return None
    return tpl


def _probe(shape, dtype, seed: int) -> np.ndarray:
    """Pixels without an all-zero strip: runs of a few values (compressible) and noise in places."""
    rng = np.random.default_rng(seed)
    h, w = shape
    blocks = rng.integers(1, 60, (h // 5 + 1, w // 7 + 1))
    arr = blocks.repeat(5, 0).repeat(7, 1)[:h, :w]
    arr[::3, ::4] = rng.integers(1, 60000, arr[::3, ::4].shape)
    if np.dtype(dtype).kind == "f":
        return (arr.astype(np.float64) * -0.37 - 1.5).astype(dtype)
    return arr.astype(dtype)


def _parse(data: bytes, probe: np.ndarray, c: float, f: float) -> Template | None:
    """The template of GDAL's ``data`` written from ``probe`` at corner (c, f), or None."""
    import tifffile

    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            if tif.byteorder != "<" or tif.is_bigtiff or len(tif.pages) != 1:
                return None
            page = tif.pages[0]
            tags = {t.code: t for t in page.tags.values()}
            shape = (page.imagelength, page.imagewidth)
            fields = (page.compression, page.planarconfig, page.samplesperpixel, page.is_tiled)
            rows, starts, sizes = page.rowsperstrip, list(page.dataoffsets), list(page.databytecounts)
            dtype = page.dtype
    except (tifffile.TiffFileError, ValueError, IndexError, KeyError):
        return None
    if set(tags) - TAGS or fields[1:] != (1, 1, False) or shape != probe.shape or dtype != probe.dtype:
        return None
    tie, so, sc = tags.get(TIEPOINT), tags.get(STRIP_OFFSETS), tags.get(STRIP_BYTE_COUNTS)
    if tie is None or so is None or sc is None or tuple(tie.value) != (0.0, 0.0, 0.0, c, f, 0.0):
        return None
    head = starts[0]
    contiguous = all(s == head + sum(sizes[:i]) for i, s in enumerate(starts))
    if not contiguous or head + sum(sizes) != len(data) or tie.valueoffset + 48 > head:
        return None
    if so.dtype not in _FORMATS or sc.dtype not in _FORMATS:
        return None
    n = len(starts)
    tpl = Template(
        data[:head],
        probe.dtype.newbyteorder("<"),
        probe.shape,
        rows,
        tie.valueoffset + 24,
        (so.valueoffset, f"<{n}{_FORMATS[so.dtype]}"),
        (sc.valueoffset, f"<{n}{_FORMATS[sc.dtype]}"),
    )
    if fields[0] == NONE and probe.dtype.kind in "uf":
        return tpl if data[head:] == np.ascontiguousarray(probe, tpl.dtype).tobytes() else None
    if fields[0] != DEFLATE or tags.get(317) is None or tags[317].value != 2 or probe.dtype.kind != "u":
        return None
    if _libdeflate() is None:
        return None
    for level in LEVELS:
        candidate = Template(*(getattr(tpl, k) for k in tpl.__dataclass_fields__ if k != "level"), level)
        parts = candidate.render(probe, (0, 0, c, 0, 0, f))
        if parts is not None and b"".join(parts) == data:
            return candidate
    return None


# --------------------------------------------------------------------------------------------
# GDAL's libdeflate
# --------------------------------------------------------------------------------------------
_LIB: list = []  # [library or None], found once per process
_COMPRESSORS: dict[int, int] = {}


def _libdeflate():
    """The libdeflate GDAL runs in this process (its mapped file, after rasterio is imported), or None."""
    if _LIB:
        return _LIB[0]
    import rasterio  # noqa: F401  (loads GDAL and the libraries it links)

    lib = None
    try:
        paths = {line.split()[-1] for line in Path("/proc/self/maps").read_text().splitlines()}
    except OSError:
        paths = set()
    for path in sorted(p for p in paths if "libdeflate" in os.path.basename(p)):
        try:
            lib = ctypes.CDLL(path)
            lib.libdeflate_alloc_compressor.restype = ctypes.c_void_p
            lib.libdeflate_alloc_compressor.argtypes = [ctypes.c_int]
            lib.libdeflate_zlib_compress_bound.restype = ctypes.c_size_t
            lib.libdeflate_zlib_compress_bound.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
            lib.libdeflate_zlib_compress.restype = ctypes.c_size_t
            lib.libdeflate_zlib_compress.argtypes = [ctypes.c_void_p] + [ctypes.c_void_p, ctypes.c_size_t] * 2
            break
        except (OSError, AttributeError):
            lib = None
    _LIB.append(lib)
    return lib


def _deflate(raw: memoryview, level: int) -> bytes:
    """``raw`` compressed as a zlib stream by GDAL's libdeflate at ``level``."""
    lib = _libdeflate()
    comp = _COMPRESSORS.get(level)
    if comp is None:
        comp = _COMPRESSORS[level] = lib.libdeflate_alloc_compressor(level)
        if not comp:
            raise MemoryError(f"libdeflate could not allocate a level-{level} compressor")
    src = (
        (ctypes.c_char * len(raw)).from_buffer_copy(raw)
        if raw.readonly
        else (ctypes.c_char * len(raw)).from_buffer(raw)
    )
    out = ctypes.create_string_buffer(lib.libdeflate_zlib_compress_bound(comp, len(raw)))
    n = lib.libdeflate_zlib_compress(comp, src, len(raw), out, len(out))
    if n == 0:
        raise MemoryError("libdeflate's output exceeded its own bound")
    return out.raw[:n]


# --------------------------------------------------------------------------------------------
# Writing a file
# --------------------------------------------------------------------------------------------
def write_file(path: str | Path, parts: list, name: str | Path) -> None:
    """Create ``path`` holding ``parts`` (one ``open``, ``writev`` until all is written, ``close``).

    Raises:
        WriteError: naming ``name`` (the file's place in the output), on a failed or short write (a
            full disk, a file-size limit).
    """
    views = [memoryview(p).cast("B") for p in parts]
    total = sum(len(v) for v in views)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            done = 0
            while views:
                n = os.writev(fd, views)
                if n <= 0:
                    raise OSError(28, f"only {done} of {total} bytes could be written")
                done += n
                while views and n >= len(views[0]):
                    n -= len(views.pop(0))
                if n:
                    views[0] = views[0][n:]
        finally:
            os.close(fd)
    except OSError as exc:
        raise WriteError(
            exc.errno, f"writing {name} failed ({exc.strerror or exc}: a full disk or a file-size limit)"
        ) from exc
