"""StripByteCounts as LONG, the way the official reBEN S1 GeoTIFFs store it (docs/formats.md#geotiff-layout).

The S1 files of the reBEN distribution are BigEarthNet v1.0's own files, written by an older libtiff
that always typed StripByteCounts LONG. GDAL's libtiff (4.1 and later) types it SHORT when every
strip fits in 65,535 bytes, and no GDAL creation option changes that. For a 120 × 120 float32 patch
(8 strips of 17 rows) the two files differ by 16 bytes: the array grows from 8 × 2 to 8 × 4 bytes,
so its IFD entry changes type (SHORT → LONG) and every value and strip stored after it moves 16
bytes on, with the offsets that point at them.

:func:`widen_strip_byte_counts` rewrites a GDAL-written file that way: the same IFD entries in the
same order, the values and strips in the same order, only the one array widened and the offsets
after it moved. Files it cannot rewrite exactly (BigTIFF, big-endian, more than one IFD, tiles, tags
that hold other file offsets) are refused, never guessed at.
"""

from __future__ import annotations

import struct
from pathlib import Path

from rsprep.errors import WriteError

SHORT, LONG = 3, 4
STRIP_OFFSETS, STRIP_BYTE_COUNTS = 273, 279
#: Tags whose values are file offsets other than StripOffsets (SubIFDs, Exif, GPS, Interop, tiles,
#: FreeOffsets, JPEG tables): their targets would move too, so such files are refused.
_OFFSET_TAGS = {288, 324, 325, 330, 34665, 34853, 40965, 513}
_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 16: 8, 17: 8, 18: 8}


def widen_strip_byte_counts(path: Path) -> bool:
    """Rewrite the classic TIFF at ``path`` with its StripByteCounts typed LONG; return whether it changed.

    A file whose StripByteCounts is LONG already is left as it is.

    Raises:
        WriteError: the file is not a layout this function rewrites exactly (named in the message).
    """
    data = path.read_bytes()
    new = widened(data, str(path))
    if new is None:
        return False
    path.write_bytes(new)
    return True


def widened(data: bytes, name: str = "TIFF") -> bytes | None:
    """The bytes of ``data`` with StripByteCounts typed LONG, or None when it is LONG already."""
    if data[:4] != b"II*\x00":
        raise _refuse(name, "not a little-endian classic TIFF")
    ifd = _u32(data, 4)
    count = _u16(data, ifd)
    end = ifd + 2 + 12 * count
    if _u32(data, end) != 0:
        raise _refuse(name, "more than one image (IFD)")
    entries = [(ifd + 2 + 12 * k, *struct.unpack_from("<HHI", data, ifd + 2 + 12 * k)) for k in range(count)]
    tags = {tag: (pos, typ, n) for pos, tag, typ, n in entries}
    if STRIP_BYTE_COUNTS not in tags or STRIP_OFFSETS not in tags or _OFFSET_TAGS & set(tags):
        raise _refuse(name, "not a stripped TIFF without other offset tags")
    pos, typ, n = tags[STRIP_BYTE_COUNTS]
    if typ == LONG:
        return None
    so_pos, so_typ, so_n = tags[STRIP_OFFSETS]
    if typ != SHORT or so_typ != LONG or n < 3 or so_n != n:
        raise _refuse(name, f"StripByteCounts of type {typ} × {n}, StripOffsets of type {so_typ} × {so_n}")
    at = _u32(data, pos + 8)  # the SHORT array (n >= 3: stored outside the IFD)
    if at < end:
        raise _refuse(name, "values stored before the IFD")
    old, grow = 2 * n, 2 * n
    counts = struct.unpack_from(f"<{n}H", data, at)
    out = bytearray(data[:at] + struct.pack(f"<{n}I", *counts) + data[at + old :])

    def moved(offset: int) -> int:
        return offset + grow if offset >= at + old else offset

    for epos, tag, etyp, en in entries:
        size = _SIZES.get(etyp)
        if size is None:
            raise _refuse(name, f"tag {tag} has the unknown type {etyp}")
        if tag == STRIP_BYTE_COUNTS:
            struct.pack_into("<H", out, epos + 2, LONG)
        elif size * en > 4:  # the value lives elsewhere: its offset moves with it
            struct.pack_into("<I", out, epos + 8, moved(_u32(data, epos + 8)))
    offsets_at = moved(_u32(data, so_pos + 8))
    starts = struct.unpack_from(f"<{n}I", out, offsets_at)
    if min(starts) < at + old:
        raise _refuse(name, "a strip stored before its StripByteCounts")
    struct.pack_into(f"<{n}I", out, offsets_at, *(s + grow for s in starts))
    return bytes(out)


def _u16(data: bytes, at: int) -> int:
    return struct.unpack_from("<H", data, at)[0]


def _u32(data: bytes, at: int) -> int:
    return struct.unpack_from("<I", data, at)[0]


def _refuse(name: str, why: str) -> WriteError:
    return WriteError(
        22, f"{name}: cannot retype StripByteCounts as LONG ({why}); this is a bug in rsprep's S1 writer"
    )
