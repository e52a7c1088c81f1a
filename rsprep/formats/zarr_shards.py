"""The byte level of rsprep's Zarr image arrays: one chunk per patch inside shards along the patch axis,
the shard index at the end (docs/formats.md#zarr).

- :class:`ShardedPatchArray` reads one patch with one ``pread`` (the readers' fast path);
- :class:`ShardEncoder` / :class:`ShardWriter` write a shard file the way zarr-python's sharding codec
  (zarr 3.1) writes it, byte for byte, without zarr's event loop and codec pipeline: inner chunks
  in order (the Morton order of a ``(k, 1, 1)`` chunk grid is the row order), each the chunk's
  little-endian bytes, Blosc-compressed with the array's codec configuration if it has one; a chunk
  that equals the fill value is not written (``write_empty_chunks=False``, zarr's default, with
  zarr's comparison: NaN equals NaN, a float fill of 0 is compared bit for bit); then the index
  (offset and length per chunk, ``uint64`` little-endian, ``2**64 - 1`` for an absent chunk) and its
  CRC-32C; a shard without any chunk is no file at all. tests/test_convert_zarr_bytes.py compares
  both against zarr-python;
- :class:`ShardFile` reads rows of one shard back (the ``s2_stacked`` tasks read the native bands).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: The index entry of a chunk that is not in the shard.
EMPTY = 0xFFFFFFFFFFFFFFFF


@dataclass(frozen=True)
class ShardLayout:
    """What the sharded layout of an (N, …) array fixes: shapes, dtype, fill and inner codec."""

    shape: tuple[int, ...]
    per_shard: int  # patches (rows) per shard
    inner: tuple[int, ...]  # the shape of one patch (one inner chunk without its leading 1)
    dtype: np.dtype
    fill: float | int
    blosc: dict | None  # the Blosc codec's configuration, None for raw bytes

    @property
    def suffix(self) -> str:
        """The chunk key below ``c/<shard>`` (``0/0`` for (N, h, w), ``0/0/0`` for (N, b, h, w))."""
        return "/".join("0" for _ in self.inner)


def parse_layout(meta: dict | None) -> ShardLayout | None:
    """The layout of an array's ``zarr.json`` as rsprep writes it, or None for any other layout."""
    if not meta or len(meta.get("codecs", [])) != 1 or meta["codecs"][0]["name"] != "sharding_indexed":
        return None
    cfg = meta["codecs"][0]["configuration"]
    shard = meta["chunk_grid"]["configuration"]["chunk_shape"]
    inner = cfg["chunk_shape"]
    names = [c["name"] for c in cfg["codecs"]]
    index_names = [c["name"] for c in cfg["index_codecs"]]
    if (
        inner[0] != 1
        or list(inner[1:]) != list(shard[1:])
        or list(shard[1:]) != list(meta["shape"][1:])
        or cfg.get("index_location", "end") != "end"
        or names[0] != "bytes"
        or cfg["codecs"][0].get("configuration", {}).get("endian", "little") != "little"
        or names[1:] not in ([], ["blosc"])
        or index_names != ["bytes", "crc32c"]
        or meta.get("chunk_key_encoding", {}).get("name", "default") != "default"
        or meta.get("chunk_key_encoding", {}).get("configuration", {}).get("separator", "/") != "/"
    ):
        return None
    blosc = cfg["codecs"][1]["configuration"] if names[1:] == ["blosc"] else None
    fill = meta.get("fill_value")
    fill = np.nan if fill == "NaN" else fill
    dtype = np.dtype(meta["data_type"]).newbyteorder("<")
    return ShardLayout(tuple(meta["shape"]), int(shard[0]), tuple(inner[1:]), dtype, fill, blosc)


def read_layout(array: Path) -> ShardLayout:
    """The layout of the array folder ``array``; raises ValueError for a layout rsprep does not write."""
    layout = parse_layout(json.loads((array / "zarr.json").read_text()))
    if layout is None:
        raise ValueError(f"{array} is not a sharded array with one chunk per patch")
    return layout


def shard_path(array: Path, layout: ShardLayout, s: int) -> Path:
    return array / "c" / str(s) / layout.suffix


class ShardedPatchArray:
    """Random access to one patch of an (N, …) array stored as rsprep writes it.

    zarr-python answers each ``arr[i]`` through its event loop (~1 ms); here the shard indexes are read
    once and cached, and a chunk is one ``pread`` plus one Blosc decode into the output array.
    :meth:`open` returns None for any other layout, and the caller falls back to zarr-python.
    """

    def __init__(self, path: Path, shape, per_shard: int, inner: tuple, dtype, fill, codec) -> None:
        self.path, self.shape, self.per_shard, self.inner = path, tuple(shape), per_shard, inner
        self.dtype, self.fill, self.codec = dtype, fill, codec
        self._fds: dict[int, int] = {}
        self._indexes: dict[int, list[list[int]]] = {}
        self._pid = os.getpid()
        self._suffix = "/".join("0" for _ in inner)

    @classmethod
    def open(cls, path: Path, meta: dict | None) -> ShardedPatchArray | None:
        layout = parse_layout(meta)
        if layout is None:
            return None
        codec = None
        if layout.blosc is not None:
            from numcodecs import blosc

            # the Blosc header names the compressor and the sizes; Blosc runs without its thread pool
            # (zarr sets numcodecs.blosc.use_threads = False when it is imported)
            codec = blosc.decompress
        return cls(path, layout.shape, layout.per_shard, layout.inner, layout.dtype, layout.fill, codec)

    def _fd(self, s: int) -> int | None:
        if self._pid != os.getpid():
            self._fds, self._indexes, self._pid = {}, {}, os.getpid()
        fd = self._fds.get(s)
        if fd is None:
            try:
                fd = os.open(self.path / "c" / str(s) / self._suffix, os.O_RDONLY)
            except FileNotFoundError:
                return None
            self._fds[s] = fd
            size = os.fstat(fd).st_size
            n = self.per_shard * 16
            raw = os.pread(fd, n + 4, size - n - 4)
            self._indexes[s] = np.frombuffer(raw[:n], dtype="<u8").reshape(-1, 2).tolist()
        return fd

    def __getitem__(self, i: int) -> np.ndarray:
        i = int(i)
        if not 0 <= i < self.shape[0]:
            raise IndexError(f"row {i} is outside {self.path} ({self.shape[0]} rows)")
        s, j = divmod(i, self.per_shard)
        out = np.empty(self.inner, dtype=self.dtype)
        fd = self._fd(s)
        offset, nbytes = (None, None) if fd is None else self._indexes[s][j]
        if fd is None or offset == EMPTY:
            out.fill(self.fill)
        elif self.codec is None:
            os.preadv(fd, [out], offset)
        else:
            self.codec(os.pread(fd, nbytes, offset), out)
        return out

    def __del__(self) -> None:
        if getattr(self, "_pid", None) == os.getpid():
            for fd in self._fds.values():
                os.close(fd)


# --------------------------------------------------------------------------------------------
# Writing shards as zarr-python does
# --------------------------------------------------------------------------------------------
class ShardEncoder:
    """Writes the shards of one array folder (its ``zarr.json`` written by zarr-python) byte for byte
    as zarr-python's sharding codec would."""

    def __init__(self, array: Path, layout: ShardLayout | None = None) -> None:
        self.array = Path(array)
        self.layout = layout or read_layout(self.array)
        self._codec = None
        if self.layout.blosc is not None:
            from numcodecs import blosc

            blosc.use_threads = False  # as zarr.codecs.blosc sets it
            cfg = self.layout.blosc
            shuffle = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}[cfg["shuffle"]]
            # the configuration zarr's BloscCodec hands to numcodecs (numcodecs >= 0.16: with typesize)
            self._codec = blosc.Blosc.from_config(
                {
                    "cname": cfg["cname"],
                    "clevel": cfg["clevel"],
                    "shuffle": shuffle,
                    "blocksize": cfg["blocksize"],
                    "typesize": cfg["typesize"],
                }
            )

    def empty(self, block: np.ndarray) -> np.ndarray:
        """Per row of ``block``: whether the chunk equals the fill value as zarr's ``all_equal`` sees it
        (NaN equals NaN; a float fill of 0 is compared bit for bit, so -0.0 differs from it)."""
        flat = block.reshape(len(block), -1)
        fill = np.asarray(self.layout.fill, dtype=self.layout.dtype)
        if flat.dtype.kind == "f" and fill == 0:
            bits = np.dtype(f"<u{flat.dtype.itemsize}")
            flat, fill = flat.view(bits), fill.view(bits)

        def equal(values: np.ndarray) -> np.ndarray:
            return np.isnan(values) if values.dtype.kind == "f" and np.isnan(fill) else values == fill

        out = equal(flat[:, 0])  # a row whose first value differs is written: most rows, decided here
        for i in np.flatnonzero(out):
            out[i] = equal(flat[i]).all()
        return out

    def writer(self, s: int) -> ShardWriter:
        return ShardWriter(self, s)

    def write(self, s: int, block: np.ndarray) -> int:
        """Write shard ``s`` from the rows of ``block`` (its first rows; the rest are absent); returns the
        file's size, 0 where no chunk differs from the fill value (no file, as zarr)."""
        with self.writer(s) as w:
            w.add(block)
        return w.size


class ShardWriter:
    """One shard file written front to back: :meth:`add` consecutive rows, then the index at the end.

    The file is opened at the first chunk that is written (a shard without one is never created)."""

    def __init__(self, encoder: ShardEncoder, s: int) -> None:
        self.encoder, self.path = encoder, shard_path(encoder.array, encoder.layout, s)
        self.index = np.full((encoder.layout.per_shard, 2), EMPTY, dtype="<u8")
        self.row = self.offset = self.size = 0
        self._file = None

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, kind, exc, tb) -> None:
        if kind is None:
            self.close()
        elif self._file is not None:
            self._file.close()

    def _put(self, data) -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "wb")  # noqa: SIM115 (closed by close / __exit__)
        self._file.write(data)

    def add(self, block: np.ndarray) -> None:
        """The next ``len(block)`` rows of the shard (C order, the array's dtype)."""
        layout = self.encoder.layout
        block = np.ascontiguousarray(block, dtype=layout.dtype)
        if self.row + len(block) > layout.per_shard or block.shape[1:] != layout.inner:
            raise ValueError(f"{self.path}: rows {block.shape} do not fit a shard of {layout.per_shard}")
        keep = ~self.encoder.empty(block)
        codec = self.encoder._codec
        i = 0
        while i < len(block):
            if not keep[i]:
                i += 1
                continue
            if codec is None:  # a run of raw chunks is one write, straight from ``block``
                j = i + 1
                while j < len(block) and keep[j]:
                    j += 1
                self._put(memoryview(block[i:j]).cast("B"))
                nbytes = block[0].nbytes
                for r in range(i, j):
                    self.index[self.row + r] = (self.offset, nbytes)
                    self.offset += nbytes
                i = j
                continue
            data = codec.encode(block[i].view(np.uint8).reshape(-1))
            self._put(data)
            self.index[self.row + i] = (self.offset, len(data))
            self.offset += len(data)
            i += 1
        self.row += len(block)

    def close(self) -> None:
        """Write the index and its CRC-32C and close; a shard without chunks is removed (zarr deletes it)."""
        import google_crc32c

        if self._file is None:
            self.path.unlink(missing_ok=True)
            return
        index = self.index.tobytes()
        self._put(index + google_crc32c.value(index).to_bytes(4, "little"))
        self._file.close()
        self.size = self.offset + len(index) + 4


class ShardFile:
    """Rows of one shard written by rsprep (or zarr-python), read with one ``pread`` per row range."""

    def __init__(self, array: Path, layout: ShardLayout, s: int) -> None:
        import google_crc32c

        self.layout, self.path = layout, shard_path(array, layout, s)
        self.fd = None
        try:
            self.fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:  # every chunk is the fill value
            return
        n = layout.per_shard * 16
        size = os.fstat(self.fd).st_size
        raw = os.pread(self.fd, n + 4, size - n - 4) if size >= n + 4 else b""
        if len(raw) != n + 4 or google_crc32c.value(raw[:n]) != int.from_bytes(raw[n:], "little"):
            os.close(self.fd)
            raise ValueError(f"{self.path}: the shard index is cut short or its checksum is wrong")
        self.index = np.frombuffer(raw[:n], dtype="<u8").reshape(-1, 2)

    def read(self, r0: int, r1: int) -> np.ndarray:
        """Rows ``r0`` to ``r1 - 1`` of the shard."""
        layout = self.layout
        out = np.empty((r1 - r0, *layout.inner), dtype=layout.dtype)
        if self.fd is None:
            out.fill(layout.fill)
            return out
        index = self.index[r0:r1]
        present = index[:, 0] != EMPTY
        if not present.all():
            out[~present] = layout.fill
        if not present.any():
            return out
        start = int(index[present, 0].min())
        stop = int((index[present, 0] + index[present, 1]).max())
        span = os.pread(self.fd, stop - start, start)
        if len(span) != stop - start:
            raise ValueError(f"{self.path}: {len(span)} bytes at {start}, the index says {stop - start}")
        from numcodecs import blosc

        for k in np.flatnonzero(present):
            a, b = int(index[k, 0]) - start, int(index[k, 0] + index[k, 1]) - start
            if layout.blosc is None:
                if b - a != out[k].nbytes:
                    raise ValueError(f"{self.path}: chunk {r0 + k} holds {b - a} bytes, not {out[k].nbytes}")
                out[k].view(np.uint8).reshape(-1)[:] = np.frombuffer(span, np.uint8, b - a, a)
            else:
                blosc.decompress(span[a:b], out[k])
        return out

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
