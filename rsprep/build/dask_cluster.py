"""Opening the Dask cluster of a build: ``--scheduler tcp://HOST:PORT`` or a ``cluster:`` spec.

:func:`open_executor` yields a :class:`~rsprep.build.dask_executor.DaskExecutor` that connects when its
first task is collected (a build with nothing to do starts no cluster) and closes the client, and a
cluster it started, at the end. A ``cluster:`` section (:mod:`rsprep.build.recipe_cluster`) starts a
``distributed.LocalCluster`` (loopback, processes, one thread each) or a dask-jobqueue ``SLURMCluster``
/ ``PBSCluster`` scaled to ``jobs`` batch jobs. The workers never pause or spill for memory (a task's
result is a few kB; a paused worker would stall the build): their memory limit only ends a worker
that outgrows it, and the task is run again elsewhere.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any

from rsprep.build.dask_executor import DaskExecutor, DistributedError, MissingExtraError, import_distributed
from rsprep.build.executor import THREAD_VARIABLES, cores
from rsprep.errors import InvalidParameterError

#: Dask settings of every worker the build starts (and of a LocalCluster's scheduler and workers, through
#: their nannies): no memory management (a task's arrays are not Dask's to spill), no statistical
#: profiler (by default it walks every task thread's stack each 10 ms, holding the GIL, for a dashboard
#: rsprep does not start), and quiet event loops. By default every scheduler, nanny and worker wakes
#: each 20 ms to time its own event loop (a diagnostic: the "unresponsive" warning still fires after
#: ``distributed.admin.tick.limit``, 3 s, when it ticks each second) and each 500 ms to sample psutil
#: for the dashboard: an idle LocalCluster of 2 workers burnt 6.4 CPU seconds a minute that way, 0.9
#: with these settings (docs/BENCHMARKS.md), CPU that a task of a busy node does not get.
WORKER_CONFIG = {
    "distributed.worker.memory.target": False,
    "distributed.worker.memory.spill": False,
    "distributed.worker.memory.pause": False,
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "5s",
}
JOBQUEUE_MISSING = "dask-jobqueue is not installed: pip install 'rsprep[dist]'"


class SchedulerUnreachableError(DistributedError, ConnectionError):
    """``--scheduler`` names an address where no Dask scheduler answers."""


@contextlib.contextmanager
def open_executor(*, scheduler: str | None = None, cluster=None, workers: int = 1) -> Iterator[DaskExecutor]:
    """A Dask executor for ``scheduler`` (an address) or ``cluster`` (a ClusterSection).

    Raises:
        MissingExtraError: distributed (or dask-jobqueue for slurm / pbs) is not installed.
        InvalidParameterError: both or neither of ``scheduler`` and ``cluster``, or a bad address.
    """
    import_distributed()  # fail before the plan, not at the first task
    if (scheduler is None) == (cluster is None):
        raise InvalidParameterError("give either --scheduler tcp://HOST:PORT or a cluster (--cluster KIND)")
    if scheduler is not None:
        check_address(scheduler)
        executor = DaskExecutor(connect=lambda: _closing(connect(scheduler)), kind="scheduler")
    else:
        if cluster.kind != "local":
            _import_jobqueue()
        executor = DaskExecutor(connect=lambda: start_cluster(cluster, workers), kind=cluster.kind)
    try:
        yield executor
    finally:
        executor.close()


def _closing(client):
    return client, client.close


def check_address(address: str) -> None:
    """Raises InvalidParameterError unless ``address`` reads ``PROTOCOL://HOST:PORT``."""
    proto, sep, rest = address.partition("://")
    if not sep or not proto or ":" not in rest or not rest.rsplit(":", 1)[1].isdigit():
        raise InvalidParameterError(
            f"--scheduler {address!r}: give the scheduler's address as tcp://HOST:PORT "
            "(what `dask scheduler` prints, e.g. tcp://10.0.0.5:8786)"
        )


def connect(address: str):
    """A client of the scheduler at ``address`` (``distributed.comm.timeouts.connect`` to answer).

    Raises:
        SchedulerUnreachableError: nothing answers there; the message names the address and the fix.
    """
    import dask

    distributed = import_distributed()
    timeout = dask.config.get("distributed.comm.timeouts.connect")
    try:
        return distributed.Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise SchedulerUnreachableError(
            f"no Dask scheduler answers at {address} within {timeout} ({exc}); start one there "
            f"(`dask scheduler`, then `dask worker {address}` on each node), check the host, port and "
            "firewall, or leave out --scheduler to build on this machine"
        ) from None


def start_cluster(section, workers: int) -> tuple[Any, Any]:
    """Start the cluster of ``section``, scale it, wait for a first worker; returns (client, closer)."""
    import dask

    distributed = import_distributed()
    settings = dask.config.set({**WORKER_CONFIG, **_spawn_environ(section, workers)})  # until close()
    try:
        if section.kind == "local":
            cluster = distributed.LocalCluster(
                n_workers=section.processes or workers,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
                memory_limit=section.memory or 0,
                local_directory=section.local_directory,
            )
        else:
            cluster = _jobqueue_cluster(section)
            cluster.scale(jobs=section.jobs)
    except BaseException:
        settings.__exit__(None, None, None)
        raise
    client = distributed.Client(cluster, set_as_default=False)

    def close() -> None:
        client.close()
        cluster.close()
        settings.__exit__(None, None, None)

    try:
        client.wait_for_workers(1, timeout=section.wait)
    except (TimeoutError, OSError) as exc:
        close()
        raise DistributedError(
            f"no Dask worker of the {section.kind} cluster joined within {section.wait:g} s ({exc}); "
            "check the batch jobs (squeue / qstat, their logs), or raise cluster.wait"
        ) from None
    return client, close


def _spawn_environ(section, workers: int) -> dict:
    """The environment a LocalCluster's nannies give each worker process before it starts: the thread
    caps of the local executor (cores ÷ workers), and not Dask's default ``MALLOC_TRIM_THRESHOLD_``
    (which turns off glibc's dynamic mmap threshold, so every large array is mapped and zeroed afresh),
    so a worker process runs a task as a local executor's worker does."""
    if section.kind != "local":
        return {}
    threads = max(1, cores() // (section.processes or workers))
    return {PRE_SPAWN: worker_environ(threads)}


#: The Dask setting of what a nanny puts in its worker's environment before starting it.
PRE_SPAWN = "distributed.nanny.pre-spawn-environ"


def worker_environ(threads: int) -> dict[str, str]:
    """The thread caps of one worker process, replacing Dask's ``pre-spawn-environ`` (and so leaving
    out its ``MALLOC_TRIM_THRESHOLD_``)."""
    names = (*THREAD_VARIABLES, "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
    return {k: str(threads) for k in names}


def _config_export(key: str, value) -> str:
    """A shell ``export`` of a Dask setting as its environment variable (Dask reads the value with
    ``ast.literal_eval``, so a dict is given as its Python literal)."""
    name = "DASK_" + key.upper().replace(".", "__").replace("-", "_")
    return f'export {name}="{value!r}"' if isinstance(value, dict) else f"export {name}={value}"


def _jobqueue_cluster(section):
    jobqueue = _import_jobqueue()
    cls = jobqueue.SLURMCluster if section.kind == "slurm" else jobqueue.PBSCluster
    env = [f"export {k}=1" for k in THREAD_VARIABLES]  # one Dask thread per core: one thread per task
    env += [_config_export(k, v) for k, v in {**WORKER_CONFIG, PRE_SPAWN: worker_environ(1)}.items()]
    kwargs = {
        "cores": section.cores,
        "memory": section.memory,
        "processes": section.processes or section.cores,
        "walltime": section.walltime,
        "queue": section.queue,
        "account": section.account,
        "job_extra_directives": list(section.job_extra_directives),
        "job_script_prologue": [*section.job_script_prologue, *env],
        "interface": section.interface,
        "local_directory": section.local_directory,
        "python": section.python or sys.executable,
    }
    return cls(**{k: v for k, v in kwargs.items() if v is not None})


def _import_jobqueue():
    try:
        import dask_jobqueue
    except ImportError as exc:
        raise MissingExtraError(f"{JOBQUEUE_MISSING} ({exc})") from exc
    return dask_jobqueue
