"""Chunk inventories of the work store's Zarr groups, and arrays that refuse undecodable chunks
(docs/workstore.md, "Integrity").

An inventory is ``{array: {chunk key: bytes}}``: a directory listing, no chunk is read, so it costs
one ``stat`` per chunk file. :class:`CheckedGroup` wraps a read-only zarr group; reading one of its
arrays turns a codec's error (Blosc's ``RuntimeError``, a cut chunk's ``ValueError``) into the error
that the owning store builds for the first chunk that cannot be decoded.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

#: What reading a damaged chunk raises (Blosc/zstd: RuntimeError; a cut chunk: ValueError; I/O).
CHUNK_ERRORS = (RuntimeError, ValueError, OSError)


def chunk_listing(array: Path) -> dict[str, int]:
    """``{chunk key: bytes}`` of one Zarr array folder (keys relative to it, ``zarr.json`` left out)."""
    out: dict[str, int] = {}
    folders = [(str(array), "")]
    while folders:
        folder, rel = folders.pop()
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            continue  # a missing array: all its chunks are missing
        for e in entries:
            key = rel + e.name
            if e.is_dir(follow_symlinks=False):
                folders.append((e.path, key + "/"))
            elif key != "zarr.json":
                out[key] = e.stat(follow_symlinks=False).st_size
    return out


def group_inventory(group: Path) -> dict[str, dict[str, int]]:
    """The chunk listing of every array of a Zarr group folder."""
    arrays = [p for p in sorted(group.iterdir()) if p.is_dir() and (p / "zarr.json").is_file()]
    return {p.name: chunk_listing(p) for p in arrays}


def mismatch(want: dict[str, int], have: dict[str, int], stage: str) -> tuple[str, str, int] | None:
    """The first chunk whose listing differs from the inventory: (key, what is wrong, how many more)."""
    bad = sorted(k for k in want.keys() | have.keys() if want.get(k) != have.get(k))
    if not bad:
        return None
    k = bad[0]
    if k not in have:
        what = "is missing"
    elif k not in want:
        what = f"is not in the inventory that the {stage} stage recorded"
    else:
        what = f"holds {have[k]} bytes, not the {want[k]} that the {stage} stage wrote"
    return k, what, len(bad) - 1


def row_chunk_key(k: int, ndim: int) -> str:
    """The default (``/``-separated) key of chunk ``k`` of an array chunked along the patch axis only."""
    return "/".join(["c", str(k), *("0" * (ndim - 1))])


class CheckedGroup:
    """A read-only zarr group of a tile store whose arrays are :class:`CheckedArray`."""

    def __init__(self, group: Any, damaged: Callable[[str, str, str], Exception], name: str) -> None:
        self._group, self._damaged, self.name = group, damaged, name

    def __getitem__(self, array: str) -> CheckedArray:
        return CheckedArray(self._group[array], self._damaged, self.name, array)

    def __contains__(self, array: str) -> bool:
        return array in self._group

    def __iter__(self) -> Iterator[str]:
        return iter(self._group)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._group, attr)


class CheckedArray:
    """A zarr array whose reads raise the store's error for a chunk that cannot be decoded."""

    def __init__(self, array: Any, damaged: Callable[[str, str, str], Exception], group: str, name: str):
        self._array, self._damaged, self._group, self._name = array, damaged, group, name

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._array, attr)

    def __getitem__(self, selection: Any) -> Any:
        return self._read(self._array.__getitem__, selection)

    def get_orthogonal_selection(self, selection: Any) -> Any:
        return self._read(self._array.get_orthogonal_selection, selection)

    def _read(self, read: Callable[[Any], Any], selection: Any) -> Any:
        try:
            return read(selection)
        except CHUNK_ERRORS as exc:
            bad = self._first_bad_chunk()
            if bad is None:
                raise  # not a damaged chunk: a caller's error
            k, cause = bad
            what = f"cannot be decoded ({type(cause).__name__}: {cause})"
            raise self._damaged(self._group, self._name, row_chunk_key(k, self._array.ndim), what) from exc

    def _first_bad_chunk(self) -> tuple[int, Exception] | None:
        """The first chunk along the patch axis that fails to read, and its error (error path only)."""
        per, n = self._array.chunks[0], self._array.shape[0]
        for k in range(-(-n // per)):
            try:
                self._array[k * per : (k + 1) * per]
            except CHUNK_ERRORS as exc:
                return k, exc
        return None
