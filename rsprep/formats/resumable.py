"""Resumable builds: the shared machinery of the three format writers (LMDB, Zarr, GeoTIFF).

Every output is built in a hidden sibling (``.<name>.partial``) that holds a state file naming the
plan (format, source, options and the task list, as one digest) and a progress log of finished tasks.
An interrupted run leaves both behind; the next run with the same plan resumes after the last task it
logged, a run with another plan starts over. Only a complete build is moved into place, so an existing
output is replaced (``--overwrite``) only by a finished one.

Tasks are read in worker processes (spawned, like the per-tile stages; :func:`run_ordered`) or, where
reading releases the GIL, in threads of the writing process (:func:`run_threaded`), and handed back in
task order, at most ``2 * workers`` ahead of the writer, so memory stays bounded whatever the dataset size.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rsprep import __version__
from rsprep.errors import InvalidParameterError, OutputExistsError, RsprepError
from rsprep.store.atomic import boot_id, digest, sync_filesystem, write_json_atomic
from rsprep.store.pool import worker_pool

log = logging.getLogger(__name__)
#: Where the writers report resuming or discarding a partial build unless a caller passes ``say``.
say_log: Callable[[str], None] = log.info
#: Called as ``progress(done, total)``: values written so far (a resumed build starts above 0) and in all.
Progress = Callable[[int, int], None]

FORMATS = ("lmdb", "zarr", "tiff")
STATE = "rsprep-convert.json"
PROGRESS = "rsprep-progress.log"


class ConvertError(RsprepError, RuntimeError):
    """Writing a converted output failed (disk full, unreadable input …); progress so far is kept."""


CLASS_ORDERS = ("alphabetical", "paper")
COMPRESSORS = ("lz4", "zstd", "none")
STACK_METHODS = ("bilinear", "nearest")  # as the stack stage (rsprep.core.kernels.RESAMPLING)


@dataclass
class ConvertOptions:
    """How ``rsprep convert`` writes (the format-specific fields apply to Zarr only)."""

    workers: int = 1
    overwrite: bool = False
    chunk: int = 0  # values per task; 0 = a default per format and source
    stack: bool = False  # zarr: also write s2_stacked
    stack_method: str = "bilinear"
    shard_patches: int = 1024  # zarr: patches per shard
    class_order: str = "alphabetical"  # zarr: column order of the multi-hot labels
    compressor: str = "none"  # zarr image arrays: none (fastest random access), or Blosc lz4 / zstd

    def validate(self) -> None:
        """Raises:
        InvalidParameterError: a value out of range, naming its flag.
        """
        if self.workers < 1:
            raise InvalidParameterError(f"--workers must be at least 1, not {self.workers}")
        if self.chunk < 0:
            raise InvalidParameterError(f"--chunk must be 0 (the default) or more values, not {self.chunk}")
        if self.stack_method not in STACK_METHODS:
            raise InvalidParameterError(
                f"--stack-method {self.stack_method!r} is not one of {', '.join(STACK_METHODS)}"
            )
        if self.class_order not in CLASS_ORDERS:
            raise InvalidParameterError(
                f"--class-order {self.class_order!r} is not one of paper, alphabetical"
            )
        if self.compressor not in COMPRESSORS:
            raise InvalidParameterError(
                f"--compressor {self.compressor!r} is not one of {', '.join(COMPRESSORS)}"
            )
        if self.shard_patches < 1:
            raise InvalidParameterError(f"--shard-patches must be at least 1, not {self.shard_patches}")


@dataclass
class ConvertResult:
    format: str
    path: str
    values: dict[str, int]
    tasks: int
    resumed_tasks: int
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class PartialBuild:
    """A resumable build of ``dest`` in ``path`` (default: ``.<dest name>.partial`` beside it)."""

    dest: Path
    plan: dict[str, Any]
    path: Path | None = None
    done: set[int] = field(default_factory=set)
    resumed: bool = False
    resumed_tasks: int = 0  # tasks an earlier, interrupted run had finished
    #: Tasks are logged before their files reach the disk (no fsync per file; :meth:`sync` once at the
    #: end): the log is then bound to this boot, and a build interrupted by a restart starts over.
    unsynced: bool = False

    def __post_init__(self) -> None:
        if self.path is None:
            self.path = self.dest.with_name(f".{self.dest.name}.partial")

    @property
    def state_path(self) -> Path:
        return self.path / STATE

    def start(
        self,
        *,
        exists: bool,
        overwrite: bool,
        say: Callable[[str], None],
        what: str = "",
        prepare: Callable[[Path], None] | None = None,
    ) -> None:
        """Refuse a finished output without ``overwrite``; resume a matching interrupted build.

        A fresh build runs ``prepare(path)`` (e.g. creating a Zarr hierarchy) before the state file is
        written, so a build interrupted while preparing is never resumed.
        """
        if exists and not overwrite:
            raise OutputExistsError(f"{what or self.dest} exists; pass --overwrite to rebuild it")
        plan_digest = digest(self.plan)
        if self.path.is_dir():
            state = _read_json(self.state_path)
            restarted = state.get("boot") not in (None, "synced", boot_id())
            if restarted and state.get("plan_digest") == plan_digest:
                say(
                    f"discarding {self.path}: the machine restarted since it was written and it was not "
                    "synced to disk"
                )
            elif state.get("plan_digest") == plan_digest:
                self.done = _read_progress(self.path / PROGRESS)
                self.resumed = True
                self.resumed_tasks = len(self.done)
                if self.unsynced:  # what this run adds is unsynced again
                    self._write_state(boot_id() or "unknown")
                say(f"resuming the interrupted build in {self.path}: {len(self.done)} task(s) already done")
                return
            else:
                say(f"discarding {self.path}: an interrupted build of other inputs or options")
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True)
        if prepare is not None:
            prepare(self.path)
        self._write_state((boot_id() or "unknown") if self.unsynced else None)

    def _write_state(self, boot: str | None) -> None:
        state = {"plan_digest": digest(self.plan), "plan": self.plan, "rsprep_version": __version__}
        if boot is not None:
            state["boot"] = boot
        write_json_atomic(self.state_path, state)

    def sync(self) -> None:
        """Flush the partial build to disk (one ``syncfs``); an unsynced build's log then survives a
        restart. Call before the build is moved into place, and on an orderly stop."""
        sync_filesystem(self.path)
        if self.unsynced and self.state_path.is_file():
            self._write_state("synced")

    def log(self, task: int) -> None:
        with open(self.path / PROGRESS, "a") as f:
            f.write(f"{task}\n")
            f.flush()
            os.fsync(f.fileno())
        self.done.add(task)

    def cleanup(self) -> None:
        """Remove the bookkeeping files before the build is moved into place."""
        self.state_path.unlink(missing_ok=True)
        (self.path / PROGRESS).unlink(missing_ok=True)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _read_progress(path: Path) -> set[int]:
    if not path.is_file():
        return set()
    done = set()
    for line in path.read_text().splitlines():
        if line.strip().isdigit():  # a line cut short by an interruption is ignored
            done.add(int(line))
    return done


def group_plan(fmt: str, source, size: int) -> tuple[list[tuple[int, str, list]], list[int], dict[str, Any]]:
    """Read tasks of at most ``size`` values for every group (S1, S2, maps, in write order).

    Returns ``(unit, group, items)`` per task, the number of tasks of each write unit
    (:meth:`Source.units`) and the plan record.
    """
    from rsprep.core.values import GROUPS

    tasks: list[tuple[int, str, list]] = []
    per_unit: list[int] = []
    for g in GROUPS:
        for unit in source.units(g, size):
            tasks.extend((len(per_unit), g, items) for items in unit)
            per_unit.append(len(unit))
    record = {
        "format": fmt,
        "source": source.describe(),
        "keys": digest([[g, [it.key for it in items]] for _, g, items in tasks]),
        "inputs": source.inputs,
        "units": per_unit,
    }
    return tasks, per_unit, record


def chunks(items: Sequence[Any], size: int) -> list[tuple[int, int]]:
    """(start, stop) ranges of at most ``size`` items covering ``items``."""
    return [(i, min(i + size, len(items))) for i in range(0, len(items), max(1, size))]


def run_ordered(
    fn: Callable[[Any], Any],
    tasks: Iterable[tuple[int, Any]],
    *,
    workers: int,
    on_result: Callable[[int, Any], None],
    what: str = "the output",
) -> None:
    """Call ``fn(payload)`` for each ``(task id, payload)`` and hand results to ``on_result`` in order.

    With ``workers > 1`` the calls run in spawned processes, at most ``2 * workers`` ahead of the
    consumer. The first failure cancels what is queued and is raised; an ``OSError`` (a full disk)
    becomes a :class:`ConvertError` that names ``what`` and says how to resume.
    """
    try:
        _run_ordered(fn, iter(tasks), workers, on_result)
    except OSError as exc:
        raise ConvertError(
            f"writing {what} failed ({exc}); finished tasks are kept, free disk space and run the same "
            "command again to resume"
        ) from exc


def _run_ordered(fn, tasks, workers: int, on_result) -> None:
    if workers <= 1:
        for tid, payload in tasks:
            on_result(tid, fn(payload))
        return
    from concurrent.futures.process import BrokenProcessPool

    try:
        _ahead(worker_pool(workers), fn, tasks, 2 * workers, on_result)
    except BrokenProcessPool as exc:
        raise ConvertError(
            f"a worker process died ({exc}); the finished tasks are kept: run the same command again "
            "to resume, with fewer --workers if memory ran out"
        ) from exc


def _ahead(pool, fn, tasks, ahead: int, on_result) -> None:
    """The calls of ``fn`` on ``pool``, at most ``ahead`` running ahead of ``on_result`` (in task order);
    on any failure what is queued is cancelled and the pool shut down before the error goes on."""
    pending: deque = deque()
    try:
        for tid, payload in tasks:
            pending.append((tid, pool.submit(fn, payload)))
            if len(pending) >= ahead:
                tid0, fut = pending.popleft()
                on_result(tid0, fut.result())
        while pending:
            tid0, fut = pending.popleft()
            on_result(tid0, fut.result())
    finally:
        for _, fut in pending:
            fut.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


def run_threaded(
    fn: Callable[[Any], Any],
    tasks: Iterable[tuple[int, Any]],
    *,
    threads: int,
    on_result: Callable[[int, Any], None],
    what: str = "the output",
) -> None:
    """:func:`run_ordered` with the calls in ``threads`` threads of this process, for readers whose
    work releases the GIL (file reads, Blosc): results are not pickled. At most ``2 * threads`` calls
    run ahead of the consumer; the first failure cancels the rest and is raised."""
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max(1, threads), thread_name_prefix="rsprep-read")
    try:
        _ahead(pool, fn, tasks, 2 * max(1, threads), on_result)
    except OSError as exc:
        raise ConvertError(
            f"writing {what} failed ({exc}); finished tasks are kept, free disk space and run the same "
            "command again to resume"
        ) from exc


class Counter:
    """Counts written values and reports them to a :data:`Progress` callback (if any)."""

    def __init__(self, total: int, progress: Progress | None, done: int = 0) -> None:
        self.total, self.done, self._progress = total, 0, progress
        self.add(done)

    def add(self, n: int) -> None:
        self.done += n
        if self._progress is not None:
            self._progress(self.done, self.total)


def options_record(options: ConvertOptions, keys: Sequence[str]) -> dict[str, Any]:
    d = asdict(options)
    return {k: d[k] for k in keys}
