"""`rsprep convert` of full-size work stores against the disk (issue 16).

Each conversion (``rsprep convert FMT DS --out OUT --overwrite --workers W``, a subprocess) is paired
with its floor, run right after it on the same disk. Every conversion is timed until its output is on
disk: an ``os.sync()`` before it (nothing of the previous run is charged to it) and one after it,
counted in its wall time (``unsynced_s``: what it left in the page cache; older writers did not sync):

- LMDB and Zarr: writing the output's number of bytes from random data prepared in memory, 16 MiB
  per ``write`` and one ``fdatasync`` (what ``dd if=<in memory> bs=16M conv=fdatasync`` does);
- GeoTIFF layout: creating the same files with the same bytes from Python (every file read into
  memory first; then ``mkdir``, ``os.open``/``os.write``/``os.close`` per file, one ``syncfs``).

With ``--head DIR`` (a checkout of older rsprep code, e.g. ``git archive 1c34c04 rsprep | tar -x -C DIR``,
named in the table by ``--head-label``) every conversion is also run with that code at the highest
``--workers``, and the outputs are compared (LMDB: every key and value, since the writer of 2026-12-01
lays out its pages differently from the compacting copy before it; Zarr and GeoTIFF: every file, as
one digest of names and bytes). Peak memory: the largest ``ru_maxrss`` of the conversion's
processes (file pages mapped by LMDB count in it) and the largest anonymous RSS of its process tree,
sampled every 0.1 s.

    python bench/bench_convert_disk.py --dataset bench/.data/convert-1/ds [--dataset …] \\
        [--formats lmdb,zarr,tiff] [--workers 1,2] [--head /tmp/rsprep-head] [--write docs/BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_patch import replace_section

RSPREP = [sys.executable, "-m", "rsprep.cli.main", "-q"]


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def tree_anon(pid: int) -> int:
    """Anonymous RSS (bytes) of ``pid`` and its descendants."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("RssAnon:"):
                    total += int(line.split()[1]) * 1024
            todo += [int(c) for c in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
        except OSError:
            continue
    return total


def run(cmd: list[str], env: dict | None = None, cwd: Path | None = None) -> dict:
    """Run ``cmd``; wall seconds, CPU seconds, peak ru_maxrss and peak anonymous RSS of its tree."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peak, done = [0], threading.Event()

    def sample() -> None:
        while not done.wait(0.1):
            peak[0] = max(peak[0], tree_anon(proc.pid))

    threading.Thread(target=sample, daemon=True).start()
    _, status, usage = os.wait4(proc.pid, 0)
    done.set()
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {err}")
    return {
        "wall": wall,
        "user": usage.ru_utime,
        "sys": usage.ru_stime,
        "maxrss_gb": usage.ru_maxrss / 2**20,
        "anon_gb": peak[0] / 2**30,
    }


def size_of(path: Path) -> int:
    return (
        sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        if path.is_dir()
        else path.stat().st_size
    )


def dd_floor(folder: Path, nbytes: int) -> float:
    """``dd if=<random data in memory> bs=16M conv=fdatasync`` of ``nbytes``, in seconds."""
    block = np.random.default_rng(0).integers(0, 256, 16 << 20, dtype=np.uint8).tobytes()
    path = folder / "dd.bin"
    t0 = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        left = nbytes
        while left > 0:
            left -= os.write(fd, block[: min(left, len(block))])
        os.fdatasync(fd)
    finally:
        os.close(fd)
    seconds = time.perf_counter() - t0
    path.unlink()
    return seconds


def file_floor(layout: Path, folder: Path, processes: int = 1) -> tuple[float, int, int]:
    """Create the layout's GeoTIFFs again from Python (bytes prepared in memory): (s, files, bytes).

    With ``processes > 1`` the patch folders are dealt round-robin to that many forked processes
    (each ``mkdir`` + ``os.open``/``os.write``/``os.close`` of its files), then one ``syncfs``: how
    far file creation itself scales on this file system.
    """
    import multiprocessing

    files = [
        (p.relative_to(layout), p.read_bytes())
        for d in ("BigEarthNet-S2", "BigEarthNet-S1", "Reference_Maps")
        for p in sorted((layout / d).rglob("*.tif"))
    ]
    by_folder: dict[Path, list] = {}
    for rel, data in files:
        by_folder.setdefault(rel.parent, []).append((rel, data))
    folders = list(by_folder.values())
    out = folder / "floor"
    shutil.rmtree(out, ignore_errors=True)

    def create(share: list) -> None:
        for members in share:
            (out / members[0][0].parent).mkdir(parents=True, exist_ok=True)
            for rel, data in members:
                fd = os.open(out / rel, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                os.write(fd, data)
                os.close(fd)

    t0 = time.perf_counter()
    if processes == 1:
        create(folders)
    else:
        ctx = multiprocessing.get_context("fork")
        procs = [ctx.Process(target=create, args=(folders[i::processes],)) for i in range(processes)]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join()
            if proc.exitcode != 0:
                raise RuntimeError(f"a floor process failed ({proc.exitcode})")
    fd = os.open(out, os.O_RDONLY)
    os.syncfs(fd) if hasattr(os, "syncfs") else os.sync()
    os.close(fd)
    seconds = time.perf_counter() - t0
    shutil.rmtree(out)
    return seconds, len(files), sum(len(d) for _, d in files)


def sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(16 << 20):
            h.update(chunk)
    return h.hexdigest()


def tree_sha(path: Path) -> str:
    """One digest of every file under ``path``: relative names and bytes, in sorted order."""
    h = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(path)).encode() + b"\0" + sha(p).encode())
    return h.hexdigest()


def items_sha(path: Path) -> str:
    """One digest of an LMDB's keys and values, in key order."""
    import lmdb

    h = hashlib.sha256()
    with lmdb.open(str(path), readonly=True, lock=False) as env, env.begin(buffers=True) as txn:
        for k, v in txn.cursor():
            h.update(hashlib.sha256(k).digest() + hashlib.sha256(v).digest())
    return h.hexdigest()


def bench(
    ds: Path, fmt: str, workers: int, head: Path | None, label: str = "before", floor_processes: int = 1
) -> list[dict]:
    folder = ds.parent
    out = folder / {"lmdb": "lmdb", "zarr": "dataset.zarr", "tiff": "tiff"}[fmt]
    rows = []
    # "new" is the checkout this benchmark lives in; every run starts in the dataset's folder, since
    # ``python -m`` puts its working directory first on sys.path (an rsprep/ there would win)
    codes = [("new", Path(__file__).resolve().parents[1])] + ([(label, head)] if head else [])
    for code, pythonpath in codes:
        env = dict(os.environ, PYTHONPATH=str(pythonpath))
        dest = out.with_name(f"{out.name}-{code}")
        os.sync()  # the previous run's writeback is not charged to this one
        before = loadavg()
        r = run(
            [*RSPREP, "convert", fmt, str(ds), "--out", str(dest), "--overwrite", "--workers", str(workers)],
            env,
            cwd=folder,
        )
        t0 = time.perf_counter()
        os.sync()  # what the conversion left unsynced (nothing, for writers that sync their output)
        r["unsynced_s"] = time.perf_counter() - t0
        r["wall"] += r["unsynced_s"]
        nbytes = size_of(dest)
        os.sync()
        if fmt == "tiff":
            floor, files, _ = file_floor(dest, folder)
            r["files"] = files
            if floor_processes > 1 and code == "new":
                os.sync()
                r[f"floor_{floor_processes}p"] = file_floor(dest, folder, floor_processes)[0]
        else:
            floor = dd_floor(folder, nbytes)
        r |= {
            "format": fmt,
            "workers": workers,
            "code": code,
            "bytes": nbytes,
            "floor": floor,
            "ratio": r["wall"] / floor,
            "load": f"{before} → {loadavg()}",
            "dataset": ds.parent.name,
        }
        r["sha"] = items_sha(dest) if fmt == "lmdb" else tree_sha(dest)
        if fmt == "lmdb":
            stage = json.loads((ds / "build.json").read_text())["stages"]["convert_lmdb"]
            r["steps"] = stage.get("extra", {}).get("seconds")
        rows.append(r)
        print(json.dumps(r), flush=True)
        if code != "new":
            r["identical"] = r["sha"] == rows[0]["sha"]
        shutil.rmtree(dest)  # the disk holds one output at a time
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "| dataset | output | workers | code | GB | files | convert s (user / sys; of it sync after) "
        "| floor s | ratio "
        "| peak maxrss / anon GB | load before → after |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['dataset']} | {r['format']} | {r['workers']} | {r['code']} | {r['bytes'] / 1e9:.2f} | "
            f"{r.get('files', '')} | {r['wall']:.1f} ({r['user']:.1f} / {r['sys']:.1f}; "
            f"{r.get('unsynced_s', 0):.1f}) | {r['floor']:.1f} | "
            f"**{r['ratio']:.1f}×** | {r['maxrss_gb']:.2f} / {r['anon_gb']:.2f} | {r['load']} |"
        )
    lines += ["", *scaling(rows)]
    return "\n".join(lines)


def scaling(rows: list[dict]) -> list[str]:
    """Per dataset and output: 1 → N workers speed-up of the new code, and old ÷ new where measured."""
    out = []
    for key in dict.fromkeys((r["dataset"], r["format"]) for r in rows):
        mine = [r for r in rows if (r["dataset"], r["format"]) == key]
        new = {r["workers"]: r["wall"] for r in mine if r["code"] == "new"}
        parts = []
        if len(new) > 1:
            lo, hi = min(new), max(new)
            parts.append(f"{lo} → {hi} workers {new[lo] / new[hi]:.2f}×")
        for r in mine:
            for k in [k for k in r if k.startswith("floor_") and k.endswith("p")]:
                n = k.removeprefix("floor_").removesuffix("p")
                parts.append(
                    f"file-creation floor beside the {r['workers']}-worker row: {r['floor']:.1f} s in "
                    f"1 process, {r[k]:.1f} s in {n} ({r['floor'] / r[k]:.2f}×)"
                )
            if r["code"] != "new" and r["workers"] in new:
                same = "identical" if r.get("identical") else "**different**"
                what = "keys and values" if key[1] == "lmdb" else "bytes"
                parts.append(f"{r['code']} ÷ new {r['wall'] / new[r['workers']]:.2f}× ({same} {what})")
        if parts:
            out.append(f"- {key[0]} {key[1]}: " + ", ".join(parts))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", type=Path, action="append", required=True)
    ap.add_argument("--formats", default="lmdb,zarr,tiff")
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--head", type=Path)
    ap.add_argument("--head-label", default="before")
    ap.add_argument(
        "--floor-processes",
        type=int,
        default=1,
        help="GeoTIFF: also time the file-creation floor in this many processes (its own scaling)",
    )
    ap.add_argument("--json", type=Path, default=Path(__file__).parent / ".data" / "bench_convert_disk.json")
    ap.add_argument("--write", type=Path)
    a = ap.parse_args()
    rows = []
    for ds in a.dataset:
        for fmt in a.formats.split(","):
            for w in map(int, a.workers.split(",")):
                head = a.head if w == max(map(int, a.workers.split(","))) else None
                rows += bench(ds, fmt, w, head, a.head_label, a.floor_processes)
    a.json.write_text(json.dumps(rows, indent=1))
    text = table(rows)
    print(text)
    if a.write:
        cmd = " ".join(
            [
                "python bench/bench_convert_disk.py",
                *[f"--dataset {d}" for d in a.dataset],
                f"--formats {a.formats} --workers {a.workers}",
                *([f"--head DIR --head-label {a.head_label}"] if a.head else []),
                "--write docs/BENCHMARKS.md",
            ]
        )
        section = f"## Conversion against the disk (issue 16)\n\n`{cmd}`\n\n{text}\n"
        replace_section(a.write, "## Conversion against the disk (issue 16)", section)


if __name__ == "__main__":
    main()
