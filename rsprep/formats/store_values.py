"""Work-store values for the LMDB writer, read in threads of the writing process (docs/convert.md).

A work store keeps each array in row chunks (a row of 91 patches per chunk, Blosc-LZ4); an LMDB value
is one patch's bands side by side, serialised as safetensors. A *piece* is the values of one write unit
that lie in one chunk row of one store: each band's chunk is read with one ``read`` and decompressed
(both release the GIL, so reader threads run in parallel beside the writer) and every patch's band is
copied once, to its offset in one buffer that holds the piece's values back to back. The header of a
value is the same for every value of a group, so the buffer holds byte for byte what
``safetensors.numpy.save`` writes. Nothing is pickled or sent between processes.

A missing chunk file is the fill value (Zarr does not write all-fill chunks) unless the store's
manifest lists it, and a chunk that cannot be decoded is refused naming store, array, chunk and patches
(the work store's integrity rules, docs/workstore.md).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from rsprep.core.values import GROUP_BANDS, GROUP_DTYPES, MAP_BAND
from rsprep.store.chunks import row_chunk_key
from rsprep.store.workstore import INVENTORY, REFERENCE_ARRAYS, REFERENCE_MAP, S1_ARRAYS, S2_ARRAYS, TileStore

#: group -> (Zarr group of the work store, {value band: array name})
ARRAYS = {
    "s2": (S2_ARRAYS, {b: b for b in GROUP_BANDS["s2"]}),
    "s1": (S1_ARRAYS, {b: b for b in GROUP_BANDS["s1"]}),
    "map": (REFERENCE_ARRAYS, {MAP_BAND: REFERENCE_MAP}),
}


@dataclass(frozen=True)
class ValueLayout:
    """Where each band of one safetensors value lies: the header, then the bands at fixed offsets."""

    header: bytes
    size: int
    offsets: dict[str, int]  # band -> first byte of its data in the value
    shapes: dict[str, tuple[int, ...]]
    dtype: np.dtype


@cache
def value_layout(group: str, shapes: tuple[tuple[str, tuple[int, ...]], ...]) -> ValueLayout:
    """The layout ``safetensors.numpy.save`` gives a value of ``group`` with these band shapes."""
    from safetensors.numpy import save

    dtype = np.dtype(GROUP_DTYPES[group]).newbyteorder("<")
    blob = save({b: np.zeros(s, dtype) for b, s in shapes})
    n = int.from_bytes(blob[:8], "little")
    meta = json.loads(blob[8 : 8 + n])
    offsets = {b: 8 + n + meta[b]["data_offsets"][0] for b, _ in shapes}
    return ValueLayout(blob[: 8 + n], len(blob), offsets, dict(shapes), dtype)


class RowChunks:
    """One (N, …) work-store array chunked along the patch axis only, read chunk by chunk.

    Codecs ``bytes`` (little-endian) and optionally Blosc, as the work store writes every array;
    another layout is read through zarr-python (:class:`rsprep.store.chunks.CheckedArray`).
    """

    def __init__(self, store: TileStore, group: str, array: str) -> None:
        self.store, self.group, self.array = store, group, array
        self.path = store.path / group / array
        meta = json.loads((self.path / "zarr.json").read_text())
        self.shape = tuple(meta["shape"])
        chunk = meta["chunk_grid"]["configuration"]["chunk_shape"]
        self.per = int(chunk[0])
        self.dtype = np.dtype(meta["data_type"]).newbyteorder("<")
        fill = meta.get("fill_value")
        self.fill = np.nan if fill == "NaN" else fill
        names = [c["name"] for c in meta["codecs"]]
        endian = meta["codecs"][0].get("configuration", {}).get("endian", "little")
        sep = meta.get("chunk_key_encoding", {}).get("configuration", {}).get("separator", "/")
        self.direct = (
            list(chunk[1:]) == list(self.shape[1:])
            and names in (["bytes"], ["bytes", "blosc"])
            and endian == "little"
            and sep == "/"
            and meta.get("chunk_key_encoding", {}).get("name", "default") == "default"
        )
        self.blosc = names[1:] == ["blosc"]
        self.listed = store.manifest.get(INVENTORY, {}).get(group, {}).get(array)

    def read(self, k: int) -> np.ndarray:
        """Chunk ``k`` (rows ``k * per`` …) as an array of its rows (the last chunk may be shorter)."""
        rows = min(self.per, self.shape[0] - k * self.per)
        if not self.direct:
            return np.asarray(self.store.zarr(self.group)[self.array][k * self.per : k * self.per + rows])
        key = row_chunk_key(k, len(self.shape))
        out = np.empty((self.per, *self.shape[1:]), self.dtype)
        try:
            with open(self.path / key, "rb", buffering=0) as f:
                raw = f.read()
        except FileNotFoundError:
            if self.listed is not None and key in self.listed:
                raise self.store.damaged(self.group, self.array, key, "is missing") from None
            out.fill(self.fill)
            return out[:rows]
        try:
            if self.blosc:
                from numcodecs import blosc

                blosc.decompress(raw, out)
            elif len(raw) == out.nbytes:
                out.view(np.uint8).reshape(-1)[:] = np.frombuffer(raw, np.uint8)
            else:
                raise ValueError(f"{len(raw)} bytes, not {out.nbytes}")
        except (RuntimeError, ValueError, TypeError) as exc:
            what = f"cannot be decoded ({type(exc).__name__}: {exc})"
            raise self.store.damaged(self.group, self.array, key, what) from exc
        return out[:rows]


class StoreValues:
    """Reads pieces of values from the stores of one work store (one instance, shared by the threads)."""

    def __init__(self, work: str | Path) -> None:
        from rsprep.store.workstore import find_stores

        self.stores = {s.name: s for s in find_stores(work)}
        self._arrays: dict[tuple[str, str, str], RowChunks] = {}

    def _array(self, store: str, group: str, array: str) -> RowChunks:
        key = (store, group, array)
        arr = self._arrays.get(key)
        if arr is None:  # a race only opens one twice
            arr = self._arrays[key] = RowChunks(self.stores[store], group, array)
        return arr

    def pieces(self, group: str, items: list) -> list[tuple[str, list]]:
        """The items of one unit split by store and chunk row: ``(store, items)`` in row order."""
        gname, bands = ARRAYS[group]
        out: dict[tuple[str, int], list] = defaultdict(list)
        for it in items:
            per = self._array(it.store, gname, next(iter(bands.values()))).per
            out[(it.store, it.row // per)].append(it)
        return [(store, sorted(out[(store, k)], key=lambda it: it.row)) for store, k in sorted(out)]

    def read(self, group: str, store: str, items: list) -> tuple[list[bytes], np.ndarray]:
        """The keys and values of one piece: an ``(n, value size)`` uint8 array, row i = item i's value."""
        gname, bands = ARRAYS[group]
        arrays = {b: self._array(store, gname, a) for b, a in bands.items()}
        layout = value_layout(group, tuple((b, arrays[b].shape[1:]) for b in bands))
        rows = np.array([it.row for it in items])
        buf = np.empty((len(items), layout.size), np.uint8)
        buf[:, : len(layout.header)] = np.frombuffer(layout.header, np.uint8)
        for b, arr in arrays.items():
            at = layout.offsets[b]
            nbytes = int(np.prod(layout.shapes[b])) * layout.dtype.itemsize
            dest = buf[:, at : at + nbytes].view(layout.dtype).reshape(len(items), *layout.shapes[b])
            for k in np.unique(rows // arr.per):
                chunk, first = arr.read(int(k)), int(k) * arr.per
                for j in np.flatnonzero(rows // arr.per == k):
                    dest[j] = chunk[rows[j] - first]  # one copy, to the value's place
        return [it.key.encode() for it in items], buf
