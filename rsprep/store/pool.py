"""Spawned worker pools whose workers die with their parent (docs/architecture.md#execution).

Every parallel stage and writer runs its tasks in a :func:`worker_pool`. Each worker starts a
watchdog thread that exits the worker as soon as its parent is gone (``kill -9`` of the parent
included; on Linux ``PR_SET_PDEATHSIG`` makes it immediate), so no orphan keeps writing or moving
files into place. Each worker also records itself (pid and start time) beside every lock its parent
holds (:mod:`rsprep.store.lock`), so that a run taking over a dead run's lock can stop stragglers
before it touches anything.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from rsprep.store import lock

#: How often a worker checks that its parent is alive (seconds).
WATCH_INTERVAL = 0.2
_PR_SET_PDEATHSIG = 1


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """A ``spawn`` process pool of ``workers`` processes that die with this process.

    GDAL and numba's OpenMP threads do not survive ``fork``, hence ``spawn``.
    """
    import multiprocessing as mp

    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=mp.get_context("spawn"),
        initializer=_init_worker,
        initargs=(os.getpid(), [str(p) for p in lock.held_locks()]),
    )


def _init_worker(parent: int, outputs: list[str]) -> None:
    _die_with(parent)
    start = lock.process_start(os.getpid())
    for output in outputs:
        with contextlib.suppress(OSError):
            fd = os.open(lock.workers_path(Path(output)), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, f"{os.getpid()} {start}\n".encode())
            finally:
                os.close(fd)


def _die_with(parent: int) -> None:
    """Exit this process when ``parent`` is no longer its parent."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(WATCH_INTERVAL)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="rsprep-parent-watchdog", daemon=True).start()
