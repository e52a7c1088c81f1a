"""Benchmark data loading: ``rsprep.torch.BENDataset`` (LMDB and Zarr) against ConfigILM's
``BENv2DataSet`` on the same LMDB and metadata, with 0, 1 and 2 DataLoader workers, in one run.

The dataset is bench/.data/torch-<n>: links to the LMDB of bench/bench_validate.py's folder
(validate-lmdb-<n>) and the Zarr store of bench/bench_stats.py's (stats-<n>), one metadata.parquet and
an empty flagged table (ConfigILM requires the file). Both loaders give 14 channels of 120 × 120
(ours: bilinear upsampling and normalisation from stats.json; ConfigILM: its own interpolation and
normalisation). ConfigILM runs in .venv-interop in a subprocess (this file, ``--configilm``). Each
loader iterates the train split in batches of 32 (workers: ``spawn`` for ours, as docs/torch.md
advises; ``fork`` for ConfigILM, whose open LMDB environment cannot be pickled for ``spawn``); the
clock starts at the first batch, so worker start-up is left out, and samples/s counts the batches after it.

    python bench/bench_torch.py [--patches 3000] [--repeat 2] [--write docs/BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / ".data"
INTEROP = HERE.parent / ".venv-interop" / "bin" / "python"
WORKERS = (0, 1, 2)
BATCH = 32


def timed(loader) -> tuple[float, int]:
    """Samples per second after the first batch, and the samples counted."""
    it = iter(loader)
    next(it)
    t, n = time.perf_counter(), 0
    for batch in it:
        n += len(batch["image"] if isinstance(batch, dict) else batch[0])
    return n / (time.perf_counter() - t), n


def loader(data, workers: int, fork: bool = False):
    from torch.utils.data import DataLoader

    context = ("fork" if fork else "spawn") if workers else None
    return DataLoader(data, batch_size=BATCH, num_workers=workers, multiprocessing_context=context)


def configilm(root: Path) -> dict:
    """In .venv-interop: BENv2DataSet on root's LMDB, samples/s per worker count."""
    from configilm.extra.DataSets.BENv2_DataSet import BENv2DataSet

    files = {
        "images_lmdb": str(root / "lmdb"),
        "metadata_parquet": str(root / "metadata.parquet"),
        "metadata_snow_cloud_parquet": str(root / "metadata_for_patches_with_snow_cloud_or_shadow.parquet"),
    }
    data = BENv2DataSet(files, split="train", img_size=(14, 120, 120))
    return {str(w): timed(loader(data, w, fork=True)) for w in WORKERS}


def make_root(n: int) -> Path:
    import pyarrow.parquet as pq

    from rsprep.store import dataset as ds

    root = DATA / f"torch-{n}"
    lmdb, zarr = DATA / f"validate-lmdb-{n}", DATA / f"stats-{n}"
    if not (lmdb / "lmdb" / "data.mdb").is_file() or not (zarr / "stats.json").is_file():
        raise SystemExit(f"run bench/bench_validate.py and bench/bench_stats.py --patches {n} first")
    root.mkdir(parents=True, exist_ok=True)
    for name, target in (
        ("lmdb", lmdb / "lmdb"),
        ("zarr", zarr / "zarr"),
        ("stats.json", zarr / "stats.json"),
    ):
        if not (root / name).exists():
            (root / name).symlink_to(target)
    table = pq.read_table(zarr / ds.METADATA)
    pq.write_table(table, root / ds.METADATA)
    pq.write_table(table.slice(0, 0), root / ds.FLAGGED)
    return root


def ours(root: Path) -> dict:
    from rsprep.torch import BENDataset

    out = {}
    for fmt in ("lmdb", "zarr"):
        data = BENDataset(root, format=fmt, split="train")
        out[fmt] = {str(w): timed(loader(data, w)) for w in WORKERS}
    return out


def table_text(args, results: dict, n: int) -> str:
    rows = [("rsprep BENDataset, LMDB", results["lmdb"]), ("rsprep BENDataset, Zarr", results["zarr"])]
    rows.append(("ConfigILM BENv2DataSet, LMDB", results["configilm"]))
    base = results["configilm"]
    lines = [
        "| loader | " + " | ".join(f"{w} workers" for w in WORKERS) + " |",
        "|---|" + "---|" * len(WORKERS),
    ]
    for name, r in rows:
        cells = [f"{r[str(w)][0]:,.0f} ({r[str(w)][0] / base[str(w)][0]:.2f}×)" for w in WORKERS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return f"""## PyTorch data loading (`rsprep.torch.BENDataset`)

`python bench/bench_torch.py --patches {args.patches} --repeat {args.repeat} --write docs/BENCHMARKS.md` —
{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, CPU torch. The train split
({n:,} of {args.patches:,} synthetic patches of bench/bench_convert.py, in the page cache), 14 channels of
120 × 120, batches of {BATCH}, `spawn` workers for ours, `fork` for ConfigILM (its open LMDB
environment cannot be pickled for `spawn`); samples/s after the first batch (worker start-up left
out), best of {args.repeat} alternating rounds, ratio against ConfigILM's `BENv2DataSet` on the same
LMDB with the same workers, same run.

{chr(10).join(lines)}

Load average at the end of the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; on a shared
machine the figures of one configuration vary between runs.
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patches", type=int, default=3000)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--write", type=Path)
    ap.add_argument("--configilm", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.configilm:
        json.dump(configilm(args.configilm), sys.stdout)
        return
    root = make_root(args.patches)
    rounds = []
    for _ in range(args.repeat):  # alternately, best of the rounds per cell
        results = ours(root)
        cmd = [str(INTEROP), __file__, "--configilm", str(root)]
        done = subprocess.run(cmd, check=True, capture_output=True, text=True)
        results["configilm"] = json.loads(done.stdout.strip().splitlines()[-1])
        rounds.append(results)
    results = {k: {w: max(r[k][w] for r in rounds) for w in rounds[0][k]} for k in rounds[0]}
    n = results["lmdb"]["0"][1] + BATCH
    print(json.dumps(results))
    if args.write:
        from bench_patch import replace_section

        replace_section(args.write, "## PyTorch data loading", table_text(args, results, n))


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    main()
