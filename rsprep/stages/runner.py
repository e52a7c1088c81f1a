"""The one way per-tile stages run their tasks (docs/architecture.md#execution).

A task is one product (``patch``) or one tile store (``stack``, ``s1``, ``reference``). Every stage
hands its tasks to :func:`execute`, which runs them in this process or in spawned worker processes
and turns a task's failure into a ``failed`` :class:`StageResult` (a failing tile never takes the
others down). Results come back in task order; ``on_result`` sees each one as it finishes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rsprep.errors import InvalidParameterError, RsprepError
from rsprep.store.atomic import LOCK_WAIT
from rsprep.store.lock import locked
from rsprep.store.pool import worker_pool

DONE, SKIPPED, FAILED = "done", "skipped", "failed"


@dataclass
class StageResult:
    """What one task of a per-tile stage did.

    ``counts`` holds the stage's own figures (patch: ``valid``; s1: ``paired``; reference:
    ``labeled``, ``polygons``); they read as attributes too (``result.paired``).
    """

    stage: str
    target: str  # the product (patch) or the tile store a task worked on
    status: str  # done | skipped | failed
    store: str | None = None
    patches: int = 0
    seconds: float = 0.0
    error: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what the user may want to know
    warnings: list[str] = field(default_factory=list)  # what the user should look at

    def __getattr__(self, name: str) -> Any:
        counts = self.__dict__.get("counts")
        if counts is not None and name in counts:
            return counts[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    @property
    def product(self) -> str:
        """The task's input (kept for the patch stage, whose tasks are products)."""
        return self.target


#: A task: (stage name, label shown on failure, module-level function, its arguments).
Task = tuple[str, str, Callable[..., StageResult], tuple]


def store_tasks(stage: str, fn: Callable[..., StageResult], stores: Sequence[Any], *args: Any) -> list[Task]:
    """One task per tile store: ``fn(store_path, *args)``, holding the store's lock."""
    return [(stage, str(s.path), _locked_store, (fn, str(s.path), *args)) for s in stores]


def _locked_store(fn: Callable[..., StageResult], path: str, *args: Any) -> StageResult:
    """``fn(path, *args)`` while holding the tile store's lock (the one ``patch`` builds it under)."""
    with locked(path, "tile store", wait=LOCK_WAIT):
        return fn(path, *args)


def execute(
    tasks: Sequence[Task], *, workers: int = 1, on_result: Callable[[StageResult], None] | None = None
) -> list[StageResult]:
    """Run every task; returns their results in task order.

    With ``workers > 1`` the tasks run in spawned processes that die with this one
    (:func:`rsprep.store.pool.worker_pool`); the functions must be importable module-level functions.
    """
    results: list[StageResult | None] = [None] * len(tasks)
    if workers <= 1 or len(tasks) <= 1:
        for i, task in enumerate(tasks):
            results[i] = _guarded(task)
            if on_result:
                on_result(results[i])
        return results  # type: ignore[return-value]
    from concurrent.futures import as_completed

    with worker_pool(min(workers, len(tasks))) as pool:
        futures = {pool.submit(_guarded, task): i for i, task in enumerate(tasks)}
        for fut in as_completed(futures):
            i = futures[fut]
            results[i] = fut.result()
            if on_result:
                on_result(results[i])
    return results  # type: ignore[return-value]


def _guarded(task: Task) -> StageResult:
    stage, label, fn, args = task
    t0 = time.perf_counter()
    try:
        return fn(*args)
    except (RsprepError, OSError) as exc:
        return StageResult(stage, label, FAILED, error=str(exc), seconds=time.perf_counter() - t0)


def check_workers(workers: int) -> int:
    """``workers`` when it is at least 1.

    Raises:
        InvalidParameterError: naming ``--workers``.
    """
    if workers < 1:
        raise InvalidParameterError(f"--workers must be at least 1, not {workers}")
    return workers
