"""Reading the rico-hdl compatible LMDB (docs/formats.md#lmdb): :class:`LmdbReader`, and
:func:`safetensors_views`, zero-copy views of a stored value."""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from rsprep.core.values import MAP_BAND, REFERENCE_MAP, map_key
from rsprep.errors import InputNotFoundError, ReaderError

#: (resolved path, inode of data.mdb) -> (pid that opened it, environment)
_ENVS: dict[tuple[str, int], tuple[int, object]] = {}


def _env_key(path: Path) -> tuple[str, int]:
    # the inode tells a rebuilt environment (a new data.mdb at the same path) from the open one
    return (str(path.resolve()), (path / "data.mdb").stat().st_ino)


def _open_env(path: Path):
    """One read-only environment per file and process (LMDB forbids opening one twice in a process).
    A forked child closes the handle it inherited (LMDB: not to be used after fork; py-lmdb still
    lists it as open) and opens its own; the parent's stays open (``lock=False``: no lock table)."""
    import lmdb

    key, pid = _env_key(path), os.getpid()
    held = _ENVS.get(key)
    if held is not None and held[0] == pid:
        return held[1]
    if held is not None:
        held[1].close()
    env = lmdb.open(key[0], readonly=True, lock=False, readahead=False, meminit=False, max_readers=512)
    _ENVS[key] = (pid, env)
    return env


_DTYPES = {"U8": "<u1", "U16": "<u2", "I16": "<i2", "I32": "<i4", "F32": "<f4", "F64": "<f8"}


def safetensors_views(buf) -> dict[str, np.ndarray]:
    """The arrays of a safetensors value as read-only views of ``buf`` (no copy; little-endian)."""
    size = int.from_bytes(buf[:8], "little")
    header = json.loads(bytes(buf[8 : 8 + size]))
    header.pop("__metadata__", None)
    out = {}
    for name, meta in header.items():
        (start, end), dtype = meta["data_offsets"], np.dtype(_DTYPES[meta["dtype"]])
        arr = np.frombuffer(buf, dtype, (end - start) // dtype.itemsize, 8 + size + start)
        out[name] = arr.reshape(meta["shape"])
    return out


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
        held = _ENVS.pop(_env_key(self.path), None) if (self.path / "data.mdb").exists() else None
        if held is not None:
            held[1].close()
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
            return bytes(self._value(txn, key))

    def _value(self, txn, key: str):
        buf = txn.get(key.encode())
        if buf is None:
            raise ReaderError(f"{key!r} is not a key of {self.path / 'data.mdb'}")
        return buf

    @contextmanager
    def views(self):
        """One read transaction: yields ``get(key) -> {band: read-only array}``, views of the mapped
        file (no copy) valid inside the ``with`` only. A missing key raises :class:`ReaderError`."""
        with self.env.begin(buffers=True) as txn:
            yield lambda key: safetensors_views(self._value(txn, key))

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
                values = load(bytes(self._value(txn, key)))
                if key.endswith("_reference_map") and key != patch_id:
                    values = {REFERENCE_MAP: values[MAP_BAND]}
                out.update(values)
        return out
