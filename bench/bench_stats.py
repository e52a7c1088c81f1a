"""Benchmark ``rsprep stats`` against a plain numpy pass over the same arrays, in the same run.

A Zarr dataset (default 3,000 patches, half of them train) is made once into bench/.data: the
official-layout folder of bench/bench_convert.py, converted with ``rsprep convert zarr``, and its
metadata.parquet beside the store. Then, alternately (best of ``--repeat``, after a warm-up run):

- ``rsprep stats``: ``write_stats`` end to end (reading the train patches, every statistic of
  docs/stats.md: native, bilinear- and nearest-stacked, S1, labels; writing stats.json);
- the baseline: the same train patches read into the same batches (not timed), then a mean, std,
  min and max pass per band with ``np.float64`` over each batch (timed).

Throughput is in native values per second (12 S2 bands and VV/VH of every train patch).

    python bench/bench_stats.py [--patches 3000] [--repeat 3] [--write docs/BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_convert import generate
from bench_patch import replace_section

from rsprep.core.bands import SPECTRAL_BANDS
from rsprep.core.values import S1_BANDS
from rsprep.formats.readers import ZarrReader
from rsprep.formats.resumable import ConvertOptions
from rsprep.formats.sources import read_metadata
from rsprep.stages.convert import convert
from rsprep.stages.stats import StatsOptions, write_stats
from rsprep.store import dataset as ds

DATA = Path(__file__).parent / ".data"
BANDS = (*SPECTRAL_BANDS, *S1_BANDS)


def make_dataset(n: int, workers: int) -> Path:
    """bench/.data/stats-<n>: metadata.parquet and zarr/dataset.zarr (uncompressed, as by default)."""
    root = DATA / f"stats-{n}"
    if (root / "zarr" / "dataset.zarr" / "zarr.json").is_file():
        return root
    official = DATA / f"official-{n}"
    if not official.is_dir():
        generate(official, n)
    tmp = root.with_name(root.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shutil.copy(official / ds.METADATA, tmp / ds.METADATA)
    convert("zarr", official, tmp / "zarr" / "dataset.zarr", ConvertOptions(workers=workers))
    os.replace(tmp, root)
    return root


def batches(root: Path, size: int):
    """The train patches in the batches ``rsprep stats`` reads: {band: (B, h, w)} per batch."""
    table = read_metadata(root, required=True)
    rows = [r for r in table.select(["patch_id", "split"]).to_pylist() if r["split"] == "train"]
    reader = ZarrReader(root / "zarr" / "dataset.zarr")
    for a in range(0, len(rows), size):
        values = [reader.patch(r["patch_id"], reference_map=False) for r in rows[a : a + size]]
        yield {b: np.stack([v[b] for v in values]) for b in BANDS}


def numpy_pass(root: Path, size: int) -> tuple[float, int, dict]:
    """Seconds of the mean/std/min/max passes alone (reading excluded), values, and the B02 figures."""
    seconds, values, b02 = 0.0, 0, []
    for batch in batches(root, size):
        t = time.perf_counter()
        for b in BANDS:
            x = batch[b].astype(np.float64)
            figures = (np.mean(x), np.std(x), x.min(), x.max())
            if b == "B02":
                b02.append((x.size, *figures))
        seconds += time.perf_counter() - t
        values += sum(batch[b].size for b in BANDS)
    n = sum(r[0] for r in b02)
    return seconds, values, {"mean": sum(r[0] * r[1] for r in b02) / n, "max": max(r[4] for r in b02)}


def read_only(root: Path, size: int) -> float:
    t = time.perf_counter()
    for _ in batches(root, size):
        pass
    return time.perf_counter() - t


def ours(root: Path) -> float:
    t = time.perf_counter()
    write_stats(root, StatsOptions(), overwrite=True)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patches", type=int, default=3000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--write", type=Path)
    args = ap.parse_args()
    size = StatsOptions().batch_size

    root = make_dataset(args.patches, args.workers)
    ours(root)  # warm-up: page cache and compiled kernels
    t_ours, t_np, t_read = [], [], []
    for _ in range(args.repeat):
        t_ours.append(ours(root))
        sec, values, b02 = numpy_pass(root, size)
        t_np.append(sec)
        t_read.append(read_only(root, size))
    t_o, t_n, t_r = min(t_ours), min(t_np), min(t_read)
    doc = json.loads((root / "stats.json").read_text())
    b02_ours = doc["bands"]["B02"]
    check = bool(np.isclose(b02_ours["mean"], b02["mean"], rtol=1e-9) and b02_ours["max"] == b02["max"])
    patches = doc["patches"]
    ratio = t_n / t_o
    rate = {k: f"{values / t:,.0f}" for k, t in (("ours", t_o), ("numpy", t_n), ("read", t_r))}
    print(
        f"{patches} train patches, {values:,} values: rsprep stats {t_o:.2f} s ({rate['ours']} values/s), "
        f"numpy pass {t_n:.2f} s ({rate['numpy']} values/s), reading {t_r:.2f} s; "
        f"ratio {ratio:.2f}; B02 agrees: {check}"
    )
    if args.write:
        text = f"""## Per-band statistics (`rsprep stats`)

`python bench/bench_stats.py --patches {args.patches} --repeat {args.repeat} --write docs/BENCHMARKS.md` —
{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}. A Zarr dataset of
{args.patches:,} synthetic patches (bench/bench_convert.py's folder through `rsprep convert zarr`,
uncompressed), {patches:,} of them train: {values:,} native values (12 S2 bands + VV/VH), in the page
cache. Best of {args.repeat}, after a warm-up run.

| pass over the train patches | seconds | values/s | vs. numpy |
|---|---:|---:|---:|
| baseline: numpy mean, std, min, max per band (float64), batches read | {t_n:.2f} | {rate["numpy"]} | 1.0× |
| `rsprep stats` end to end (reading included), all figures | {t_o:.2f} | {rate["ours"]} | **{ratio:.2f}×** |
| reading alone (the same batches through `ZarrReader`) | {t_r:.2f} | {rate["read"]} | |

Goal: ≥ 0.8× of the numpy pass. `rsprep stats` computes, at once, count, nodata, mean, std, min, max,
p1 and p99 of the 12 native bands, of VV/VH and of the 12 bands stacked to 10 m twice (bilinear and
nearest; the bilinear values of the 8 coarser bands are made and histogrammed: {patches * 8 * 14400:,}
more values) and the label frequencies. S2 figures come from one 65,536-bin histogram per band
(`core/moments.py`: a numba pass, a fused bilinear-upsampling histogram whose values equal
`kernels.to_side`, integer arithmetic for the 20 m bands); S1 from one numba pass (sum, min, max, 0.01 dB
histogram) and a second for M2; the next batch is read in a background thread. The B02 mean and maximum
agree with the baseline's: **{check}**.
"""
        replace_section(args.write, "## Per-band statistics", text)
        print(f"wrote {args.write}")


if __name__ == "__main__":
    main()
