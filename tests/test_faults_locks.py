"""Issue 14, items 1 and 6: one lock per output, take-over of dead runs, workers that die with their parent.

Every test uses real processes: a holder in a subprocess, ``kill -9`` of real runs, real workers.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from rsprep.store.lock import LockedError, lock_path, locked, process_start, sweep_temporaries

RSPREP = str(Path(sys.executable).with_name("rsprep"))

HOLD = textwrap.dedent(
    """
    import sys, time
    from rsprep.store.lock import locked
    with locked(sys.argv[1], "tile store"):
        print("held", flush=True)
        time.sleep(60)
    """
)


def _holder(output: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(output)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def _tree_hash(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _descendants(pid: int) -> set[int]:
    found, todo = set(), [pid]
    while todo:
        p = todo.pop()
        try:
            kids = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        for k in map(int, kids):
            found.add(k)
            todo.append(k)
    return found


def _gone(pids: set[int], timeout: float = 5.0) -> set[int]:
    deadline = time.monotonic() + timeout
    alive = set(pids)
    while alive and time.monotonic() < deadline:
        alive = {p for p in alive if process_start(p) is not None}
        time.sleep(0.05)
    return alive


def test_second_holder_is_refused_naming_the_first(tmp_path):
    out = tmp_path / "work" / "T32TNS_20200101"
    out.mkdir(parents=True)
    proc = _holder(out)
    try:
        with pytest.raises(LockedError) as err, locked(out, "tile store"):
            pass
        msg = str(err.value)
        assert f"process {proc.pid} on " in msg and str(out) in msg and "in use by" in msg
        assert "started " in msg and "wait for that run to finish" in msg
    finally:
        proc.kill()
        proc.wait()


def test_dead_holder_is_taken_over_and_its_temporaries_swept(tmp_path):
    out = tmp_path / "lmdb"
    out.mkdir()
    (out / "data.mdb").write_bytes(b"finished")
    proc = _holder(out)
    dead = proc.pid
    stale_dir = tmp_path / f".lmdb.tmp-{dead}"
    stale_dir.mkdir()
    (stale_dir / "half").write_bytes(b"x" * 100)
    stale_old = tmp_path / f".lmdb.old-{dead}"
    stale_old.write_bytes(b"old")
    inner = out / f".data.mdb.tmp-{dead}"
    inner.write_bytes(b"part")
    live = tmp_path / f".lmdb.tmp-{os.getppid()}"  # a live process's temporary is never removed
    live.write_bytes(b"live")
    os.kill(dead, signal.SIGKILL)
    proc.wait()
    with locked(out, "the LMDB output") as previous:
        assert previous["pid"] == dead
        assert not stale_dir.exists() and not stale_old.exists() and not inner.exists()
        assert live.exists()
        assert (out / "data.mdb").read_bytes() == b"finished"
    assert not lock_path(out).exists()


def test_lock_is_reentrant_in_one_process_and_released(tmp_path):
    out = tmp_path / "dataset"
    with locked(out, "dataset"), locked(out, "dataset"):
        assert lock_path(out).exists()
    assert not lock_path(out).exists()
    with locked(out, "dataset"):  # free again
        pass


def test_sweep_keeps_resumable_partial_builds(tmp_path):
    out = tmp_path / "zarr"
    partial = tmp_path / ".zarr.partial"
    partial.mkdir()
    assert sweep_temporaries(out) == []
    assert partial.exists()


WORKERS = textwrap.dedent(
    """
    import os, sys, time
    from rsprep.store.lock import locked
    from rsprep.store.pool import worker_pool
    with locked(sys.argv[1], "tile store"):
        pool = worker_pool(2)
        futs = [pool.submit(time.sleep, 60) for _ in range(2)]
        time.sleep(1.5)
        print("running", flush=True)
        time.sleep(60)
    """
)


def test_workers_die_with_a_killed_parent(tmp_path):
    out = tmp_path / "store"
    proc = subprocess.Popen([sys.executable, "-c", WORKERS, str(out)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "running"
    children = _descendants(proc.pid)
    assert len(children) >= 2  # two workers (and the resource tracker)
    recorded = (lock_path(out).parent / (lock_path(out).name + ".workers")).read_text().split("\n")
    assert len([r for r in recorded if r]) == 2
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert _gone(children) == set(), "orphaned workers survived their parent"
    with locked(out, "tile store") as previous:  # the next run takes over cleanly
        assert previous["pid"] == proc.pid


def test_take_over_stops_recorded_workers_that_still_run(tmp_path):
    """A straggler recorded beside a dead holder's lock is killed before the new holder proceeds."""
    out = tmp_path / "store"
    straggler = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        proc = _holder(out)
        workers = lock_path(out).with_name(lock_path(out).name + ".workers")
        workers.write_text(f"{straggler.pid} {process_start(straggler.pid)}\n")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        with locked(out, "tile store"):
            assert straggler.wait(timeout=5) == -signal.SIGKILL
    finally:
        straggler.kill()


def test_a_held_store_fails_only_that_store(reference_work, tmp_path):
    work = tmp_path / "work"
    subprocess.run(["cp", "-a", str(reference_work), str(work)], check=True)
    stores = sorted(p for p in work.iterdir() if p.is_dir() and not p.name.startswith("."))
    held = stores[0]
    before = _tree_hash(held)
    proc = _holder(held)
    try:
        cmd = [RSPREP, "stack", str(work), "--force"]
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    finally:
        proc.kill()
        proc.wait()
    assert run.returncode == 1, run.stdout + run.stderr
    text = run.stdout + run.stderr
    assert held.name in text and f"process {proc.pid}" in text and "Traceback" not in text
    assert _tree_hash(held) == before
    for other in stores[1:]:
        assert (other / "s2_stacked").is_dir() or (other / "manifest.json").is_file()


def test_kill_9_of_a_multi_worker_patch_then_resume(archive, manifest, tmp_path):
    """Kill a 2-worker ``patch`` mid-run: no orphan keeps writing; the rerun equals an uninterrupted run."""
    products = [str(archive / p["path"]) for p in manifest["products"]]
    ref = tmp_path / "ref"
    subprocess.run([RSPREP, "-q", "patch", *products, "--out", str(ref)], check=True, capture_output=True)
    expected = _tree_hash(ref)
    for trial, delay in enumerate((0.3, 1.5)):
        work = tmp_path / f"work{trial}"
        proc = subprocess.Popen(
            [RSPREP, "-q", "patch", *products, "--out", str(work), "--workers", "2"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 120
        while len(_descendants(proc.pid)) < 2 and time.monotonic() < deadline:  # the workers are up
            time.sleep(0.05)
        time.sleep(delay)
        children = _descendants(proc.pid)
        assert len(children) >= 2 and proc.poll() is None, f"trial {trial}: the run ended before the kill"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert _gone(children) == set(), f"trial {trial}: workers survived the killed run"
        cmd = [RSPREP, "-q", "patch", *products, "--out", str(work), "--workers", "2"]
        rerun = subprocess.run(cmd, capture_output=True, text=True)
        assert rerun.returncode == 0, rerun.stderr
        leftovers = [p.name for p in work.iterdir() if ".tmp-" in p.name or ".old-" in p.name]
        assert leftovers == [], f"trial {trial}: stale temporaries {leftovers}"
        assert _tree_hash(work) == expected, f"trial {trial}: resumed work store differs"


RECORD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from rsprep.store.dataset import record_build
    for i in range(40):
        record_build(Path(sys.argv[1]), sys.argv[2] + str(i), {"i": i})
    """
)


def test_concurrent_build_records_lose_nothing(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", RECORD, str(tmp_path), name]) for name in ("a", "b")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    import json

    stages = json.loads((tmp_path / "build.json").read_text())["stages"]
    assert {f"{n}{i}" for n in "ab" for i in range(40)} <= set(stages)


@pytest.mark.parametrize("command", ["split", "noise", "metadata"])
def test_a_held_dataset_refuses_dataset_stages(dataset, reference_work, tmp_path, command):
    root = tmp_path / "dataset"
    subprocess.run(["cp", "-a", str(dataset), str(root)], check=True)
    before = _tree_hash(root)
    args = {
        "split": ["split", str(root), "--method", "tile-border"],
        "noise": ["noise", str(root), "--mode", "uniform", "--rate", "0.2", "--overwrite"],
        "metadata": ["metadata", "--work", str(reference_work), "--out", str(root), "--overwrite"],
    }[command]
    proc = _holder(root)
    try:
        run = subprocess.run([RSPREP, *args], capture_output=True, text=True, timeout=300)
    finally:
        proc.kill()
        proc.wait()
    text = run.stdout + run.stderr
    assert run.returncode == 1, text
    assert f"process {proc.pid}" in text and str(root) in text and "Traceback" not in text
    assert _tree_hash(root) == before
