"""The hostile trials of issue 14, repeated and counted: ``kill -9`` and concurrent runs.

On the demo archive (rsprep synth defaults), in subprocesses, as a user would meet them:

- ``kill -9`` of ``rsprep patch --workers 2`` at random moments: are any workers left alive, does
  the rerun leave temporaries, is the work store byte-identical to an uninterrupted build?
- ``kill -9`` of ``rsprep convert lmdb`` at random moments: is the resumed ``data.mdb``
  byte-identical to an uninterrupted build?
- two ``rsprep convert lmdb --overwrite`` of one dataset at once: is the finished LMDB ever lost,
  does exactly one run succeed and the other name the holder?

Counts go to docs/FAULTS.md with the command that produced them.

    python bench/fault_sweep.py [--kills 20] [--concurrent 13] [--write docs/FAULTS.md]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RSPREP = str(Path(sys.executable).with_name("rsprep"))


def tree_hash(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and ".lock" not in p.name:
            h.update(str(p.relative_to(root)).encode())
            h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def descendants(pid: int) -> set[int]:
    found, todo = set(), [pid]
    while todo:
        p = todo.pop()
        try:
            kids = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        found.update(map(int, kids))
        todo.extend(map(int, kids))
    return found


def alive_after(pids: set[int], seconds: float) -> set[int]:
    deadline = time.monotonic() + seconds
    alive = set(pids)
    while alive and time.monotonic() < deadline:
        alive = {p for p in alive if Path(f"/proc/{p}").exists() and _not_zombie(p)}
        time.sleep(0.05)
    return alive


def _not_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([RSPREP, "-q", *args], capture_output=True, text=True, check=check)


def kill_at(cmd: list[str], delay: float) -> tuple[set[int], bool]:
    """Start ``cmd``, kill -9 it after ``delay`` s; (its descendants then alive 2 s later, finished first)."""
    proc = subprocess.Popen([RSPREP, "-q", *cmd], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t_end = time.monotonic() + delay
    seen: set[int] = set()
    while time.monotonic() < t_end and proc.poll() is None:
        seen |= descendants(proc.pid)
        time.sleep(0.02)
    if proc.poll() is not None:
        return set(), True
    seen |= descendants(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return alive_after(seen, 2.0), False


def patch_trials(base: Path, products: list[str], n: int, rng: random.Random) -> dict[str, int]:
    ref = base / "patch-ref"
    t0 = time.monotonic()
    run("patch", *products, "--out", str(ref), "--workers", "2")
    span, expected = time.monotonic() - t0, tree_hash(ref)
    out = {"trials": 0, "finished_before_kill": 0, "orphans": 0, "leftovers": 0, "differ": 0}
    for i in range(n):
        work = base / f"patch-{i}"
        orphans, finished = kill_at(
            ["patch", *products, "--out", str(work), "--workers", "2"], rng.uniform(0.5, span)
        )
        out["trials"] += 1
        out["finished_before_kill"] += finished
        out["orphans"] += bool(orphans)
        for p in orphans:
            os.kill(p, signal.SIGKILL)
        run("patch", *products, "--out", str(work), "--workers", "2")
        out["leftovers"] += any(".tmp-" in p.name or ".old-" in p.name for p in work.iterdir())
        out["differ"] += tree_hash(work) != expected
        shutil.rmtree(work)
    return out


def lmdb_trials(dataset: Path, n: int, rng: random.Random) -> dict[str, int]:
    """Each trial kills ``convert lmdb`` twice — the first run, then its resume (which begins by
    replaying the committed units into a fresh environment) — and finishes with a third run."""
    ref = dataset.parent / "lmdb-ref"
    t0 = time.monotonic()
    run("convert", "lmdb", str(dataset), "--out", str(ref), "--chunk", "4")
    span, expected = time.monotonic() - t0, (ref / "data.mdb").read_bytes()
    out = {"trials": 0, "finished_before_kill": 0, "resume_finished_before_kill": 0, "differ": 0}
    for i in range(n):
        dest = dataset.parent / f"lmdb-{i}"
        cmd = ["convert", "lmdb", str(dataset), "--out", str(dest), "--chunk", "4"]
        _, finished = kill_at(cmd, rng.uniform(0.3, span))
        _, resume_finished = kill_at(cmd, rng.uniform(0.3, span))
        run(*cmd, check=False)
        out["trials"] += 1
        out["finished_before_kill"] += finished
        out["resume_finished_before_kill"] += resume_finished
        out["differ"] += not (dest / "data.mdb").is_file() or (dest / "data.mdb").read_bytes() != expected
        shutil.rmtree(dest, ignore_errors=True)
    return out


def concurrent_trials(dataset: Path, n: int) -> dict[str, int]:
    run("convert", "lmdb", str(dataset), "--overwrite")
    out = {"trials": 0, "lost": 0, "both_ok": 0, "holder_named": 0, "left_old": 0}
    for _ in range(n):
        cmd = [RSPREP, "convert", "lmdb", str(dataset), "--overwrite"]
        procs = [
            subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)
        ]
        results = [(p.communicate(), p.returncode)[::-1] for p in procs]
        codes = [c for c, _ in results]
        out["trials"] += 1
        out["both_ok"] += codes == [0, 0]
        out["holder_named"] += any(c == 1 and "in use by process" in e for c, (_, e) in results)
        out["lost"] += not (dataset / "lmdb" / "data.mdb").is_file()
        out["left_old"] += any(".old-" in p.name or ".tmp-" in p.name for p in dataset.iterdir())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--concurrent", type=int, default=13)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--write", type=Path)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    base = Path(tempfile.mkdtemp(prefix="rsprep-faults-"))
    try:
        run("synth", str(base / "archive"))
        products = sorted(str(p) for p in (base / "archive" / "s2").glob("*.SAFE"))
        work, ds = base / "work", base / "dataset"
        run("patch", *products, "--out", str(work))
        run("s1", "--s1", str(base / "archive" / "s1"), "--work", str(work))
        run(
            "reference",
            "--clc",
            str(base / "archive" / "clc" / "U2018_CLC2018_V2020_20u1.gpkg"),
            "--work",
            str(work),
        )
        run("metadata", "--work", str(work), "--out", str(ds))
        rows = {
            "kill -9 of `patch --workers 2`, then the same command": patch_trials(
                base, products, a.kills, rng
            ),
            "kill -9 of `convert lmdb --chunk 4`, kill -9 of its resume, then the same command": lmdb_trials(
                ds, a.kills, rng
            ),
            "two `convert lmdb --overwrite` of one dataset at once": concurrent_trials(ds, a.concurrent),
        }
    finally:
        shutil.rmtree(base, ignore_errors=True)
    lines = [
        "# Fault sweep",
        "",
        "The hostile trials of issue 14 repeated on the demo archive, in subprocesses (kill moments drawn",
        f"uniformly over an uninterrupted run; seed {a.seed}). Produced by",
        "",
        "```",
        f"python bench/fault_sweep.py --kills {a.kills} --concurrent {a.concurrent} --write docs/FAULTS.md",
        "```",
        "",
        "| trial | outcome counts |",
        "|---|---|",
    ]
    for name, counts in rows.items():
        lines.append(f"| {name} | " + ", ".join(f"{k} {v}" for k, v in counts.items()) + " |")
    lines += [
        "",
        "`orphans`: trials where a worker was still alive 2 s after its parent's kill; `leftovers`: a",
        "`.tmp-`/`.old-` temporary left after the rerun; `differ`: the rerun's output is not byte-identical",
        "to the uninterrupted build; `lost`: no finished LMDB after a trial; `holder_named`: the refused",
        "run's message named the holder's pid. Wanted: 0 orphans, leftovers, differ, lost and both_ok.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if a.write:
        a.write.write_text(text)


if __name__ == "__main__":
    main()
