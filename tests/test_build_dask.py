"""``rsprep build`` on Dask distributed (the ``dist`` extra): a LocalCluster on loopback (2 worker
processes, 1 thread each) gives the bytes of the local-process build; a worker killed with SIGKILL in
the middle of a product task still ends in the same bytes; an unreachable scheduler, workers that
cannot see the work store (a worker in its own mount namespace) and a missing extra are clear errors;
the cluster section (recipe, --cluster, --cluster-option) and the SLURM / PBS job scripts it makes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from test_build import cli_args, inputs, tree_hashes

from rsprep.build.dask_cluster import WORKER_CONFIG
from rsprep.build.dask_executor import DaskExecutor, WorkStoreNotVisibleError
from rsprep.build.recipe import RecipeError, load_recipe
from rsprep.build.recipe_cluster import with_cluster
from rsprep.build.run import build, prepare
from rsprep.errors import InvalidParameterError
from rsprep.store.lock import process_start
from rsprep.synth import SynthConfig, synthesize

distributed = pytest.importorskip("distributed")


def rsprep(*args: str, env: dict | None = None, prelude: str = "pass") -> subprocess.CompletedProcess:
    code = f"import sys, runpy; {prelude}; sys.argv = ['rsprep', *sys.argv[1:]]; "
    code += "runpy.run_module('rsprep.cli.main', run_name='__main__')"
    return subprocess.run(
        [sys.executable, "-c", code, "-q", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )


def local_cluster(n: int = 2):
    return distributed.LocalCluster(
        n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    )


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The archive and its build by local worker processes (--workers 2): the reference bytes."""
    root = tmp_path_factory.mktemp("dask")
    archive = root / "archive"
    synthesize(archive, SynthConfig())
    plain = root / "plain"
    assert build(load_recipe("demo"), **inputs(archive), out=plain, workers=2).ok
    return {"root": root, "archive": archive, "plain": plain}


def same_bytes(out, plain) -> None:
    assert tree_hashes(out / "dataset") == tree_hashes(plain / "dataset")
    assert tree_hashes(out / "work") == tree_hashes(plain / "work")
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name or ".rsprep-probe" in p.name]


def test_local_cluster_equals_the_local_processes(demo):
    out = demo["root"] / "cluster"
    r = rsprep(*cli_args(demo["archive"], out, "--cluster", "local", "--cluster-option", "processes=2"))
    assert r.returncode == 0, r.stderr
    same_bytes(out, demo["plain"])
    executor = json.loads((out / "build.json").read_text())["executor"]
    assert executor["kind"] == "dask" and executor["cluster"] == "local" and executor["workers"] == 2
    assert executor["scheduler"].startswith("tcp://127.0.0.1:") and executor["hosts"] == 1
    assert executor["threads_per_task"] == {socket.gethostname(): max(1, len(os.sched_getaffinity(0)) // 2)}


def test_a_worker_killed_mid_task_still_gives_the_same_bytes(demo):
    out = demo["root"] / "killed"
    with local_cluster() as cluster, distributed.Client(cluster, set_as_default=False) as client:
        pids = set(client.run(os.getpid).values())
        executor = DaskExecutor(client)
        done: dict = {}

        def run() -> None:
            try:
                done["result"] = build(
                    load_recipe("demo"), **inputs(demo["archive"]), out=out, workers=2, executor=executor
                )
            except BaseException as exc:  # handed to the test thread
                done["error"] = exc

        thread = threading.Thread(target=run)
        thread.start()
        killed, t_end = None, time.monotonic() + 300
        while killed is None and thread.is_alive() and time.monotonic() < t_end:
            work = out / "work"
            temps = [p for p in work.iterdir() if ".tmp-" in p.name] if work.is_dir() else []
            for tmp in temps:  # a worker in the middle of writing a store: kill it
                pid = int(tmp.name.rsplit("-", 1)[1])
                if pid in pids:
                    os.kill(pid, signal.SIGKILL)
                    while process_start(pid) is not None:  # dead (or a zombie of its nanny)
                        time.sleep(0.01)
                    if tmp.exists():  # it died with the store half written
                        killed = (pid, tmp)
                    pids.discard(pid)
                    break
            time.sleep(0.005)
        thread.join(600)
        assert killed is not None, "no product task was seen running on a worker"
        assert "error" not in done, done.get("error")
        assert done["result"].ok, done["result"].failures
        after = set(client.run(os.getpid).values())
    assert killed[0] not in after and len(after) == 2  # the nanny started a new worker (or two)
    assert not killed[1].exists()  # the killed task's temporary was swept by the task run again
    same_bytes(out, demo["plain"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_scheduler_names_the_address_and_the_fix(demo):
    address = f"tcp://127.0.0.1:{_free_port()}"
    out = demo["root"] / "unreachable"
    env = {"DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "2s"}
    r = rsprep(*cli_args(demo["archive"], out, "--scheduler", address), env=env)
    assert r.returncode == 1
    assert f"no Dask scheduler answers at {address} within 2s" in r.stderr, r.stderr
    assert f"`dask worker {address}`" in r.stderr and "leave out --scheduler" in r.stderr
    assert not [p for p in (out / "work").iterdir() if p.is_dir()]  # no product was built
    r = rsprep(*cli_args(demo["archive"], out, "--scheduler", "localhost:8786"))
    assert r.returncode == 1 and "give the scheduler's address as tcp://HOST:PORT" in r.stderr


def _unshare_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs none /mnt"], capture_output=True)
    return probe.returncode == 0


def test_workers_that_cannot_see_the_work_store_are_named(demo, tmp_path):
    """A worker in its own mount namespace, where a tmpfs hides OUT's folder: refused before any task."""
    if not _unshare_works():
        pytest.skip("unshare -rm (a user + mount namespace) is not permitted here")
    out = tmp_path / "out"
    with local_cluster(1) as cluster, distributed.Client(cluster, set_as_default=False) as client:
        script = 'mount -t tmpfs none "$0" && exec "$1" -m distributed.cli.dask_worker "$2" ' + (
            "--nthreads 1 --no-nanny --name blind --no-dashboard"
        )
        blind = subprocess.Popen(
            ["unshare", "-rm", "sh", "-c", script, str(tmp_path), sys.executable, cluster.scheduler_address],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            client.wait_for_workers(2, timeout=120)
            workers = client.scheduler_info()["workers"]
            address = next(a for a, w in workers.items() if w.get("name") == "blind")
            with pytest.raises(WorkStoreNotVisibleError) as caught:
                build(
                    load_recipe("demo"),
                    **inputs(demo["archive"]),
                    out=out,
                    workers=2,
                    executor=DaskExecutor(client),
                )
        finally:
            blind.kill()
            blind.wait()
    message = str(caught.value)
    assert message.startswith("1 of 2 Dask worker(s) cannot see the build's files, so nothing was submitted")
    assert (
        f"{address} (host {socket.gethostname()}): cannot read the work store's probe {out / 'work'}"
        in message
    )
    assert "mounts at the same path" in message
    assert not list((out / "work").iterdir())  # no store, and the probe is gone


def test_missing_dist_extra(demo):
    r = rsprep(
        *cli_args(demo["archive"], demo["root"] / "never", "--cluster", "local"),
        prelude="sys.modules['distributed'] = None",
    )
    assert r.returncode == 1 and "pip install 'rsprep[dist]'" in r.stderr, r.stderr
    assert not (demo["root"] / "never").exists()


def test_cluster_settings_change_no_plan_or_step_key(demo):
    """A recipe with a cluster section plans the plain build as up to date: not part of what is built."""
    recipe = with_cluster(load_recipe("demo", ["cluster.kind=local"]), None, ["processes=3", "memory=2GB"])
    assert recipe.cluster.processes == 3 and recipe.cluster.memory == "2GB"
    plan, _ = prepare(recipe, **inputs(demo["archive"]), out=demo["plain"])
    assert plan.to_do() == 0, plan.lines()


def test_cluster_section_errors():
    with pytest.raises(RecipeError, match=r"cluster\.cores: .*required for kind slurm"):
        load_recipe("demo", ["cluster.kind=slurm", "cluster.memory=8GB"])
    with pytest.raises(RecipeError, match=r"cluster\.bogus"):
        with_cluster(load_recipe("demo"), "local", ["bogus=1"])
    with pytest.raises(RecipeError, match=r"cluster\.walltime: '4 hours' is no wall time"):
        with_cluster(load_recipe("demo"), "pbs", ["cores=4", "memory=8GB", "walltime=4 hours"])
    with pytest.raises(InvalidParameterError, match="--cluster-option needs a cluster"):
        with_cluster(load_recipe("demo"), None, ["cores=4"])
    with pytest.raises(InvalidParameterError, match="--cluster 'k8s': give one of local, slurm, pbs"):
        with_cluster(load_recipe("demo"), "k8s", [])


@pytest.mark.parametrize("kind", ["slurm", "pbs"])
def test_batch_job_scripts(kind):
    pytest.importorskip("dask_jobqueue")
    from rsprep.build.dask_cluster import _jobqueue_cluster

    options = ["cores=16", "memory=64GB", "partition=short", "walltime=04:00:00", "jobs=10", "account=proj1"]
    options.append(
        "job_extra_directives=['--exclusive']" if kind == "slurm" else "job_extra_directives=['-V']"
    )
    section = with_cluster(load_recipe("demo"), kind, options).cluster
    assert section.queue == "short" and section.jobs == 10
    cluster = _jobqueue_cluster(section)
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    tag = "#SBATCH" if kind == "slurm" else "#PBS"
    queue = f"{tag} -p short" if kind == "slurm" else f"{tag} -q short"
    assert queue in script and f"{tag} -A proj1" in script and "04:00:00" in script
    assert (f"{tag} --exclusive" if kind == "slurm" else f"{tag} -V") in script
    assert (
        "export OMP_NUM_THREADS=1" in script
        and "export DASK_DISTRIBUTED__WORKER__MEMORY__PAUSE=False" in script
        and "export DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED=False" in script
    )
    assert "--nworkers 16" in script and "--nthreads 1" in script and sys.executable in script
    # the nannies start their workers as the local executor does: thread caps, no MALLOC_TRIM_THRESHOLD_
    import dask.config

    exports = [x.removeprefix("export ").partition("=") for x in script.splitlines() if "export DASK_" in x]
    collected = dask.config.collect_env({name: value.strip('"') for name, _, value in exports})
    environ = dask.config.get("distributed.nanny.pre-spawn-environ", config=collected)
    assert environ["OMP_NUM_THREADS"] == "1" and environ["GDAL_NUM_THREADS"] == "1"
    assert "MALLOC_TRIM_THRESHOLD_" not in environ
    # every worker setting, as Dask reads it back from the job's environment
    for key, value in WORKER_CONFIG.items():
        assert dask.config.get(key, config=collected) == value, key


def test_a_local_cluster_runs_with_the_worker_settings():
    """The scheduler and the worker that the build starts tick each second, sample psutil each 5 s and
    do not profile (their periodic callbacks, not only their configuration); the client's own Dask
    settings are restored when the cluster closes."""
    import dask

    from rsprep.build.dask_cluster import start_cluster

    before = dask.config.get("distributed.admin.tick.interval")
    section = with_cluster(load_recipe("demo"), "local", ["processes=1"]).cluster
    client, close = start_cluster(section, 1)
    try:

        def callbacks(dask_worker=None, dask_scheduler=None):
            server = dask_worker or dask_scheduler
            return {k: pc.callback_time for k, pc in server.periodic_callbacks.items()}

        (on_worker,) = client.run(callbacks).values()
        on_scheduler = client.run_on_scheduler(callbacks)
    finally:
        close()
    for found in (on_worker, on_scheduler):
        assert found["tick"] == 1000 and found["monitor"] == 5000, found
    assert "profile" not in on_worker
    assert dask.config.get("distributed.admin.tick.interval") == before
