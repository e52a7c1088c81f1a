"""Random access to converted datasets: one patch by id, as numpy arrays per band (no torch).

- :class:`LmdbReader` reads the rico-hdl LMDB (docs/formats.md#lmdb). The environment is opened once
  per process, read-only, without the lock file and with ``buffers=True`` transactions, as ConfigILM
  does; a reader handed to a forked or spawned data-loader worker reopens it there.
- :class:`ZarrReader` reads the Zarr v3 store (docs/formats.md#zarr).
- :class:`TiffReader` reads the official GeoTIFF layout (docs/formats.md#geotiff-layout), one file per band.

All three return ``{band: array}`` with the same names: ``B01 … B12, B8A`` (uint16, native size),
``VV``, ``VH`` (float32) and ``reference_map`` (uint16). :func:`iter_patches` iterates over ids.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from rsprep.errors import InputNotFoundError, RsprepError
from rsprep.formats.layout import GROUP_BANDS, MAP_BAND, band_files, map_key

REFERENCE_MAP = "reference_map"


class ReaderError(RsprepError, KeyError):
    """A patch is not in the dataset, or a store is not what a reader expects."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


_ENVS: dict[tuple[str, int, int], object] = {}


def _env_key(path: Path) -> tuple[str, int, int]:
    # the inode tells a rebuilt environment (a new data.mdb at the same path) from the open one
    return (str(path.resolve()), os.getpid(), (path / "data.mdb").stat().st_ino)


def _open_env(path: Path):
    """One read-only environment per file and process (LMDB forbids opening one twice in a process)."""
    import lmdb

    key = _env_key(path)
    env = _ENVS.get(key)
    if env is None:
        env = _ENVS[key] = lmdb.open(
            key[0], readonly=True, lock=False, readahead=False, meminit=False, max_readers=512
        )
    return env


class LmdbReader:
    """Values of an rsprep/rico-hdl LMDB environment (a folder holding ``data.mdb``)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not (self.path / "data.mdb").is_file():
            raise InputNotFoundError(
                f"{self.path} holds no data.mdb; create it with `rsprep convert lmdb DATASET`"
            )
        self._env = None
        self._pid: int | None = None

    @property
    def env(self):
        """The environment, opened on first use in each process (shared by readers of the same path)."""
        if self._env is None or self._pid != os.getpid():
            self._env = _open_env(self.path)
            self._pid = os.getpid()
        return self._env

    def __getstate__(self) -> dict:
        return {"path": self.path, "_env": None, "_pid": None}

    def close(self) -> None:
        """Close the environment (for every reader of this path in this process)."""
        env = _ENVS.pop(_env_key(self.path), None) if (self.path / "data.mdb").exists() else None
        if env is not None:
            env.close()
        self._env = None

    def keys(self) -> list[str]:
        """All keys, in the environment's (sorted) order."""
        with self.env.begin(buffers=True) as txn:
            return [bytes(k).decode() for k in txn.cursor().iternext(values=False)]

    def __len__(self) -> int:
        return self.env.stat()["entries"]

    def __contains__(self, key: str) -> bool:
        with self.env.begin(buffers=True) as txn:
            return txn.get(key.encode()) is not None

    def raw(self, key: str) -> bytes:
        """The stored safetensors bytes of ``key``."""
        with self.env.begin(buffers=True) as txn:
            buf = txn.get(key.encode())
            if buf is None:
                raise ReaderError(f"{key!r} is not a key of {self.path / 'data.mdb'}")
            return bytes(buf)

    def get(self, key: str) -> dict[str, np.ndarray]:
        """The arrays stored under one key (an S2 patch_id, an s1_name or ``<patch_id>_reference_map``)."""
        from safetensors.numpy import load

        return load(self.raw(key))

    def patch(self, patch_id: str, s1_name: str | None = None, *, reference_map: bool = True) -> dict:
        """All arrays of one patch: its S2 bands, its S1 bands when ``s1_name`` is given, its map."""
        from safetensors.numpy import load

        keys = [patch_id] + ([s1_name] if s1_name else []) + ([map_key(patch_id)] if reference_map else [])
        out: dict[str, np.ndarray] = {}
        with self.env.begin(buffers=True) as txn:
            for key in keys:
                buf = txn.get(key.encode())
                if buf is None:
                    raise ReaderError(f"{key!r} is not a key of {self.path / 'data.mdb'}")
                values = load(bytes(buf))
                if key.endswith("_reference_map") and key != patch_id:
                    values = {REFERENCE_MAP: values[MAP_BAND]}
                out.update(values)
        return out


class ZarrReader:
    """Patches of an rsprep Zarr v3 store (``dataset.zarr``), looked up by patch_id."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not (self.path / "zarr.json").is_file():
            raise InputNotFoundError(
                f"{self.path} is not a Zarr store (no zarr.json); "
                "create it with `rsprep convert zarr DATASET`"
            )
        self._group = None
        self._pid: int | None = None
        self._index: dict[str, int] | None = None
        self._labels_cache: np.ndarray | None = None

    def __getstate__(self) -> dict:
        return {"path": self.path, "_group": None, "_pid": None, "_index": self._index, "_labels_cache": None}

    @property
    def group(self):
        """The store's root group, opened on first use in each process (with its image arrays)."""
        if self._group is None or self._pid != os.getpid():
            import zarr

            self._group = zarr.open_group(self.path, mode="r")
            self._pid = os.getpid()
            self._arrays = self._open_arrays()
            self._labels_cache = self._group["labels"][:]
        return self._group

    def _open_arrays(self) -> dict:
        meta = (
            json.loads((self.path / "zarr.json").read_text())
            .get("consolidated_metadata", {})
            .get("metadata", {})
        )
        names = [f"s2/{b}" for b in GROUP_BANDS["s2"]]
        if "s1" in self._group:
            names += [f"s1/{b}" for b in GROUP_BANDS["s1"]]
        names.append(REFERENCE_MAP)
        arrays = {}
        for name in names:
            key = name.split("/")[-1]
            fast = ShardedPatchArray.open(self.path / name, meta.get(name))
            arrays[key] = fast if fast is not None else self._group[name]
        return arrays

    @property
    def patch_ids(self) -> list[str]:
        return [str(p) for p in self.group["patch_id"][:]]

    @property
    def index(self) -> dict[str, int]:
        if self._index is None:
            self._index = {p: i for i, p in enumerate(self.patch_ids)}
        return self._index

    def __len__(self) -> int:
        return self.group["patch_id"].shape[0]

    def __contains__(self, patch_id: str) -> bool:
        return patch_id in self.index

    def row(self, patch_id: str) -> int:
        try:
            return self.index[patch_id]
        except KeyError:
            raise ReaderError(f"{patch_id!r} is not a patch of {self.path}") from None

    def patch(self, patch_id: str, *, s1: bool = True, reference_map: bool = True) -> dict[str, np.ndarray]:
        """All arrays of one patch (S2 bands, S1 bands, map) and its multi-hot ``labels``."""
        return self.read_row(self.row(patch_id), s1=s1, reference_map=reference_map)

    def read_row(self, i: int, *, s1: bool = True, reference_map: bool = True) -> dict[str, np.ndarray]:
        _ = self.group  # opens the arrays in this process
        out = {}
        for name, arr in self._arrays.items():
            if (not s1 and name in GROUP_BANDS["s1"]) or (not reference_map and name == REFERENCE_MAP):
                continue
            out[name] = arr[i]
        out["labels"] = self._labels_cache[i]
        return out


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


class TiffReader:
    """Patches of the official GeoTIFF layout (a folder holding ``BigEarthNet-S2/`` …)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def get(self, group: str, key: str) -> dict[str, np.ndarray]:
        """The band arrays of one S2 patch (``s2``), S1 patch (``s1``) or reference map (``map``)."""
        import tifffile

        out: dict[str, np.ndarray] = {}
        for name, rel in band_files(group, key).items():
            path = self.root / rel
            try:
                out[name] = tifffile.imread(path)
            except FileNotFoundError:
                raise ReaderError(f"{path} is missing ({group} patch {key})") from None
            except (tifffile.TiffFileError, ValueError, OSError) as exc:
                raise ReaderError(
                    f"{path} is not a readable GeoTIFF ({exc}); re-download or rewrite it"
                ) from exc
        return out

    def patch(self, patch_id: str, s1_name: str | None = None, *, reference_map: bool = True) -> dict:
        out = self.get("s2", patch_id)
        if s1_name:
            out.update(self.get("s1", s1_name))
        if reference_map:
            out[REFERENCE_MAP] = self.get("map", patch_id)[MAP_BAND]
        return out


def iter_patches(reader, patch_ids: Iterable[str], s1_names: Iterable[str | None] | None = None) -> Iterator:
    """``(patch_id, arrays)`` for each id, in the given order (a torch-free data loader)."""
    ids = list(patch_ids)
    pairs = zip(ids, s1_names if s1_names is not None else [None] * len(ids), strict=True)
    for patch_id, s1_name in pairs:
        if isinstance(reader, ZarrReader):
            yield patch_id, reader.patch(patch_id, s1=True)
        else:
            yield patch_id, reader.patch(patch_id, s1_name)
