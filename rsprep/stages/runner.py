"""One way to run per-tile tasks: in this process, or in spawned worker processes (docs/architecture.md)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any


def run_tasks(
    fn: Callable[[Any], Any],
    tasks: Sequence[Any],
    *,
    workers: int = 1,
    on_result: Callable[[Any], None] | None = None,
) -> list[Any]:
    """``[fn(t) for t in tasks]``, in task order; ``on_result`` sees each result as it finishes.

    ``fn`` must be a module-level function that turns its own failures into results (a failing
    tile never takes the others down). With ``workers > 1`` the tasks run in spawned processes:
    GDAL and numba threads do not survive ``fork`` safely.
    """
    results: list[Any] = [None] * len(tasks)
    if workers <= 1 or len(tasks) <= 1:
        for i, t in enumerate(tasks):
            results[i] = fn(t)
            if on_result:
                on_result(results[i])
        return results
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=ctx) as pool:
        futures = {pool.submit(fn, t): i for i, t in enumerate(tasks)}
        for fut in as_completed(futures):
            i = futures[fut]
            results[i] = fut.result()
            if on_result:
                on_result(results[i])
    return results
