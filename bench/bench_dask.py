"""Benchmark the Dask executor of ``rsprep build`` against the local-process executor (issue 21), in one run.

    python bench/bench_dask.py [--products 0] [--workers 2] [--pairs 1] [--small] [--no-finalize]
        [--write docs/BENCHMARKS.md]

1. The full-size archive of bench/bench_build.py (bench/.data/build-2x2-jp2: 4 L2A products of
   10980 × 10980 px, JPEG2000, S1, CLC, countries), read once into the page cache (``--small``: the
   demo-size synthetic archive instead, to check that the benchmark works).
2. Before the builds (unless ``--no-idle``): the CPU seconds an idle LocalCluster of N workers burns
   in a minute, with Dask's defaults and as ``rsprep build`` starts it (bench/dask_idle.py): CPU that
   the tasks of a busy node lose.
3. The per-product phase twice, each into a fresh OUT, in subprocesses: ``rsprep build … --workers N
   --shard 0/1`` (one shard holding every product: only the per-product tasks, no dataset-wide step),
   with the local-process executor, then with ``--cluster local --cluster-option processes=N`` (a Dask
   LocalCluster of N worker processes, one thread each). The dataset-wide steps are left out of the
   comparison: they are the same code on the client whichever executor ran the tasks.
4. From each ``OUT/shards/0-of-1.json``: every product's stage seconds (measured inside the worker);
   for Dask also its startup (cluster and first worker). Dask's overhead = its wall − the local wall,
   in total and per task, and, since a shared machine's load inflates the tasks' own seconds unevenly,
   also the difference of the slack (wall − Σ task seconds ÷ workers: plan, start-up, scheduling,
   imbalance); the two work stores are compared byte for byte. ``--pairs N`` repeats the pair N times,
   alternating which executor goes first (ABBA…), since one pair on a shared machine moves by more
   than the goal's margin; the section gives every pair and the median ratio. ``--with RUN.json`` adds
   the figures of another run (e.g. ``--dask-first``, written to bench/.data/bench_dask-dask-first.json).
5. Unless ``--no-finalize``: ``rsprep build … --finalize`` on the local run's OUT (the dataset-wide
   steps once, as after array jobs), whose ``convert:lmdb`` gives the single LMDB writer's rate for the
   reBEN arithmetic of the section.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_build import DEFAULT_SETS, build_command, disk_usage, ensure_archive, loadavg
from bench_patch import replace_section

HEADING = "## rsprep build on Dask distributed vs local processes (issue 21)"
REBEN = {"products": 115, "pairs": 549_488, "lmdb_gb": 170.0, "nodes": 10, "cores": 16}


def small_archive(base: Path) -> Path:
    from rsprep.synth import SynthConfig, synthesize

    out = base / "dask-demo"
    if not (out / "synth.json").is_file():
        synthesize(out, SynthConfig(), overwrite=True)
    return out


def warm(archive: Path) -> float:
    """Read every file of the archive once (the page cache holds it for both runs)."""
    t = time.perf_counter()
    for p in sorted(archive.rglob("*")):
        if p.is_file():
            with open(p, "rb") as f:
                while f.read(1 << 24):
                    pass
    return time.perf_counter() - t


def run(
    archive: Path, products: list[Path], out: Path, sets: list[str], workers: int, extra: list[str]
) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    cfg = {"recipe": "demo", "sets": sets}
    cmd = [*build_command(archive, products, out, cfg, workers), *extra]
    before = loadavg()
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return {"wall_s": wall, "load": f"{before} → {loadavg()}", "cmd": cmd, "out": str(out)}


def idle_probe(workers: int, seconds: float = 60.0) -> dict:
    """bench/dask_idle.py for Dask's defaults and for rsprep's settings, each in a fresh process."""
    found = {}
    for kind in ("defaults", "rsprep"):
        cmd = [sys.executable, str(Path(__file__).with_name("dask_idle.py")), kind]
        cmd += ["--workers", str(workers), "--seconds", str(seconds)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        found[kind] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"idle {kind}: {found[kind]}", flush=True)
    return found


def idle_share(x: dict) -> tuple[float, float]:
    """(CPU seconds per minute in all of the cluster's processes, % of this machine's cores)."""
    total = (x["client_s"] + sum(x["workers_s"])) * 60 / x["seconds"]
    return total, 100 * total / 60 / (os.cpu_count() or 1)


def dask_ratio(r: dict) -> float:
    return r["dask"]["wall_s"] / r["local"]["wall_s"]


def shard_figures(b: dict) -> dict:
    record = json.loads((Path(b["out"]) / "shards" / "0-of-1.json").read_text())
    tasks = {
        Path(name).name.split("_")[5] + "_" + Path(name).name.split("_")[2][:8]: sum(
            s["seconds"] for s in p["stages"].values()
        )
        for name, p in record["products"].items()
    }
    peak = max(s["peak_rss_mb"] for p in record["products"].values() for s in p["stages"].values())
    return {"tasks": tasks, "executor": record["executor"], "peak_gb": peak / 1024}


def tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode())
            with open(p, "rb") as f:
                while chunk := f.read(1 << 24):
                    h.update(chunk)
    return h.hexdigest()


def finalize(archive: Path, products: list[Path], out: Path, sets: list[str]) -> dict:
    cfg = {"recipe": "demo", "sets": sets}
    cmd = [*build_command(archive, products, out, cfg, 2), "--finalize"]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"--finalize failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    record = json.loads((out / "build.json").read_text())
    lmdb = out / "dataset" / "lmdb" / "data.mdb"
    import pyarrow.parquet as pq

    return {
        "wall_s": wall,
        "steps": {k: v["seconds"] for k, v in record["steps"].items()},
        "lmdb_bytes": lmdb.stat().st_size if lmdb.is_file() else 0,
        "lmdb_du": disk_usage(out / "dataset" / "lmdb"),
        "pairs": pq.read_metadata(out / "dataset" / "metadata.parquet").num_rows,
    }


def slack(b: dict, workers: int) -> float:
    """Wall time beyond the tasks' own seconds spread over the workers (plan, start-up, scheduling)."""
    return b["wall_s"] - sum(b["tasks"].values()) / workers


def run_rows(runs: list[dict], workers: int) -> list[str]:
    out = [
        "| run | local wall (s) | Dask wall (s) | Dask ÷ local | Σ task s, local / Dask "
        "| slack (s), local / Dask |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        lo, da = r["local"], r["dask"]
        label = (f"pair {r['pair']}, " if r.get("pair") else "") + r.get("order", "local first")
        out.append(
            f"| {label} | {lo['wall_s']:.1f} | {da['wall_s']:.1f} | "
            f"**{dask_ratio(r):.3f}×** | {sum(lo['tasks'].values()):.0f} / "
            f"{sum(da['tasks'].values()):.0f} | {slack(lo, workers):.1f} / {slack(da, workers):.1f} |"
        )
    pairs = [r for r in runs if r.get("pair")]  # the pairs of one run (not those added by --with)
    if len(pairs) > 1:
        ratios = sorted(dask_ratio(r) for r in pairs)
        slacks = [
            (slack(r["dask"], workers) - slack(r["local"], workers)) / len(r["dask"]["tasks"]) for r in pairs
        ]
        out.append(
            f"| **median of the {len(pairs)} pairs** | | | **{statistics.median(ratios):.3f}×** "
            f"({ratios[0]:.3f}–{ratios[-1]:.3f}) | | {statistics.median(slacks):+.1f} s per task |"
        )
    return out


def arithmetic(r: dict, workers: int) -> dict:
    """reBEN on a 10-node × 16-core cluster from this run's figures (see the section's text)."""
    local, dask = r["local"], r["dask"]
    n = len(r["products"])
    c = sum(local["tasks"].values()) / n  # one product at one thread
    over = (slack(dask, workers) - slack(local, workers)) / n  # Dask's own overhead per task
    slots = REBEN["nodes"] * REBEN["cores"]
    rounds = math.ceil(REBEN["products"] / slots)
    x = {
        "c": c,
        "over": over,
        "slots": slots,
        "rounds": rounds,
        "phase_s": rounds * c + dask["executor"].get("startup_seconds", 0.0),
        "one_node_s": math.ceil(REBEN["products"] / REBEN["cores"]) * c,
        "in_gb": r["input_bytes"] / n / 1e9,
        "work_gb": r["work_bytes"] / n / 1e9,
    }
    x["fs_gb"] = REBEN["products"] * (x["in_gb"] + x["work_gb"])
    x["fs_gb_s"] = x["fs_gb"] / x["phase_s"]
    fin = r.get("finalize")
    if fin and fin["steps"].get("convert:lmdb"):
        x["lmdb_mb_s"] = fin["lmdb_du"] / fin["steps"]["convert:lmdb"] / 1e6
        others = sum(v for k, v in fin["steps"].items() if k not in ("convert:lmdb", "card"))
        x["other_s"] = others / fin["pairs"] * REBEN["pairs"] + fin["steps"].get("card", 0.0)
        x["lmdb_source"] = "measured here (`convert:lmdb` of the finalize)"
    else:
        x["lmdb_mb_s"] = 88.0  # the figure, as in the build benchmark
        x["other_s"] = 0.0
        x["lmdb_source"] = "the issue's 88 MB/s (not measured in this run)"
    x["lmdb_s"] = REBEN["lmdb_gb"] * 1e3 / x["lmdb_mb_s"]
    x["read_s"] = REBEN["products"] * x["work_gb"] / 1.25  # the work stores into one node at 10 Gb/s
    x["total_s"] = x["phase_s"] + x["lmdb_s"] + x["other_s"]
    return x


def section(r: dict, args: argparse.Namespace) -> str:
    local, dask, x = r["local"], r["dask"], r["arithmetic"]
    n, w = len(r["products"]), args.workers
    pairs = [o for o in r.get("others", []) if o.get("pair")]
    cmd = "` and `".join([r["command"], *(o["command"] for o in r.get("others", []) if not o.get("pair"))])
    ratio = dask_ratio(r)
    lines = [
        HEADING,
        "",
        f"Measured by `{cmd}` ({r['date']}, {r['machine']})"
        + (f"; this section written by `{r['reported']}`" if r.get("reported") else "")
        + f". {n} "
        + ("demo-size" if r.get("small") else "full-size (10980 × 10980 px, JPEG2000)")
        + f" synthetic L2A products of `{r['archive']}`"
        + ("" if r.get("small") else " (the build benchmark's archive)")
        + ", recipe `demo` with `"
        + "` `".join(f"--set {s}" for s in r["sets"])
        + f"`; page cache warmed first ({r['warm_s']:.0f} s). Each run is `rsprep build … --workers {w} "
        "--shard 0/1` (every product, per-product tasks only) into a fresh OUT; Dask adds `--cluster local "
        f"--cluster-option processes={w}` (a LocalCluster on loopback, {w} worker processes, 1 thread "
        "each; the local executor gives each of its workers cores ÷ workers threads too). The machine "
        "was shared with other engineers' jobs: `/proc/loadavg` is given per run.",
        "",
        "| per task: product (s, stage seconds in the worker) | local processes | Dask LocalCluster |",
        "|---|---:|---:|",
    ]
    for p in local["tasks"]:
        lines.append(f"| {p} | {local['tasks'][p]:.1f} | {dask['tasks'].get(p, 0):.1f} |")
    rows = [
        ("wall time of the run (s)", f"**{local['wall_s']:.1f}**", f"**{dask['wall_s']:.1f}**"),
        ("Σ task seconds (s)", f"{sum(local['tasks'].values()):.1f}", f"{sum(dask['tasks'].values()):.1f}"),
        (
            "Dask startup: cluster + first worker (s)",
            "–",
            f"{dask['executor'].get('startup_seconds', 0):.1f}",
        ),
        ("peak RSS of a worker (GB)", f"{local['peak_gb']:.2f}", f"{dask['peak_gb']:.2f}"),
        ("loadavg before → after", local["load"], dask["load"]),
    ]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    lines += [
        "",
        f"Dask against the local executor: **{dask['wall_s'] - local['wall_s']:+.1f} s in total = "
        f"{ratio:.3f}× its wall time** (goal ≤ 1.05×). Of that, the slack (below) differs by "
        f"{slack(dask, w) - slack(local, w):+.1f} s = **{x['over']:+.1f} s per task** ({n} tasks; starting "
        f"the cluster took {dask['executor'].get('startup_seconds', 0):.1f} s once), and the tasks' own "
        f"seconds by {sum(dask['tasks'].values()) - sum(local['tasks'].values()):+.1f} s (Σ), timed "
        "inside the workers: the same function and thread caps, but not the same worker environment "
        "(below) and not the same load of the shared machine. "
        f"Work stores byte-identical: **{'yes' if r['identical'] else 'NO'}** (SHA-256 over every file of "
        "OUT/work"
        + (f", in each of the {1 + len(pairs)} pairs" if pairs else "")
        + ")."
        + (
            f" That is pair 1 of {1 + len(pairs)}, alternating which executor goes first (ABBA…): their "
            f"**median is {statistics.median(dask_ratio(x) for x in [r, *pairs]):.3f}×** (table below)."
            if pairs
            else ""
        ),
    ]
    lines += [
        "",
        f"Per run (slack = wall − Σ task seconds ÷ {w} workers: plan, start-up, scheduling and imbalance, "
        "the part an executor adds; the tasks' own seconds move with the neighbours' load):",
        "",
        *run_rows([r, *r.get("others", [])], w),
    ]
    idle = r.get("idle")
    if idle:
        (d_s, d_pct), (r_s, r_pct) = idle_share(idle["defaults"]), idle_share(idle["rsprep"])
        lines += [
            "",
            f"An idle LocalCluster of {w} workers (`bench/dask_idle.py`, {idle['rsprep']['seconds']:.0f} s "
            "after start-up, CPU seconds of the client process, which holds the scheduler and the nannies, "
            f"and of each worker): with Dask's defaults **{d_s:.1f} CPU s per minute** ({d_pct:.1f} % of "
            f"this machine's {os.cpu_count()} cores; client {idle['defaults']['client_s']:.2f} s, workers "
            + " / ".join(f"{x:.2f}" for x in idle["defaults"]["workers_s"])
            + f" s), as `rsprep build` starts it **{r_s:.1f} CPU s per minute** ({r_pct:.1f} %; client "
            f"{idle['rsprep']['client_s']:.2f} s, workers "
            + " / ".join(f"{x:.2f}" for x in idle["rsprep"]["workers_s"])
            + " s). The difference is CPU that the tasks of a busy node lose: by default every scheduler, "
            "nanny and worker wakes each 20 ms to time its own event loop and each 500 ms to sample psutil "
            "for a dashboard; rsprep's workers tick each second and sample each 5 s "
            "(`rsprep.build.dask_cluster.WORKER_CONFIG`).",
        ]
    if any("spawn_environ" not in run for run in [r, *r.get("others", [])] if not run.get("pair")):
        lines += [
            "",
            "These runs were made before `rsprep build` gave a LocalCluster's workers the local executor's "
            "environment: they ran with Dask's default `distributed.nanny.pre-spawn-environ`, whose "
            "`MALLOC_TRIM_THRESHOLD_=65536` turns off glibc's dynamic mmap threshold (every large array "
            "mapped and zeroed afresh) — the likely cause of the tasks' slower seconds in Dask's workers "
            "in both orders, while the slack, Dask's own part, stayed within a few seconds per task. Not "
            "measured again since the change: rerun the two commands above.",
        ]
    fin = r.get("finalize")
    if fin:
        lines += [
            "",
            f"`--finalize` on the local run's OUT (the dataset-wide steps once, {fin['pairs']:,} pairs): "
            f"{fin['wall_s']:.1f} s; "
            + ", ".join(f"{k} {v:.1f} s" for k, v in fin["steps"].items())
            + f"; LMDB {fin['lmdb_du'] / 1e9:.2f} GB on disk.",
        ]
    m = 60
    lines += [
        "",
        f"reBEN on {REBEN['nodes']} nodes × {REBEN['cores']} cores ({REBEN['products']} products with "
        f"patches, {REBEN['pairs']:,} patch pairs, ≈ {REBEN['lmdb_gb']:.0f} GB of LMDB), sen2cor excluded, "
        "every product costed as a full synthetic tile"
        + (
            " (**a check run on demo-size products: these figures are not reBEN's**):"
            if r.get("small")
            else ":"
        ),
        "",
        f"- Per-product cost: **{x['c']:.0f} s** at one thread (the mean task of the local run above, on "
        "2 loaded cores: an upper bound; the build benchmark measured 117–221 s). "
        f"{x['slots']} Dask workers (16 per node, 1 thread and ≤ 2.6 GB each: 42 GB per node) take the "
        f"{REBEN['products']} tasks in ⌈{REBEN['products']} / {x['slots']}⌉ = {x['rounds']} round: "
        f"{x['rounds']} × {x['c']:.0f} s + {dask['executor'].get('startup_seconds', 0):.0f} s startup ≈ "
        f"**{x['phase_s'] / m:.1f} min** (one 16-core node: ⌈115 / 16⌉ = 8 rounds = "
        f"{x['one_node_s'] / m:.0f} min), plus Dask's own overhead ({x['over']:+.1f} s per task here).",
        f"- Shared file system: each task reads its product ({x['in_gb']:.2f} GB here) and writes its work "
        f"store ({x['work_gb']:.2f} GB here): {REBEN['products']} × {x['in_gb'] + x['work_gb']:.2f} GB = "
        f"**{x['fs_gb']:.0f} GB within the round**, {x['fs_gb_s']:.2f} GB/s at {x['c']:.0f} s per task. "
        f"The round takes max({x['c']:.0f} s, {x['fs_gb']:.0f} GB ÷ the file system's bandwidth): one NFS "
        f"server (≈ 1 GB/s over 10 GbE) needs {x['fs_gb'] / m:.1f} min for it, "
        + (
            "longer than the compute, so there the file system, not the cores, bounds the phase"
            if x["fs_gb"] > x["c"]
            else f"close to the compute (a task under {x['fs_gb']:.0f} s would be bound by it)"
        )
        + "; a parallel file system (Lustre, GPFS: several GB/s) keeps the phase compute-bound.",
        f"- Then the dataset-wide steps run once on one node (`--finalize`, or the client): the single LMDB "
        f"writer at {x['lmdb_mb_s']:.0f} MB/s ({x['lmdb_source']}) needs {REBEN['lmdb_gb']:.0f} GB ÷ "
        f"{x['lmdb_mb_s']:.0f} MB/s = **{x['lmdb_s'] / m:.0f} min**, reading the {REBEN['products']} work "
        f"stores ({REBEN['products'] * x['work_gb']:.0f} GB; ≥ {x['read_s'] / m:.1f} min at 10 Gb/s, "
        f"overlapped with the writing); the other steps scale with the pairs: {x['other_s'] / m:.1f} min.",
        f"- Total ≈ {x['phase_s'] / m:.1f} + {x['lmdb_s'] / m:.0f} + {x['other_s'] / m:.1f} = "
        f"**{x['total_s'] / m:.0f} min**, of which the single LMDB writer is "
        f"{100 * x['lmdb_s'] / x['total_s']:.0f} %: more nodes shorten only the per-product phase.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--archive-dir", type=Path, default=Path("bench/.data"))
    ap.add_argument("--products", type=int, default=0, help="only the first N products (0: all)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--small", action="store_true", help="the demo-size archive (a check of the benchmark)")
    ap.add_argument("--no-finalize", action="store_true", help="skip the --finalize run")
    ap.add_argument("--dask-first", action="store_true", help="run the Dask build before the local one")
    ap.add_argument("--pairs", type=int, default=1, help="pairs of builds, alternating which goes first")
    ap.add_argument("--no-idle", action="store_true", help="skip the idle cluster's CPU probe")
    ap.add_argument("--set", dest="sets", action="append", help="recipe overrides (default: reBEN-like)")
    ap.add_argument("--with", dest="others", action="append", help="another run's JSON, for the table")
    ap.add_argument("--write", type=Path)
    ap.add_argument("--report", type=Path, help="write the section of a recorded run (its JSON) instead")
    args = ap.parse_args()
    args.archive_dir.mkdir(parents=True, exist_ok=True)
    if args.report:
        r = json.loads(args.report.read_text())
        r.setdefault("command", "python bench/bench_dask.py")  # recorded before the key existed
        r.setdefault("date", time.strftime("%Y-%m-%d", time.localtime(args.report.stat().st_mtime)))
        r["arithmetic"] = arithmetic(r, args.workers)
        pairs = [o for o in r.get("others", []) if o.get("pair")]  # this run's further pairs
        r["others"] = [*pairs, *(json.loads(Path(p).read_text()) for p in args.others or ())]
        for o in r["others"]:  # recorded before the key existed: its flags, from what it recorded
            flags = " --dask-first" if o.get("order") == "Dask first" else ""
            o.setdefault(
                "command",  # (a pair of this run is not listed among the commands)
                "python bench/bench_dask.py" + flags + ("" if "finalize" in o else " --no-finalize"),
            )
        r["reported"] = " ".join(["python bench/bench_dask.py", *sys.argv[1:]])
        if args.write:
            replace_section(args.write, HEADING, section(r, args))
        return
    if args.small:
        archive = small_archive(args.archive_dir)
    else:
        archive, _ = ensure_archive(args.archive_dir, 2, 2)
    products = sorted((archive / "s2").glob("*.SAFE"))[: args.products or None]
    sets = args.sets if args.sets is not None else list(DEFAULT_SETS)
    r: dict = {"archive": str(archive), "products": [p.name for p in products], "sets": sets}
    r["command"] = " ".join(["python bench/bench_dask.py", *sys.argv[1:]])
    r["date"] = time.strftime("%Y-%m-%d")
    r["small"] = args.small
    r["spawn_environ"] = "rsprep"  # the LocalCluster's workers get the local executor's environment
    r["warm_s"] = warm(archive)
    r["input_bytes"] = sum(disk_usage(p) for p in products)
    w = args.workers
    base = args.archive_dir / "dask-out"
    extras = {
        "local": ["--shard", "0/1"],
        "dask": ["--shard", "0/1", "--cluster", "local", "--cluster-option", f"processes={w}"],
    }
    if not args.no_idle:
        r["idle"] = idle_probe(w)
    pairs = []
    for i in range(args.pairs):
        dask_first = args.dask_first != (i % 2 == 1)  # ABBA…: the order's own effect cancels out
        pair: dict = {"order": "Dask first" if dask_first else "local first"}
        for k in ("dask", "local") if dask_first else ("local", "dask"):
            pair[k] = run(archive, products, base / k, sets, w, extras[k])
            print(f"pair {i + 1}, {k}: {pair[k]['wall_s']:.1f} s", flush=True)
        for k in ("local", "dask"):
            pair[k].update(shard_figures(pair[k]))
        pair["identical"] = tree_digest(base / "local" / "work") == tree_digest(base / "dask" / "work")
        if args.pairs > 1:
            pair["pair"] = i + 1
        pairs.append(pair)
    first = pairs[0]
    r.update(local=first["local"], dask=first["dask"], order=first["order"])
    r["work_bytes"] = disk_usage(base / "local" / "work")
    r["identical"] = all(p["identical"] for p in pairs)
    if not args.no_finalize:
        r["finalize"] = finalize(archive, products, base / "local", sets)
        print(f"finalize: {r['finalize']['wall_s']:.1f} s", flush=True)
    r["machine"] = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    r["arithmetic"] = arithmetic(r, w)
    r["others"] = [*pairs[1:], *(json.loads(Path(p).read_text()) for p in args.others or ())]
    if args.pairs > 1:
        r["pair"] = 1
    name = "bench_dask-dask-first.json" if args.dask_first else "bench_dask.json"
    (args.archive_dir / name).write_text(json.dumps(r, indent=1, default=str))
    print(json.dumps({k: v for k, v in r.items() if k not in ("local", "dask")}, indent=1, default=str))
    if args.write:
        replace_section(args.write, HEADING, section(r, args))
        print(f"wrote {args.write}")


if __name__ == "__main__":
    main()
