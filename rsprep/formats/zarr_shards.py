"""The byte-level read path of rsprep's Zarr image arrays: one chunk per patch inside shards, read
with one ``pread`` each (docs/formats.md#zarr)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


class ShardedPatchArray:
    """Random access to one patch of an (N, …) array stored as rsprep writes it: one chunk per patch
    inside shards along the patch axis, the shard index at the end, inner codecs ``bytes`` + Blosc.

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
            or meta.get("chunk_key_encoding", {}).get("configuration", {}).get("separator", "/") != "/"
        ):
            return None
        codec = None
        if names[1:] == ["blosc"]:
            from numcodecs import blosc

            # the Blosc header names the compressor and the sizes; Blosc runs without its thread pool
            # (zarr sets numcodecs.blosc.use_threads = False when it is imported)
            codec = blosc.decompress
        dtype = np.dtype(meta["data_type"]).newbyteorder("<")
        fill = meta.get("fill_value")
        fill = np.nan if fill == "NaN" else fill
        return cls(path, meta["shape"], shard[0], tuple(inner[1:]), dtype, fill, codec)

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
        if fd is None or offset == 0xFFFFFFFFFFFFFFFF:
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
