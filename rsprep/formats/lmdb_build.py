"""The environment an LMDB conversion builds in, and how it becomes the output (docs/convert.md#determinism).

The output is the built environment itself: no copy. Its bytes are a function of the data because the
writes are: a fresh environment, one transaction per write unit in unit order, each unit's values in
sorted key order, the map set before each unit to a size computed from the data written so far
(:func:`ensure_room`), all in one environment handle of one process. Every byte LMDB leaves alone —
free space in a page, a node's pad byte, a page reused from the free list — then holds what this same
sequence put there, however many workers read the values.

A resumed build keeps that sequence: the units an interrupted run committed are *replayed* from its
environment into a fresh one, transaction by transaction (:func:`replay`), and the build continues in
that handle. What a killed transaction left in the old file (pages written in place through the
writable map, free-list order) is never seen by the new one. The old environment is dropped once the
replay is complete; until then a kill leaves the partial build as it was.

At the end (:func:`finish`) the file is cut to its last used page, the map size in both meta pages is
set to that size rounded up to 1 MiB, and the file is synced once before it is moved into place.
"""

from __future__ import annotations

import ctypes
import math
import os
import shutil
from pathlib import Path

from rsprep.formats.resumable import ConvertError, PartialBuild
from rsprep.store.atomic import boot_id, replace_path, temp_sibling, write_text_atomic

MIB = 1 << 20
#: In the partial build: the boot that wrote its unsynced pages, or ``synced`` once they are on disk.
BOOT = "rsprep-lmdb-boot"
#: In the partial build: the folder (inside it) of the environment being built; absent: the partial
#: build's own folder.
ACTIVE = "rsprep-lmdb-env"
REPLAY = "replay-"
_MAP_RETRIES = 6  # a full map grows to 2**6 times the estimated room before it is an error
_META_MAGIC, _META_MAPSIZE = 0xBEEFC0DE, 16 + 16  # in a meta page: header, magic, version, address


def active_dir(partial: Path) -> Path:
    """The folder of the environment being built in ``partial``."""
    try:
        name = (partial / ACTIVE).read_text().strip()
    except FileNotFoundError:
        return partial
    return partial / name if name else partial


def drop_stale(partial: Path, say) -> None:
    """Remove what a killed run left: a replay it had not finished; a partial build whose unsynced
    pages were written before the machine restarted (a crash may have lost some of them: only a
    killed process leaves everything in the page cache)."""
    if not partial.is_dir():
        return
    live = active_dir(partial)
    for p in partial.glob(f"{REPLAY}*"):
        if p != live:
            shutil.rmtree(p, ignore_errors=True)
    mark = partial / BOOT
    if not mark.is_file():
        return  # none, or written by a version that synced every transaction
    if mark.read_text().strip() not in ("synced", boot_id()):
        say(f"discarding {partial}: the machine restarted since it was written and it was not synced to disk")
        shutil.rmtree(partial)


def mark_boot(partial: Path) -> None:
    write_text_atomic(partial / BOOT, f"{boot_id() or 'unknown'}\n")


def sync(env, partial: Path) -> None:
    """An orderly stop: what was written survives a restart too."""
    try:
        env.sync(True)
        write_text_atomic(partial / BOOT, "synced\n")
    except Exception:  # the original error is what the caller raises
        pass


def open_env(path: Path):
    """Open (or create) the environment in ``path``: (env, page size, its last key or None).

    Mapped writable and unsynced (a value is copied once, into the file's pages; a killed process
    loses nothing the kernel holds); where the boot cannot be told apart (no ``/proc``), every
    transaction is synced instead.
    """
    import lmdb

    unsynced = boot_id() is not None
    try:
        flags = {"writemap": unsynced, "sync": not unsynced, "meminit": True, "max_dbs": 0}
        env = lmdb.open(str(path), map_size=MIB, subdir=True, **flags)
    except (lmdb.Error, OSError) as exc:  # a full disk or a file-size limit when the map is made
        raise ConvertError(
            f"writing {path / 'data.mdb'} failed ({exc}); what was written before is kept: free disk space "
            "and run the same command again to resume"
        ) from exc
    psize = env.stat()["psize"]
    with env.begin() as txn:
        cur = txn.cursor()
        last = bytes(cur.key()) if cur.last() else None
    return env, psize, last


def pages_needed(values, psize: int) -> int:
    """An upper bound of the pages one transaction of ``values`` adds (overflow + leaf + branch)."""
    pages = sum(math.ceil((len(k) + len(v) + 64) / psize) for k, v in values)
    return pages + 2 * math.ceil(sum(len(k) + 32 for k, _ in values) / psize) + 16


def write_unit(env, psize: int, state: dict, where: Path, values, kept: int) -> None:
    """Write one unit's sorted values in one transaction (appending past the last key).

    A value that sorts before the last key (S1 names of two tiles interleave) is inserted in the
    middle and copies its page path, which :func:`pages_needed` may not cover: a full map then grows
    (doubling the room) and the aborted transaction is written again — the same attempts whenever
    the same units are written, since the map size is set from the data each time.
    """
    import lmdb

    room, last = pages_needed(values, psize) * psize, state["last"]
    try:
        for attempt in range(_MAP_RETRIES + 1):
            ensure_room(env, room << attempt)
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
            f"writing {where / 'data.mdb'} failed ({exc}); {kept} unit(s) are kept, "
            f"{fix} and run the same command again to resume"
        ) from exc


def ensure_room(env, extra: int) -> None:
    """Set the map to what is used plus ``extra`` bytes, rounded up to 1 MiB.

    Set, not only grown: the map size is stored in the meta pages and decides when a transaction
    runs out of room, so it must depend on the data alone, not on how the handle was opened.
    """
    info = env.info()
    used = (info["last_pgno"] + 1) * env.stat()["psize"]
    target = math.ceil((used + extra) / MIB) * MIB
    if info["map_size"] != target:
        if env.flags()["writemap"] and target > info["map_size"]:
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


def replay(old, build: PartialBuild, unit_keys: list[list[bytes]], say):
    """Write the logged units of ``old`` (the interrupted run's environment, closed here) into a
    fresh environment with the same transactions; make it the build's; return ``(env, psize, state)``,
    or ``None`` where ``old`` lacks a logged value (the partial build must then start over)."""
    done = sorted(build.done)
    partial = build.path
    previous = active_dir(partial)
    n = 0
    while (partial / f"{REPLAY}{n}").exists() or partial / f"{REPLAY}{n}" == previous:
        n += 1
    fresh = partial / f"{REPLAY}{n}"
    env = None
    state = {"last": None}
    try:
        env, psize, _ = open_env(fresh)
        with old.begin(buffers=True) as txn:
            for unit in done:
                values = [(k, txn.get(k)) for k in unit_keys[unit]]
                if any(v is None for _, v in values):
                    say(f"discarding {partial}: it lacks values of unit {unit}, which its log lists")
                    env.close()
                    shutil.rmtree(fresh)
                    return None
                write_unit(env, psize, state, fresh, values, len(done))
    except BaseException:
        if env is not None:
            env.close()
        shutil.rmtree(fresh, ignore_errors=True)
        raise
    finally:
        old.close()
    write_text_atomic(partial / ACTIVE, f"{fresh.name}\n")
    if previous == partial:
        for name in ("data.mdb", "lock.mdb"):
            (partial / name).unlink(missing_ok=True)
    else:
        shutil.rmtree(previous, ignore_errors=True)
    return env, psize, state


def finish(env, where: Path, dest: Path) -> dict:
    """Close the finished environment in ``where``, cut its file to the used pages, set the map size
    in its meta pages to that rounded up to 1 MiB, sync it once and move it to ``dest``.

    Returns the map size, entry count and bytes used.
    """
    info, stat = env.info(), env.stat()
    psize = stat["psize"]
    used = (info["last_pgno"] + 1) * psize
    map_size = math.ceil(used / MIB) * MIB
    env.close()
    data = where / "data.mdb"
    tmp = temp_sibling(dest)
    try:
        with open(data, "r+b") as f:
            for meta in (0, 1):
                f.seek(meta * psize + 16)
                if int.from_bytes(f.read(4), "little") != _META_MAGIC:
                    raise ConvertError(f"{data}: meta page {meta} is not LMDB's; please report it")
                f.seek(meta * psize + _META_MAPSIZE)
                f.write(map_size.to_bytes(8, "little"))
            f.truncate(used)
            f.flush()
            os.fsync(f.fileno())  # the one sync of a finished LMDB
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        os.rename(data, tmp / "data.mdb")
        try:
            replace_path(tmp, dest)
        except OSError:
            os.rename(tmp / "data.mdb", data)  # the finished file stays in the partial build
            raise
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ConvertError(
            f"finishing {data} as {dest} failed ({exc}); run the same command again to finish it"
        ) from exc
    return {"map_size": map_size, "entries": stat["entries"], "used_bytes": used}
