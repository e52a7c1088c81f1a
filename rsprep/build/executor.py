"""Where the build's tasks run: one small interface (docs/build.md#execution).

A task is the :data:`rsprep.stages.runner.Task` tuple (stage, label, module-level function, its
arguments). An :class:`Executor` takes tasks with :meth:`~Executor.submit` and hands their results
back, in submission order, from :meth:`~Executor.collect`. :class:`LocalExecutor` runs them in
spawned worker processes of this machine (:func:`rsprep.stages.runner.execute`, whose workers die
with their parent); :class:`rsprep.build.dask_executor.DaskExecutor` implements the same two methods
on a Dask cluster, plus ``check_visible(work, inputs)``, which the build calls before submitting
when an executor has it.

Threads inside a worker are capped (:func:`thread_caps`) so that ``workers × threads ≤ cores``: GDAL's
and OpenJPEG's decoders, numba's and OpenMP's pools and Blosc read their thread counts from the
environment when they start, and spawned workers inherit the environment of the moment they start.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

from rsprep.stages.runner import Task, check_workers, execute

#: Peak memory of one worker patching a full 10980 × 10980 tile (measured 1.2–2.5 GB, docs/build.md).
TILE_MEMORY_BYTES = int(2.5 * 2**30)
#: The environment variables that set the thread pools of the libraries a worker uses.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "GDAL_NUM_THREADS", "BLOSC_NTHREADS")


class Executor(Protocol):
    """Runs tasks somewhere; results come back in the order the tasks were submitted."""

    workers: int

    def submit(self, task: Task) -> None: ...

    def collect(self, on_result: Callable[[Any], None] | None = None) -> list[Any]: ...


class LocalExecutor:
    """Tasks in ``workers`` spawned processes of this machine (in this process for one worker).

    A task whose function raises an :class:`~rsprep.errors.RsprepError` or :class:`OSError` comes
    back as a failed :class:`~rsprep.stages.runner.StageResult`; the other tasks go on.
    """

    def __init__(self, workers: int) -> None:
        self.workers = check_workers(workers)
        self._tasks: list[Task] = []

    def submit(self, task: Task) -> None:
        self._tasks.append(task)

    def collect(self, on_result: Callable[[Any], None] | None = None) -> list[Any]:
        """Run every submitted task; returns their results in submission order."""
        tasks, self._tasks = self._tasks, []
        if not tasks:
            return []
        with thread_caps(threads_per_worker(min(self.workers, len(tasks)))):
            return execute(tasks, workers=self.workers, on_result=on_result)


def cores() -> int:
    """The CPU cores this process may use (its affinity mask, else the CPU count)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def available_memory() -> int | None:
    """Bytes of memory available now (``MemAvailable`` of /proc/meminfo; None where unknown)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def default_workers(n_cores: int | None = None, memory: int | None = None) -> int:
    """``min(cores, available memory / 2.5 GB)``, at least 1: a full tile needs up to 2.5 GB per worker."""
    n_cores = n_cores if n_cores is not None else cores()
    memory = memory if memory is not None else available_memory()
    by_memory = n_cores if memory is None else memory // TILE_MEMORY_BYTES
    return max(1, min(n_cores, int(by_memory)))


def threads_per_worker(workers: int, n_cores: int | None = None) -> int:
    """Threads each of ``workers`` processes may use so that workers × threads ≤ cores (at least 1)."""
    return max(1, (n_cores if n_cores is not None else cores()) // max(1, workers))


@contextlib.contextmanager
def thread_caps(threads: int) -> Iterator[None]:
    """Set :data:`THREAD_VARIABLES` to ``threads`` (spawned workers inherit them), then restore them."""
    before = {k: os.environ.get(k) for k in THREAD_VARIABLES}
    os.environ.update({k: str(threads) for k in THREAD_VARIABLES})
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_all(executor: Executor, tasks: Sequence[Task], on_result: Callable[[Any], None] | None = None):
    """Submit ``tasks`` to ``executor`` and collect their results (in task order)."""
    for task in tasks:
        executor.submit(task)
    return executor.collect(on_result)
