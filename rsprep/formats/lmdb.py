"""The rico-hdl compatible LMDB (docs/formats.md#lmdb): its writer (the reader is
:mod:`rsprep.formats.lmdb_reader`, re-exported here).

One environment; keys are S2 patch_ids, S1 s1_names and ``<patch_id>_reference_map``; each value is
the safetensors serialisation (``safetensors.numpy.save``) of ``{band: array}`` at native size: S2
``B01 … B12, B8A`` uint16, S1 ``VV``, ``VH`` float32, maps ``Data`` uint16. Values are written in
sorted key order, group by group (S1, S2, maps), one transaction per write unit; the map size grows
with the data written (it is never a fixed huge reservation) and ends at what the data needs.

From a work store the values are read in threads of the writing process
(:mod:`rsprep.formats.store_values`: file reads and Blosc release the GIL), straight into safetensors
buffers, so nothing is pickled; from an official GeoTIFF folder in worker processes (per-file parsing
holds the GIL). The environment being built is mapped writable (``MDB_WRITEMAP``: a value is copied
once, into the file's pages) and not synced per transaction (``MDB_NOSYNC``): a killed process loses
nothing the kernel already holds, and a partial build is resumed only on the machine boot that wrote
it, or after it was synced (docs/convert.md#resuming-overwriting-failures). The finished form is a
compacting copy (``mdb_env_copy2(MDB_CP_COMPACT)``) into a file of ours, with the bytes LMDB never
writes zeroed (:mod:`rsprep.formats.lmdb_pages`) and one ``fsync``: pages renumbered in tree order,
free pages and whatever an interrupted transaction left dropped, so a resumed build is byte-identical
to an uninterrupted one (docs/convert.md#determinism). Every LMDB error names the file.
"""

from __future__ import annotations

import ctypes
import math
import os
import shutil
import time
from operator import itemgetter
from pathlib import Path

from rsprep.core.values import GROUPS
from rsprep.formats.lmdb_pages import zero_gaps
from rsprep.formats.lmdb_reader import LmdbReader, safetensors_views
from rsprep.formats.resumable import (
    ConvertError,
    ConvertOptions,
    ConvertResult,
    Counter,
    PartialBuild,
    Progress,
    group_plan,
    run_ordered,
    run_threaded,
    say_log,
)
from rsprep.formats.sources import Item, Source, SourceSpec, read_items
from rsprep.formats.store_values import StoreValues
from rsprep.store.atomic import replace_path, temp_sibling, write_text_atomic

__all__ = ["LmdbReader", "safetensors_views", "write_lmdb", "zero_gaps"]

MIB = 1 << 20
#: Values per task (one read in a worker, one write transaction): small for per-file GeoTIFF reads,
#: large for work stores, whose Zarr chunks hold a whole row of patches.
DEFAULT_CHUNK = {"official": 128, "dataset": 1024}
#: In the partial build: the boot that wrote its unsynced pages, or ``synced`` once they are on disk.
BOOT = "rsprep-lmdb-boot"


def encode(payload: tuple[SourceSpec, str, list[Item]]) -> list[tuple[bytes, bytes]]:
    """Read one task's values and serialise them (runs in a worker)."""
    from safetensors.numpy import save

    spec, group, items = payload
    arrays = read_items(spec, group, items)
    return [(it.key.encode(), save(values)) for it, values in zip(items, arrays, strict=True)]


def read_piece(payload: tuple[StoreValues, str, str, list[Item]]):
    """Read one piece of a work store's values (runs in a reader thread): ``(keys, values)``."""
    values, group, store, items = payload
    return values.read(group, store, items)


def _pages_needed(values, psize: int) -> int:
    """An upper bound of the pages one transaction of ``values`` adds (overflow + leaf + branch)."""
    pages = sum(math.ceil((len(k) + len(v) + 64) / psize) for k, v in values)
    return pages + 2 * math.ceil(sum(len(k) + 32 for k, _ in values) / psize) + 16


def write_lmdb(
    source: Source, dest: Path, options: ConvertOptions, say=say_log, progress: Progress | None = None
) -> ConvertResult:
    t0 = time.perf_counter()
    tasks, per_unit, record = group_plan("lmdb", source, options.chunk or DEFAULT_CHUNK[source.spec.kind])
    build = PartialBuild(dest, record)
    _drop_unsynced(build.path, say)
    build.start(exists=(dest / "data.mdb").exists(), overwrite=options.overwrite, say=say)
    env, psize, last = _open_build_env(build.path)
    if not _consistent(env, build, tasks, say):
        env.close()
        shutil.rmtree(build.path)
        build = PartialBuild(dest, record)
        build.start(exists=False, overwrite=True, say=say)
        env, psize, last = _open_build_env(build.path)
    _mark_boot(build.path)
    resumed_tasks = sum(1 for unit, _, _ in tasks if unit in build.done)  # logged per unit
    state = {"last": last}
    total = sum(len(source.items[g]) for g in GROUPS)
    count = Counter(total, progress, sum(len(items) for u, _, items in tasks if u in build.done))
    pending: dict[int, list] = {}
    remaining = dict(enumerate(per_unit))
    seconds = {"read_and_write": 0.0, "transactions": 0.0}  # each step's share, in build.json only

    def collect(tid, values) -> None:
        """Gather a unit's values; write them, sorted, once its last task (or piece) is in."""
        unit, last_part = tid if isinstance(tid, tuple) else (tasks[tid][0], None)
        if last_part is None:  # a task of worker processes: (key, bytes) pairs
            pending.setdefault(unit, []).extend(values)
            remaining[unit] -= 1
            done = remaining[unit] == 0
        else:  # a piece read in a thread: keys and an (n, size) array of values
            keys, buf = values
            pending.setdefault(unit, []).extend(zip(keys, buf, strict=True))
            done = last_part
        count.add(len(values) if last_part is None else len(values[0]))
        if done:
            t = time.perf_counter()
            _write_unit(env, psize, state, build, unit, sorted(pending.pop(unit), key=itemgetter(0)))
            seconds["transactions"] += time.perf_counter() - t

    what = str(build.path)
    try:
        if source.spec.kind == "dataset":
            reader = StoreValues(source.spec.work)
            run_threaded(
                read_piece,
                _pieces(reader, tasks, build.done),
                threads=options.workers,
                on_result=collect,
                what=what,
            )
        else:
            payloads = (
                (tid, (source.spec, g, items))
                for tid, (unit, g, items) in enumerate(tasks)
                if unit not in build.done
            )
            run_ordered(encode, payloads, workers=options.workers, on_result=collect, what=what)
        seconds["read_and_write"] = time.perf_counter() - t0
        stats = _compact_into(env, psize, dest, seconds)
    except BaseException:
        _sync(env, build.path)  # an orderly stop: what was written survives a restart too
        raise
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


def _pieces(reader: StoreValues, tasks, done: set[int]):
    """``((unit, last piece of the unit?), payload)`` for every piece of every unit not yet written:
    the unit's values split by store and chunk row, so that each chunk is decompressed once."""
    by_unit: dict[int, tuple[str, list]] = {}
    for unit, group, items in tasks:
        if unit not in done:
            by_unit.setdefault(unit, (group, []))[1].extend(items)
    for unit, (group, items) in by_unit.items():
        pieces = reader.pieces(group, items)
        for i, (store, part) in enumerate(pieces):
            yield (unit, i == len(pieces) - 1), (reader, group, store, part)


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _drop_unsynced(path: Path, say) -> None:
    """Discard a partial build whose unsynced pages were written before the machine restarted (a
    crash may have lost some of them: only a killed process keeps everything in the page cache)."""
    mark = path / BOOT
    if not mark.is_file():
        return  # none, or written by a version that synced every transaction
    recorded = mark.read_text().strip()
    if recorded not in ("synced", _boot_id()):
        say(f"discarding {path}: the machine restarted since it was written and it was not synced to disk")
        shutil.rmtree(path)


def _mark_boot(path: Path) -> None:
    write_text_atomic(path / BOOT, f"{_boot_id() or 'unknown'}\n")


def _sync(env, path: Path) -> None:
    try:
        env.sync(True)
        write_text_atomic(path / BOOT, "synced\n")
    except Exception:  # the original error is what the caller raises
        pass


def _consistent(env, build: PartialBuild, tasks, say) -> bool:
    """Whether the environment holds at least every value of the units the log lists as written."""
    logged = {u for u, _, _ in tasks if u in build.done}
    want = sum(len(items) for u, _, items in tasks if u in logged)
    have = env.stat()["entries"]
    if have >= want:
        return True
    say(f"discarding {build.path}: it holds {have} values, fewer than the {want} its log lists")
    return False


def _open_build_env(path: Path):
    """Open the environment being built: (env, page size, its last key or None when empty).

    Mapped writable and unsynced (see the module's docstring); where the boot cannot be told apart
    (no ``/proc``), every transaction is synced instead.
    """
    import lmdb

    unsynced = _boot_id() is not None
    env = lmdb.open(
        str(path), map_size=MIB, subdir=True, writemap=unsynced, sync=not unsynced, meminit=True, max_dbs=0
    )
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
    except (lmdb.Error, OSError) as exc:
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


def _compact_into(env, psize: int, dest: Path, seconds: dict[str, float]) -> dict:
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
        # a file of ours, not env.copy(): LMDB opens its copy with O_DIRECT (small synchronous writes,
        # then read back from disk to zero the gaps); here the copy goes through the page cache and
        # reaches the disk with the one fsync of zero_gaps
        fd = os.open(tmp / "data.mdb", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            t = time.perf_counter()
            env.copyfd(fd, compact=True)
            seconds["compacting_copy"] = time.perf_counter() - t
        finally:
            os.close(fd)
        t = time.perf_counter()
        used = zero_gaps(tmp / "data.mdb", psize)
        seconds["zero_gaps_and_fsync"] = time.perf_counter() - t
        replace_path(tmp, dest)
    except (lmdb.Error, OSError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ConvertError(
            f"writing {tmp / 'data.mdb'} (the finished copy of {dest}) failed ({exc}); the build is "
            "kept: free disk space and run the same command again to finish it"
        ) from exc
    seconds = {k: round(v, 3) for k, v in seconds.items()}
    return {
        "map_size": env.info()["map_size"],
        "entries": stat["entries"],
        "used_bytes": used,
        "seconds": seconds,
    }


def _ensure_room(env, extra: int) -> None:
    """Grow the map so that ``extra`` more bytes fit (sized from the data, rounded up to 1 MiB)."""
    info = env.info()
    used = (info["last_pgno"] + 1) * env.stat()["psize"]
    target = math.ceil((used + extra) / MIB) * MIB
    if info["map_size"] < target:
        if env.flags()["writemap"]:
            _reserve(Path(env.path()) / "data.mdb", target)
        env.set_mapsize(target)


def _reserve(path: Path, size: int) -> None:
    """Extend a writable map's file to ``size`` with its blocks allocated, before LMDB remaps it.

    LMDB itself would extend the file sparsely, after unmapping the old map: a file-size limit would
    then leave the environment pointing at unmapped memory, and a full disk would be a SIGBUS when
    a page is first written. Here both are an ``OSError`` naming the file, and nothing has changed.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        if libc.fallocate(fd, 0, ctypes.c_long(0), ctypes.c_long(size)) != 0:
            err = ctypes.get_errno()
            if err not in (95, 38):  # EOPNOTSUPP, ENOSYS: a file system without fallocate
                raise OSError(err, os.strerror(err), str(path))
            if os.fstat(fd).st_size < size:
                os.ftruncate(fd, size)  # sparse: at least a file-size limit is met here
    finally:
        os.close(fd)
