"""The bytes of an LMDB file that LMDB never writes, zeroed so that the file depends on its data alone
(docs/convert.md#determinism).

LMDB builds pages in reused buffers (or, with ``MDB_WRITEMAP``, in place in the file) and copies
their used parts word-aligned, so these bytes of a compacting copy hold leftovers of the building
process, which differ after a resume: the free space between a branch or leaf page's node pointers and
its nodes, the pad byte of a node of odd length, the tail of an overflow run past its value, and a
page header's unused ``mp_pad`` field. :func:`zero_gaps` zeroes them in a compacting copy, whose
pages are all in use (no free pages), so it can walk the file page by page.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

_P_BRANCH, _P_LEAF, _P_OVERFLOW, _P_LEAF2, _F_BIGDATA = 0x01, 0x02, 0x04, 0x20, 0x01
_HEADER = 16  # PAGEHDRSZ (64-bit): pgno (8), pad (2), flags (2), lower (2), upper (2) / pages (4)
_NODE = 8  # NODESIZE: lo, hi, flags, ksize
_META_PAGES = 2


def zero_gaps(path: Path, psize: int) -> int:
    """Zero the bytes of a compacting copy's pages that LMDB never writes (free space, node padding,
    overflow tails, header padding). Meta pages are left as they are. Returns the file size (the
    file is flushed to disk: this is the one ``fsync`` of a finished LMDB)."""
    import mmap

    with open(path, "r+b") as f:
        size = os.fstat(f.fileno()).st_size
        with mmap.mmap(f.fileno(), size) as m:
            pgno, pages, tails = _META_PAGES, size // psize, []
            while pgno < pages:
                base = pgno * psize
                _zero(m, base + 8, base + 10)  # mp_pad
                flags, lower, upper = struct.unpack_from("<HHH", m, base + 10)
                if flags & _P_OVERFLOW:
                    pgno += max(1, struct.unpack_from("<I", m, base + 12)[0])
                    continue
                if (
                    flags & (_P_BRANCH | _P_LEAF)
                    and not flags & _P_LEAF2
                    and _HEADER <= lower <= upper <= psize
                ):
                    _zero(m, base + lower, base + upper)
                    _zero_node_pads(m, base, lower, bool(flags & _P_LEAF), tails)
                pgno += 1
            for over, nbytes in tails:
                start = over * psize
                if start + _HEADER <= size:
                    run = max(1, struct.unpack_from("<I", m, start + 12)[0]) * psize
                    _zero(m, start + _HEADER + nbytes, min(start + run, size))
            m.flush()
        os.fsync(f.fileno())
    return size


def _zero(m, a: int, b: int) -> None:
    """Zero ``m[a:b]``, writing only where a byte is not zero (clean pages stay clean)."""
    if b > a and m[a:b].count(0) != b - a:
        m[a:b] = bytes(b - a)


def _zero_node_pads(m, base: int, lower: int, leaf: bool, tails: list) -> None:
    """Zero the pad byte of each odd-sized node of one page; note ``(overflow pgno, value size)`` of
    each value stored in an overflow run."""
    for i in range((lower - _HEADER) // 2):
        node = base + struct.unpack_from("<H", m, base + _HEADER + 2 * i)[0]
        lo, hi, nflags, ksize = struct.unpack_from("<HHHH", m, node)
        big = leaf and nflags & _F_BIGDATA
        if big:
            tails.append((struct.unpack_from("<Q", m, node + _NODE + ksize)[0], lo | hi << 16))
        data = (8 if big else lo | hi << 16) if leaf else 0
        end = node + _NODE + ksize + data
        if (end - node) % 2:
            m[end] = 0
