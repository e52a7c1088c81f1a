"""The rico-hdl compatible LMDB (docs/formats.md#lmdb).

One environment; keys are S2 patch_ids, S1 s1_names and ``<patch_id>_reference_map``; each value is
the safetensors serialisation (``safetensors.numpy.save``) of ``{band: array}`` at native size: S2
``B01 … B12, B8A`` uint16, S1 ``VV``, ``VH`` float32, maps ``Data`` uint16. Values are written in
sorted key order, group by group (S1, S2, maps), one transaction per task; the map size grows with
the data written (it is never a fixed huge reservation) and ends at what the data needs.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from rsprep.formats.layout import GROUPS
from rsprep.formats.resumable import (
    ConvertError,
    ConvertOptions,
    ConvertResult,
    PartialBuild,
    group_plan,
    progress_bar,
    run_ordered,
    say_log,
)
from rsprep.formats.sources import Item, Source, SourceSpec, read_items
from rsprep.store.atomic import replace_path

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


def write_lmdb(source: Source, dest: Path, options: ConvertOptions, say=say_log) -> ConvertResult:
    import lmdb

    t0 = time.perf_counter()
    tasks, per_unit, record = group_plan("lmdb", source, options.chunk or DEFAULT_CHUNK[source.spec.kind])
    build = PartialBuild(dest, record)
    build.start(exists=(dest / "data.mdb").exists(), overwrite=options.overwrite, say=say)
    resumed_tasks = sum(1 for unit, _, _ in tasks if unit in build.done)  # logged per unit
    env = lmdb.open(str(build.path), map_size=MIB, subdir=True, meminit=True, max_dbs=0)
    psize = env.stat()["psize"]
    with env.begin() as txn:
        cur = txn.cursor()
        last = bytes(cur.key()) if cur.last() else None
    state = {"last": last}
    total = sum(len(source.items[g]) for g in GROUPS)
    bar = progress_bar(total, "convert lmdb", options.quiet)
    bar.update(sum(len(items) for u, _, items in tasks if u in build.done))
    pending: dict[int, list[tuple[bytes, bytes]]] = {}
    remaining = dict(enumerate(per_unit))

    def collect(tid: int, values: list[tuple[bytes, bytes]]) -> None:
        """Gather a unit's values; write them, sorted, once its last task is in."""
        unit = tasks[tid][0]
        pending.setdefault(unit, []).extend(values)
        bar.update(len(values))
        remaining[unit] -= 1
        if remaining[unit] == 0:
            write(unit, sorted(pending.pop(unit)))

    def write(unit: int, values: list[tuple[bytes, bytes]]) -> None:
        _ensure_room(env, _pages_needed(values, psize) * psize)
        try:
            with env.begin(write=True) as txn:
                for k, v in values:
                    append = state["last"] is None or k > state["last"]
                    txn.put(k, v, append=append)
                    if append:
                        state["last"] = k
        except lmdb.Error as exc:
            raise ConvertError(
                f"writing {build.path / 'data.mdb'} failed ({exc}); {len(build.done)} unit(s) are kept, "
                "free disk space and run the same command again to resume"
            ) from exc
        build.log(unit)

    payloads = (
        (tid, (source.spec, g, items)) for tid, (unit, g, items) in enumerate(tasks) if unit not in build.done
    )
    try:
        run_ordered(encode, payloads, workers=options.workers, on_result=collect, what=str(build.path))
        env.sync(True)
        info, stat = env.info(), env.stat()
    finally:
        bar.close()
        env.close()
    build.cleanup()
    (build.path / "lock.mdb").unlink(missing_ok=True)
    replace_path(build.path, dest)
    return ConvertResult(
        "lmdb",
        str(dest),
        {g: len(source.items[g]) for g in GROUPS},
        len(tasks),
        resumed_tasks,
        time.perf_counter() - t0,
        {
            "map_size": info["map_size"],
            "entries": stat["entries"],
            "used_bytes": (info["last_pgno"] + 1) * psize,
        },
    )


def _ensure_room(env, extra: int) -> None:
    """Grow the map so that ``extra`` more bytes fit (sized from the data, rounded up to 1 MiB)."""
    info = env.info()
    used = (info["last_pgno"] + 1) * env.stat()["psize"]
    target = math.ceil((used + extra) / MIB) * MIB
    if info["map_size"] < target:
        env.set_mapsize(target)
