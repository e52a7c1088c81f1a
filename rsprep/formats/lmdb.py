"""The rico-hdl compatible LMDB (docs/formats.md#lmdb).

One environment; keys are S2 patch_ids, S1 s1_names and ``<patch_id>_reference_map``; each value is
the safetensors serialisation (``safetensors.numpy.save``) of ``{band: array}`` at native size: S2
``B01 … B12, B8A`` uint16, S1 ``VV``, ``VH`` float32, maps ``Data`` uint16. Values are written in
sorted key order, group by group (S1, S2, maps), one transaction per task; the map size grows with
the data written (it is never a fixed huge reservation) and ends at what the data needs.

The environment is built in the partial build and its finished form is a compacting copy
(``mdb_env_copy2(MDB_CP_COMPACT)``): pages renumbered in tree order, free pages and whatever an
interrupted transaction left in the file dropped, so a resumed build is byte-identical to an
uninterrupted one (docs/convert.md#determinism). Every LMDB error names the file.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from rsprep.core.values import GROUPS, MAP_BAND, REFERENCE_MAP, map_key
from rsprep.errors import InputNotFoundError, ReaderError
from rsprep.formats.resumable import (
    ConvertError,
    ConvertOptions,
    ConvertResult,
    Counter,
    PartialBuild,
    Progress,
    group_plan,
    run_ordered,
    say_log,
)
from rsprep.formats.sources import Item, Source, SourceSpec, read_items
from rsprep.store.atomic import replace_path, temp_sibling

MIB = 1 << 20
#: Values per task (one read in a worker, one write transaction): small for per-file GeoTIFF reads,
#: large for work stores, whose Zarr chunks hold a whole row of patches.
DEFAULT_CHUNK = {"official": 128, "dataset": 1024}


def encode(payload: tuple[SourceSpec, str, list[Item]]) -> list[tuple[bytes, bytes]]:
    """Read one task's values and serialise them (runs in a worker)."""
    from safetensors.numpy import save

    spec, group, items = payload
    arrays = read_items(spec, group, items)
    return [(it.key.encode(), save(values)) for it, values in zip(items, arrays, strict=True)]


def _pages_needed(values: list[tuple[bytes, bytes]], psize: int) -> int:
    """An upper bound of the pages one transaction of ``values`` adds (overflow + leaf + branch)."""
    pages = sum(math.ceil((len(k) + len(v) + 64) / psize) for k, v in values)
    return pages + 2 * math.ceil(sum(len(k) + 32 for k, _ in values) / psize) + 16


def write_lmdb(
    source: Source, dest: Path, options: ConvertOptions, say=say_log, progress: Progress | None = None
) -> ConvertResult:
    t0 = time.perf_counter()
    tasks, per_unit, record = group_plan("lmdb", source, options.chunk or DEFAULT_CHUNK[source.spec.kind])
    build = PartialBuild(dest, record)
    build.start(exists=(dest / "data.mdb").exists(), overwrite=options.overwrite, say=say)
    resumed_tasks = sum(1 for unit, _, _ in tasks if unit in build.done)  # logged per unit
    env, psize, last = _open_build_env(build.path)
    state = {"last": last}
    total = sum(len(source.items[g]) for g in GROUPS)
    count = Counter(total, progress, sum(len(items) for u, _, items in tasks if u in build.done))
    pending: dict[int, list[tuple[bytes, bytes]]] = {}
    remaining = dict(enumerate(per_unit))

    def collect(tid: int, values: list[tuple[bytes, bytes]]) -> None:
        """Gather a unit's values; write them, sorted, once its last task is in."""
        unit = tasks[tid][0]
        pending.setdefault(unit, []).extend(values)
        count.add(len(values))
        remaining[unit] -= 1
        if remaining[unit] == 0:
            _write_unit(env, psize, state, build, unit, sorted(pending.pop(unit)))

    payloads = (
        (tid, (source.spec, g, items)) for tid, (unit, g, items) in enumerate(tasks) if unit not in build.done
    )
    try:
        run_ordered(encode, payloads, workers=options.workers, on_result=collect, what=str(build.path))
        stats = _compact_into(env, psize, dest)
    finally:
        env.close()
    shutil.rmtree(build.path)
    return ConvertResult(
        "lmdb",
        str(dest),
        {g: len(source.items[g]) for g in GROUPS},
        len(tasks),
        resumed_tasks,
        time.perf_counter() - t0,
        stats,
    )


def _open_build_env(path: Path):
    """Open the environment being built: (env, page size, its last key or None when empty)."""
    import lmdb

    env = lmdb.open(str(path), map_size=MIB, subdir=True, meminit=True, max_dbs=0)
    psize = env.stat()["psize"]
    with env.begin() as txn:
        cur = txn.cursor()
        last = bytes(cur.key()) if cur.last() else None
    return env, psize, last


def _write_unit(env, psize: int, state: dict, build: PartialBuild, unit: int, values) -> None:
    """Write one unit's sorted values in one transaction (appending past the last key) and log it.

    A value that sorts before the last key (S1 names of two tiles interleave) is inserted in the
    middle and copies its page path, which :func:`_pages_needed` may not cover: a full map then
    grows (doubling the room) and the aborted transaction is written again. The build's map size is
    not part of the output (the compacting copy sets its own).
    """
    import lmdb

    room, last = _pages_needed(values, psize) * psize, state["last"]
    try:
        for attempt in range(_MAP_RETRIES + 1):
            _ensure_room(env, room << attempt)
            try:
                with env.begin(write=True) as txn:
                    for k, v in values:
                        append = state["last"] is None or k > state["last"]
                        txn.put(k, v, append=append)
                        if append:
                            state["last"] = k
                break
            except lmdb.MapFullError:
                state["last"] = last  # the transaction was aborted
                if attempt == _MAP_RETRIES:
                    raise
    except lmdb.Error as exc:
        fix = (
            "the map could not grow enough (please report it)"
            if isinstance(exc, lmdb.MapFullError)
            else "free disk space"
        )
        raise ConvertError(
            f"writing {build.path / 'data.mdb'} failed ({exc}); {len(build.done)} unit(s) are kept, "
            f"{fix} and run the same command again to resume"
        ) from exc
    build.log(unit)


_MAP_RETRIES = 6  # a full map grows to 2**6 times the estimated room before it is an error


def _compact_into(env, psize: int, dest: Path) -> dict[str, int]:
    """Write the finished environment's compacting copy to ``dest`` (through a temporary sibling).

    The copy's map size (stored in its meta pages) is the built environment's used size rounded up to
    1 MiB, a function of the data alone. Returns the copy's map size, entry count and bytes used.
    """
    import lmdb

    tmp = temp_sibling(dest)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        info, stat = env.info(), env.stat()
        map_size = math.ceil((info["last_pgno"] + 1) * psize / MIB) * MIB
        env.set_mapsize(map_size)
        tmp.mkdir()
        env.copy(str(tmp), compact=True)
        used = zero_gaps(tmp / "data.mdb", psize)
        replace_path(tmp, dest)
    except (lmdb.Error, OSError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ConvertError(
            f"writing {tmp / 'data.mdb'} (the finished copy of {dest}) failed ({exc}); the build is "
            "kept: free disk space and run the same command again to finish it"
        ) from exc
    return {"map_size": env.info()["map_size"], "entries": stat["entries"], "used_bytes": used}


_P_BRANCH, _P_LEAF, _P_OVERFLOW, _P_LEAF2, _F_BIGDATA = 0x01, 0x02, 0x04, 0x20, 0x01
_HEADER = 16  # PAGEHDRSZ (64-bit): pgno, pad, flags, lower, upper
_NODE = 8  # NODESIZE: lo, hi, flags, ksize


def zero_gaps(path: Path, psize: int) -> int:
    """Zero the bytes of branch and leaf pages that LMDB never writes: free space and node padding.

    Pages are written from reused buffers, and LMDB pads a node of odd length to an even one without
    writing the pad byte, and copies a page's used parts word-aligned, so bytes of earlier pages of
    the building process reach the file; zeroed, the file depends on its data alone. Overflow and
    meta pages are left as they are. Returns the file size (the file is flushed to disk).
    """
    import mmap

    with open(path, "r+b") as f:
        size = os.fstat(f.fileno()).st_size
        with mmap.mmap(f.fileno(), size) as m:
            pgno, pages = 0, size // psize
            while pgno < pages:
                base = pgno * psize
                flags, lower, upper = struct.unpack_from("<HHH", m, base + 10)
                if flags & _P_OVERFLOW:
                    pgno += max(1, struct.unpack_from("<I", m, base + 12)[0])
                    continue
                if (
                    flags & (_P_BRANCH | _P_LEAF)
                    and not flags & _P_LEAF2
                    and _HEADER <= lower <= upper <= psize
                ):
                    m[base + lower : base + upper] = bytes(upper - lower)
                    _zero_node_pads(m, base, lower, bool(flags & _P_LEAF))
                pgno += 1
            m.flush()
        os.fsync(f.fileno())
    return size


def _zero_node_pads(m, base: int, lower: int, leaf: bool) -> None:
    for i in range((lower - _HEADER) // 2):
        node = base + struct.unpack_from("<H", m, base + _HEADER + 2 * i)[0]
        lo, hi, nflags, ksize = struct.unpack_from("<HHHH", m, node)
        data = (8 if nflags & _F_BIGDATA else lo | hi << 16) if leaf else 0
        end = node + _NODE + ksize + data
        if (end - node) % 2:
            m[end] = 0


def _ensure_room(env, extra: int) -> None:
    """Grow the map so that ``extra`` more bytes fit (sized from the data, rounded up to 1 MiB)."""
    info = env.info()
    used = (info["last_pgno"] + 1) * env.stat()["psize"]
    target = math.ceil((used + extra) / MIB) * MIB
    if info["map_size"] < target:
        env.set_mapsize(target)


# --------------------------------------------------------------------------------------------
# Reader
# --------------------------------------------------------------------------------------------
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
