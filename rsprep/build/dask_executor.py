"""The per-product tasks on a Dask distributed cluster (docs/build.md#distributed).

:class:`DaskExecutor` implements :class:`rsprep.build.executor.Executor` on a ``distributed.Client``:
every task becomes one Dask future (``pure=False``: a task is never merged with another), results come
back in submission order and ``on_result`` sees each one as it finishes. A task whose function raises
an :class:`~rsprep.errors.RsprepError` or :class:`OSError` comes back as a failed
:class:`~rsprep.stages.runner.StageResult`, as with :class:`~rsprep.build.executor.LocalExecutor`.
When a worker dies while it runs a task, the scheduler runs the task again on another worker (up to
``distributed.scheduler.allowed-failures`` times, then :class:`TaskLostError`); the tasks are idempotent
and write through temporaries and renames, and the next holder of a dead task's store lock removes
its temporaries, so a lost worker never leaves a half-written store.

Before the first task, :meth:`DaskExecutor.check_visible` writes a probe file into the work store and
asks every worker (``client.run``) to read it back and to find the inputs; workers that cannot are
named and nothing is submitted. The same probe counts each host's cores and Dask threads, and each task
caps its libraries' threads (:data:`~rsprep.build.executor.THREAD_VARIABLES`, numba, Blosc) to
``host cores // Dask threads on the host``, set inside the task since a running worker's environment
cannot be inherited. The cluster itself is opened by :mod:`rsprep.build.dask_cluster`.
"""

from __future__ import annotations

import os
import socket
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rsprep.build.executor import THREAD_VARIABLES, cores
from rsprep.errors import RsprepError
from rsprep.stages.runner import FAILED, StageResult, Task

DIST_MISSING = "Dask distributed is not installed: pip install 'rsprep[dist]'"
PROBE = ".rsprep-probe-{}"


class MissingExtraError(RsprepError, ImportError):
    """An optional extra of rsprep (``dist``) is not installed."""


class DistributedError(RsprepError, RuntimeError):
    """The Dask cluster cannot run the build (unreachable, no workers, lost tasks)."""


class WorkStoreNotVisibleError(DistributedError, FileNotFoundError):
    """Some Dask workers cannot see the work store or an input."""


class TaskLostError(DistributedError):
    """The workers running a task died too often."""


def import_distributed():
    """The ``distributed`` module, or :class:`MissingExtraError` saying which extra to install."""
    try:
        import distributed
    except ImportError as exc:
        raise MissingExtraError(f"{DIST_MISSING} ({exc})") from exc
    return distributed


class DaskExecutor:
    """Tasks as Dask futures of ``client`` (or of the client ``connect()`` opens at the first task).

    ``connect`` returns ``(client, closer)``: the executor calls it once, when it first needs workers
    (a build with nothing to do starts no cluster), and ``closer()`` in :meth:`close`.
    """

    def __init__(
        self,
        client: Any = None,
        *,
        connect: Callable[[], tuple[Any, Callable[[], None]]] | None = None,
        kind: str = "scheduler",
    ) -> None:
        if client is None and connect is None:
            raise ValueError("DaskExecutor needs a client or a connect function")
        self._client, self._connect, self._closer = client, connect, None
        self.kind = kind
        self._tasks: list[Task] = []
        self._caps: dict[str, int] = {}
        self._visible: list[str] = []
        self.startup_seconds = 0.0  # connecting, or starting the cluster and its first worker

    @property
    def client(self):
        if self._client is None:
            t0 = time.perf_counter()
            self._client, self._closer = self._connect()  # type: ignore[misc]
            self.startup_seconds = round(time.perf_counter() - t0, 3)
        return self._client

    @property
    def workers(self) -> int:
        return len(self.client.scheduler_info().get("workers", {})) if self._client is not None else 0

    def describe(self) -> dict[str, Any]:
        """What ``OUT/build.json`` records of where the tasks ran."""
        found: dict[str, Any] = {"kind": "dask", "cluster": self.kind}
        if self._client is not None:
            info = self._client.scheduler_info()
            workers = info.get("workers", {})
            found.update(
                scheduler=info.get("address"),
                workers=len(workers),
                hosts=len({w.get("host") for w in workers.values()}),
                threads_per_task=dict(sorted(self._caps.items())),
                startup_seconds=self.startup_seconds,
            )
        return found

    def close(self) -> None:
        if self._closer is not None:
            closer, self._closer = self._closer, None
            closer()

    # ---- the Executor protocol ---------------------------------------------------------------
    def submit(self, task: Task) -> None:
        self._tasks.append(task)

    def collect(self, on_result: Callable[[Any], None] | None = None) -> list[Any]:
        """Run every submitted task on the cluster; returns their results in submission order.

        Raises:
            TaskLostError: the workers running a task died ``allowed-failures`` times.
        """
        tasks, self._tasks = self._tasks, []
        if not tasks:
            return []
        distributed = import_distributed()
        client = self.client
        if not self._caps:
            self._caps = {h["host"]: h["threads"] for h in _hosts(self._probe(None, []))}
        run = uuid.uuid4().hex[:8]
        futures = [
            client.submit(run_task, t, self._caps, self._visible, key=f"rsprep-{t[0]}-{run}-{i}", pure=False)
            for i, t in enumerate(tasks)
        ]
        index = {f.key: i for i, f in enumerate(futures)}
        results: list[Any] = [None] * len(tasks)
        try:
            for fut in distributed.as_completed(futures, loop=client.loop):
                i = index[fut.key]
                try:
                    results[i] = fut.result()
                except distributed.KilledWorker as exc:
                    raise TaskLostError(
                        f"{tasks[i][1]}: the Dask workers running it died again and again ({exc}); often "
                        "they ran out of memory: give the workers more memory (cluster.memory) or fewer "
                        "processes per job, then run the same command again (finished products are kept)"
                    ) from None
                if on_result:
                    on_result(results[i])
        finally:
            client.cancel([f for f in futures if not f.done()])
        return results

    # ---- before the first task ---------------------------------------------------------------
    def check_visible(self, work: Path, inputs: Sequence[Path]) -> None:
        """Refuse unless every worker reads a probe file written into ``work`` and finds ``inputs``.

        Raises:
            WorkStoreNotVisibleError: naming each worker (address, host) that cannot, and what it lacks.
            DistributedError: no worker joined.
        """
        work = Path(work).resolve()
        token = uuid.uuid4().hex
        probe = work / PROBE.format(token[:12])
        probe.write_text(token)
        try:
            seen = self._probe(probe, [str(Path(p).resolve()) for p in inputs], token)
        finally:
            probe.unlink(missing_ok=True)
        blind = {w: r for w, r in seen.items() if r["problems"]}
        if blind:
            lines = [f"{w} (host {r['host']}): {'; '.join(r['problems'])}" for w, r in sorted(blind.items())]
            raise WorkStoreNotVisibleError(
                f"{len(blind)} of {len(seen)} Dask worker(s) cannot see the build's files, so nothing was "
                f"submitted: {' | '.join(lines)}; put OUT ({work.parent}) and the inputs on a file system "
                "that every worker mounts at the same path (e.g. the cluster's shared /scratch or /home), "
                "or build on one machine without --scheduler / --cluster"
            )
        self._caps = {h["host"]: h["threads"] for h in _hosts(seen)}
        self._visible = [str(work), *(str(Path(p).resolve()) for p in inputs)]

    def _probe(self, probe: Path | None, inputs: list[str], token: str = "") -> dict[str, dict]:
        client = self.client
        if not client.scheduler_info().get("workers"):
            raise DistributedError(
                f"the Dask scheduler {client.scheduler_info().get('address')} has no workers; start some "
                "(`dask worker ADDRESS` on each node) or check the cluster's batch jobs"
            )
        return client.run(probe_worker, str(probe) if probe else None, token, inputs)


def _hosts(seen: dict[str, dict]) -> list[dict]:
    """Per host: its cores and the threads one task may use (cores // Dask threads on the host)."""
    hosts: dict[str, dict] = {}
    for r in seen.values():
        h = hosts.setdefault(r["host"], {"host": r["host"], "cores": r["cores"], "slots": 0})
        h["slots"] += r["nthreads"]
    for h in hosts.values():
        h["threads"] = max(1, h["cores"] // max(1, h["slots"]))
    return list(hosts.values())


def probe_worker(probe: str | None, token: str, inputs: list[str], dask_worker=None) -> dict[str, Any]:
    """On a worker: its host, cores and Dask threads, and what of ``probe`` / ``inputs`` it lacks."""
    problems = []
    if probe is not None:
        try:
            if Path(probe).read_text() != token:
                problems.append(f"reads another file at {probe} (not the same file system)")
        except OSError as exc:
            problems.append(f"cannot read the work store's probe {probe} ({exc.strerror or exc})")
    problems += [f"cannot see {p}" for p in inputs if not os.path.exists(p)]
    nthreads = getattr(dask_worker, "nthreads", None) or getattr(dask_worker.state, "nthreads", 1)
    return {"host": socket.gethostname(), "cores": cores(), "nthreads": nthreads, "problems": problems}


def run_task(task: Task, caps: dict[str, int], visible: Sequence[str]) -> Any:
    """On a worker: ``task`` with its threads capped; RsprepError / OSError → a failed StageResult."""
    stage, label, fn, args = task
    t0 = time.perf_counter()
    host = socket.gethostname()
    missing = [p for p in visible if not os.path.exists(p)]
    if missing:  # a worker that joined after the probe
        error = f"Dask worker on {host} cannot see {', '.join(missing)}; mount them at the same path there"
        return StageResult(stage, label, FAILED, error=error)
    cap_threads(caps.get(host, 1))
    try:
        return fn(*args)
    except (RsprepError, OSError) as exc:
        return StageResult(stage, label, FAILED, error=str(exc), seconds=time.perf_counter() - t0)


def cap_threads(threads: int) -> None:
    """Cap the thread pools of this worker process: the environment (GDAL reads it at each open,
    OpenMP and numba when they start) and, when already started, numba's and Blosc's pools."""
    os.environ.update({k: str(threads) for k in THREAD_VARIABLES})
    numba = sys.modules.get("numba")
    if numba is not None:
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    blosc = sys.modules.get("numcodecs.blosc")
    if blosc is not None:
        blosc.set_nthreads(threads)
