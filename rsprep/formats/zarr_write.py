"""``rsprep convert zarr``: the writer of the Zarr store (docs/convert.md, "The Zarr writer").

zarr-python creates the store (every array's ``zarr.json``, the (N,)-row columns:
:func:`rsprep.formats.zarr.create_store`) and consolidates the metadata at the end; the image arrays'
shard files are written by the tasks of :mod:`rsprep.formats.zarr_tasks` in worker processes, byte for
byte what zarr-python writes. From a work store a task is one array over a run of shards
(:mod:`rsprep.formats.zarr_plan`), from an official GeoTIFF folder one value group over one shard;
``s2_stacked`` is written afterwards, one task per shard, from the native band shards. The build is
resumable (:class:`PartialBuild`): tasks are logged as they finish, files are not synced one by one
but once (``syncfs``) before the store is moved into place.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path

from rsprep.core.bands import SPECTRAL_BANDS
from rsprep.core.nomenclature import BEN19
from rsprep.core.values import REFERENCE_MAP, native_pixels
from rsprep.formats.resumable import (
    ConvertError,
    ConvertOptions,
    ConvertResult,
    Counter,
    PartialBuild,
    Progress,
    options_record,
    run_ordered,
    say_log,
)
from rsprep.formats.sources import Item, Source, SourceError
from rsprep.formats.store_values import ARRAYS
from rsprep.formats.zarr import create_store, rows_of
from rsprep.formats.zarr_plan import GroupRows, chunk_reads, chunk_rows, plan_runs
from rsprep.formats.zarr_tasks import write_task
from rsprep.store.atomic import digest, replace_path
from rsprep.store.workstore import consolidate, find_stores


@dataclass
class Plan:
    """The tasks (``[kind, name, first shard, end shard]``, in phases) and what the payloads need."""

    tasks: list[list] = field(default_factory=list)
    phases: list[list[int]] = field(default_factory=list)
    values: list[int] = field(default_factory=list)  # patch arrays each task writes
    rows: dict[str, GroupRows] = field(default_factory=dict)  # work stores: per group
    stores: list[str] = field(default_factory=list)  # work stores: the store folders
    reads: int = 0  # work stores: chunk reads of all tasks
    distinct: int = 0  # work stores: distinct chunks among them

    def add(self, phase: int, task: list, values: int) -> None:
        while len(self.phases) <= phase:
            self.phases.append([])
        self.phases[phase].append(len(self.tasks))
        self.tasks.append(task)
        self.values.append(values)


#: Tasks starting at the same shard are ordered S2 bands, S1, map (so the groups' runs interleave).
GROUPS_ORDER = ("s2", "s1", "map")


def group_arrays(group: str) -> list[tuple[str, str]]:
    """(output array, work-store array) of each image array of ``group``."""
    names = ARRAYS[group][1]
    out = {"s2": lambda b: f"s2/{b}", "s1": lambda b: f"s1/{b}", "map": lambda _b: REFERENCE_MAP}[group]
    return [(out(b), a) for b, a in names.items()]


def _row_bytes(group: str, p: int) -> int:
    """Bytes of the largest patch of ``group`` (a 10 m S2 band, an S1 band, the map)."""
    if group == "s2":
        return max(native_pixels(b, p) ** 2 for b in SPECTRAL_BANDS) * 2
    return (p // 10) ** 2 * (4 if group == "s1" else 2)


def plan_tasks(source: Source, rows: dict[str, list], n: int, shard: int, options: ConvertOptions) -> Plan:
    """Every task of the conversion, in order (phase 0: native arrays; phase 1: ``s2_stacked``)."""
    plan = Plan()
    shards = -(-n // shard)
    if source.spec.kind == "official":
        for s in range(shards):
            for g in GROUPS_ORDER:
                span = min(n, (s + 1) * shard) - s * shard
                plan.add(0, ["official", g, s, s + 1], span * len(group_arrays(g)))
    else:
        paths = {st.name: str(st.path) for st in find_stores(source.spec.work)}
        names = sorted({it.store for its in rows.values() for it in its if it is not None})
        plan.stores = [paths[nm] for nm in names]
        native = []
        for i, g in enumerate(GROUPS_ORDER):
            wgroup, first = ARRAYS[g][0], group_arrays(g)[0][1]
            used = sorted({it.store for it in rows[g] if it is not None})
            per = {nm: chunk_rows(Path(paths[nm]) / wgroup / first) for nm in used}
            plan.rows[g] = gr = GroupRows.of(rows[g], names, per)
            runs = plan_runs(gr, shard, _row_bytes(g, source.patch_size))
            reads, distinct = chunk_reads(gr, shard, runs)
            arrays = group_arrays(g)
            plan.reads += reads * len(arrays)
            plan.distinct += distinct * len(arrays)
            for a, b in runs:
                span = min(n, b * shard) - a * shard
                native += [((a, i, j), ["run", name, a, b], span) for j, (name, _) in enumerate(arrays)]
        for _key, task, values in sorted(native, key=lambda t: t[0]):
            plan.add(0, task, values)
    if options.stack:
        for s in range(shards):
            plan.add(1, ["stacked", "s2_stacked", s, s + 1], min(n, (s + 1) * shard) - s * shard)
    return plan


def _payload(plan: Plan, tid: int, source: Source, out: str, rows: dict, n: int, shard: int, options):
    """The arguments of task ``tid`` for :func:`rsprep.formats.zarr_tasks.write_task`."""
    kind, name, s0, s1 = plan.tasks[tid]
    a, b = s0 * shard, min(n, s1 * shard)
    if kind == "stacked":
        return ("stacked", out, a, b, options.stack_method)
    if kind == "official":
        return ("official", source.spec, out, name, a, b, rows[name][a:b])
    group = next(g for g in GROUPS_ORDER if any(name == o for o, _ in group_arrays(g)))
    array = dict(group_arrays(group))[name]
    gr = plan.rows[group]
    return ("run", out, name, ARRAYS[group][0], array, plan.stores, a, b, gr.store[a:b], gr.src[a:b])


def write_zarr(
    source: Source, dest: Path, options: ConvertOptions, say=say_log, progress: Progress | None = None
) -> ConvertResult:
    """Convert ``source`` to the Zarr store ``dest``: plan the tasks, create the store in the partial
    build (or resume it), run the native arrays' tasks, then ``s2_stacked``'s, consolidate, sync once and
    move it into place.

    Raises:
        ConvertError: writing failed (a full disk: the array and rows are named); finished tasks are kept.
        WorkStoreError: a work-store chunk is missing or cannot be decoded.
    """
    t0 = time.perf_counter()
    s2_items, s1_items, map_items = _checked_rows(source, options)
    rows = {"s2": s2_items, "s1": s1_items, "map": map_items}
    n = len(s2_items)
    shard = min(options.shard_patches, n)
    classes = BEN19.order("alphabetical" if options.class_order == "alphabetical" else "native")
    plan = plan_tasks(source, rows, n, shard, options)
    build = PartialBuild(dest, _build_record(source, options, s2_items, plan.tasks), unsynced=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    build.start(
        exists=(dest / "zarr.json").exists(),
        overwrite=options.overwrite,
        say=say,
        prepare=lambda path: _checked(path, create_store, path, source, n, options, shard, classes),
    )
    counter = Counter(sum(plan.values), progress, sum(plan.values[t] for t in build.done))

    def done(tid: int, count: int) -> None:
        build.log(tid)
        counter.add(count)

    try:
        for phase in plan.phases:
            payloads = (
                (tid, _payload(plan, tid, source, str(build.path), rows, n, shard, options))
                for tid in phase
                if tid not in build.done
            )
            run_ordered(write_task, payloads, workers=options.workers, on_result=done, what=str(build.path))
        _checked(build.path, consolidate, build.path)
        build.cleanup()
        build.sync()  # the one flush to disk of the whole store
    except BaseException:
        with contextlib.suppress(OSError):
            build.sync()  # an orderly stop: what the log lists is on disk, a restart may resume it
        raise
    replace_path(build.path, dest)
    files = sum(1 for p in dest.rglob("*") if p.is_file())
    extra = {"files": files, "shard_patches": shard, "stack": options.stack}
    if source.spec.kind != "official":
        extra |= {"chunk_reads": plan.reads, "chunks_read_twice": plan.reads - plan.distinct}
    return ConvertResult(
        "zarr",
        str(dest),
        {"patches": n, "s1": sum(it is not None for it in s1_items)},
        len(plan.tasks),
        build.resumed_tasks,
        time.perf_counter() - t0,
        extra,
    )


def _checked(path: Path, fn, *args) -> None:
    """Call ``fn(*args)``, turning an ``OSError`` (a full disk) into an error that names ``path``."""
    try:
        fn(*args)
    except OSError as exc:
        raise ConvertError(
            f"writing {path} failed ({exc}); free disk space and run the same command again"
        ) from exc


def _checked_rows(
    source: Source, options: ConvertOptions
) -> tuple[list[Item], list[Item | None], list[Item]]:
    """Check the source and the options; return the S2, S1 and map item of every metadata row."""
    if source.table is None:
        raise SourceError(
            f"{source.root} holds no metadata.parquet; Zarr stores labels and splits, so it needs one"
        )
    options.validate()
    rows = rows_of(source)
    if len(rows[0]) == 0:
        raise SourceError(f"{source.root}: the metadata tables hold no patches")
    return rows


def _build_record(source: Source, options: ConvertOptions, s2_items: list[Item], tasks) -> dict:
    """What the partial build is resumed against (source, keys, inputs, options and tasks)."""
    return {
        "format": "zarr",
        "writer": 2,  # shard files written directly (issue 16); a build of the earlier writer starts over
        "source": source.describe(),
        "keys": digest([it.key for it in s2_items]),
        "inputs": source.inputs,
        "options": options_record(
            options, ("stack", "stack_method", "shard_patches", "class_order", "compressor")
        ),
        "tasks": tasks,
    }
