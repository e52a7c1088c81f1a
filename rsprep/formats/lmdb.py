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
it, or after it was synced (docs/convert.md#resuming-overwriting-failures). The built environment is
the output, synced once (:mod:`rsprep.formats.lmdb_build`: why its bytes depend on the data alone, and
how a resumed build replays the interrupted one's transactions to end in the same bytes). Every LMDB
error names the file.
"""

from __future__ import annotations

import os
import shutil
import time
from operator import itemgetter
from pathlib import Path

from rsprep.core.values import GROUPS
from rsprep.formats import lmdb_build as build_env
from rsprep.formats.lmdb_reader import LmdbReader, safetensors_views
from rsprep.formats.resumable import (
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

__all__ = ["LmdbReader", "safetensors_views", "write_lmdb"]

#: Values per task (one read in a worker, one write transaction): small for per-file GeoTIFF reads,
#: large for work stores, whose Zarr chunks hold a whole row of patches.
DEFAULT_CHUNK = {"official": 128, "dataset": 1024}


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


def write_lmdb(
    source: Source, dest: Path, options: ConvertOptions, say=say_log, progress: Progress | None = None
) -> ConvertResult:
    t0 = time.perf_counter()
    tasks, per_unit, record = group_plan("lmdb", source, options.chunk or DEFAULT_CHUNK[source.spec.kind])
    build = PartialBuild(dest, record)
    build_env.drop_stale(build.path, say)
    build.start(exists=(dest / "data.mdb").exists(), overwrite=options.overwrite, say=say)
    build_env.mark_boot(build.path)  # before anything of this run reaches the environment
    t = time.perf_counter()
    opened = _resume(build, tasks, len(per_unit), say)
    replay_s = time.perf_counter() - t
    if opened is None:  # nothing to resume, or a partial build that cannot be: a fresh one
        if build.done or any(os.path.lexists(build.path / n) for n in ("data.mdb", build_env.ACTIVE)):
            shutil.rmtree(build.path)
            build = PartialBuild(dest, record)
            build.start(exists=False, overwrite=True, say=say)
            build_env.mark_boot(build.path)
        env, psize, last = build_env.open_env(build.path)
        opened = env, psize, {"last": last}
    env, psize, state = opened
    where = build_env.active_dir(build.path)
    resumed_tasks = sum(1 for unit, _, _ in tasks if unit in build.done)  # logged per unit
    total = sum(len(source.items[g]) for g in GROUPS)
    count = Counter(total, progress, sum(len(items) for u, _, items in tasks if u in build.done))
    pending: dict[int, list] = {}
    remaining = dict(enumerate(per_unit))
    # each step's share, in build.json only
    seconds = {"replay": replay_s, "read_and_write": 0.0, "transactions": 0.0}

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
            values = sorted(pending.pop(unit), key=itemgetter(0))
            build_env.write_unit(env, psize, state, where, values, len(build.done))
            build.log(unit)
            seconds["transactions"] += time.perf_counter() - t

    what, t_rw = str(build.path), time.perf_counter()
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
        seconds["read_and_write"] = time.perf_counter() - t_rw
        t = time.perf_counter()
        stats = build_env.finish(env, where, dest)
        seconds["cut_and_fsync"] = time.perf_counter() - t
    except BaseException:
        build_env.sync(env, build.path)  # an orderly stop: what was written survives a restart too
        raise
    finally:
        env.close()
    shutil.rmtree(build.path)
    stats["seconds"] = {k: round(v, 3) for k, v in seconds.items()}
    return ConvertResult(
        "lmdb",
        str(dest),
        {g: len(source.items[g]) for g in GROUPS},
        len(tasks),
        resumed_tasks,
        time.perf_counter() - t0,
        stats,
    )


def _resume(build: PartialBuild, tasks, units: int, say):
    """The environment of a resumed build, its logged units replayed into a fresh one
    (:func:`rsprep.formats.lmdb_build.replay`): ``(env, psize, state)``, or ``None`` to start over."""
    if not build.done:
        return None
    if build.done != set(range(len(build.done))) or len(build.done) > units:
        say(f"discarding {build.path}: its log does not list the first units in order")
        return None
    old, _, _ = build_env.open_env(build_env.active_dir(build.path))
    want = sum(len(items) for u, _, items in tasks if u in build.done)
    have = old.stat()["entries"]
    if have < want:
        old.close()
        say(f"discarding {build.path}: it holds {have} values, fewer than the {want} its log lists")
        return None
    keys: list[list[bytes]] = [[] for _ in range(units)]
    for unit, _, items in tasks:
        keys[unit].extend(it.key.encode() for it in items)
    return build_env.replay(old, build, [sorted(k) for k in keys], say)


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
