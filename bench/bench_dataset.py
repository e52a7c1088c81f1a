"""Benchmark ``split`` and ``noise`` on a reBEN-size table (66 tiles × 8281 = 546,546 patches).

The table looks like our sidecar (patch_id, tile, epsg, bounds, x, y, sizes, labels, split) with
neighbouring tiles overlapping by 9.8 km as real MGRS tiles do, and one second date for a fifth of the
tiles. Baselines, timed in the same run:

- split: a per-row pandas ``apply`` of the tile-border formula (no leakage report), checked to give the
  same codes as rsprep;
- noise: a straightforward pandas version of ``mixed`` (explode labels, ``DataFrame.sample`` per class,
  regroup), checked to remove and add the same number of labels per class.

    python bench/bench_dataset.py [--write docs/BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).parent))
from bench_patch import replace_section

from rsprep.core.noise import label_matrix
from rsprep.core.nomenclature import BEN19
from rsprep.core.splits import SplitOptions, split_table
from rsprep.stages.noise import NoiseOptions, make_noise

N_SIDE, STEP, SIZE, P = 91, 100_000, 109_800, 1200


def make_table(tiles_x=11, tiles_y=5, repeat_every=5, seed=0) -> pa.Table:
    rng = np.random.default_rng(seed)
    x, y = np.meshgrid(np.arange(N_SIDE), np.arange(N_SIDE))
    x, y = x.ravel(), y.ravel()
    parts = []
    k = 0
    for ty in range(tiles_y):
        for tx in range(tiles_x):
            dates = ["20170613T101031"] + (["20180120T102329"] if k % repeat_every == 0 else [])
            k += 1
            for d in dates:
                tile = f"T33U{'ABCDEFGHJKLMNPQRSTUVWXYZ'[tx]}{'ABCDEFGHJKLMNPQRSTUV'[ty]}"
                prefix = f"S2A_MSIL2A_{d}_N9999_R022_{tile}"
                ulx, uly = 200_000 + tx * STEP, 5_600_000 - ty * STEP
                parts.append(
                    {
                        "patch_id": [f"{prefix}_{a:02d}_{b:02d}" for a, b in zip(x, y, strict=True)],
                        "tile": [tile] * len(x),
                        "x": x,
                        "y": y,
                        "epsg": np.full(len(x), 32633),
                        "left": ulx + P * x.astype(float),
                        "right": ulx + P * (x + 1.0),
                        "top": uly - P * y.astype(float),
                        "bottom": uly - P * (y + 1.0),
                        "tile_size_m": np.full(len(x), float(SIZE)),
                        "patch_size_m": np.full(len(x), float(P)),
                    }
                )
    cols = {key: np.concatenate([np.asarray(p[key]) for p in parts]) for key in parts[0]}
    n = len(cols["patch_id"])
    classes = list(BEN19.classes)
    prevalence = np.linspace(0.02, 0.5, len(classes))
    hot = rng.random((n, len(classes))) < prevalence
    hot[:, 2] |= ~hot.any(axis=1)
    alpha = np.argsort(np.array(classes, dtype=object))
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(hot.sum(axis=1), out=offsets[1:])
    _, c = np.nonzero(hot[:, alpha])
    labels = pa.ListArray.from_arrays(pa.array(offsets), pa.array(np.array(classes, dtype=object)[alpha][c]))
    table = pa.table({k: pa.array(v.tolist() if v.dtype == object else v) for k, v in cols.items()})
    table = table.append_column("labels", labels)
    return table


def naive_tile_border(df) -> np.ndarray:
    def one(row):
        s, p = row["tile_size_m"], row["patch_size_m"]
        cx, cy = p * row["x"] + p / 2, p * row["y"] + p / 2
        d = min(cx, s - cx, cy, s - cy)
        a1 = s * (1 - math.sqrt(0.5)) / 2
        a12 = s * (1 - math.sqrt(0.25)) / 2
        return 0 if d < a1 else (1 if d < a12 else 2)

    return df.apply(one, axis=1).to_numpy()


def naive_mixed(df, sub, add, seed):
    """pandas: explode, sample per class, regroup (what one writes without thinking about speed)."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    train = df[df.split == "train"]
    ex = train[["patch_id", "labels"]].explode("labels").dropna()
    removed, added = {}, {}
    keep = []
    extra = []
    for c in BEN19.classes:
        pos = ex[ex.labels == c]
        k = math.floor(sub * len(pos))
        drop = pos.sample(n=k, random_state=rng.integers(1 << 31))
        keep.append(pos.drop(drop.index))
        neg_ids = train.patch_id[~train.patch_id.isin(pos.patch_id)]
        a = min(math.floor(add * len(pos)), max(math.floor(0.95 * len(train)) - len(pos), 0))
        new = neg_ids.sample(n=a, random_state=rng.integers(1 << 31))
        extra.append(pd.DataFrame({"patch_id": new.to_numpy(), "labels": c}))
        removed[c], added[c] = k, a
    noisy = pd.concat(keep + extra).groupby("patch_id").labels.agg(lambda s: sorted(s))
    return noisy, removed, added


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", type=Path, help="update this markdown file's dataset section")
    args = ap.parse_args()

    t0 = time.perf_counter()
    table = make_table()
    n = table.num_rows
    print(f"table: {n} rows ({time.perf_counter() - t0:.1f} s to make)")

    t0 = time.perf_counter()
    out = split_table(table, SplitOptions())
    t_split = time.perf_counter() - t0
    r = out.report
    print(
        f"rsprep split tile-border + leakage report: {t_split:.2f} s; "
        f"overlapping pairs {r['overlapping_pairs']}"
    )
    t0 = time.perf_counter()
    out_random = split_table(table, SplitOptions(method="random"))
    t_random = time.perf_counter() - t0
    t0 = time.perf_counter()
    split_table(table, SplitOptions(method="block", block_km=10))
    t_block = time.perf_counter() - t0

    df = table.select(["x", "y", "tile_size_m", "patch_size_m"]).to_pandas()
    t0 = time.perf_counter()
    naive = naive_tile_border(df)
    t_naive = time.perf_counter() - t0
    same_split = bool(np.array_equal(naive, out.codes))
    print(f"naive per-row tile-border (codes only): {t_naive:.2f} s; identical codes: {same_split}")

    split_names = np.array(["train", "validation", "test"])[out.codes]
    meta = table.select(["patch_id", "labels"]).append_column("split", pa.array(split_names))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "metadata.parquet"
        pq.write_table(meta, path)
        timings = {}
        for label, kw in [
            ("mixed 0.2/0.1 exact", {"mode": "mixed", "sub_rate": 0.2, "add_rate": 0.1}),
            ("uniform 0.05 bernoulli", {"mode": "uniform", "rate": 0.05, "sampling": "bernoulli"}),
            ("sample 0.3/0.2 exact", {"mode": "sample", "patch_rate": 0.3, "class_rate": 0.2}),
        ]:
            t0 = time.perf_counter()
            rep = make_noise(path, NoiseOptions(**kw), out_dir=Path(tmp) / "noise", overwrite=True, name="b")
            timings[label] = time.perf_counter() - t0
            print(f"rsprep noise {label}: {timings[label]:.2f} s (file to files)")
            if label.startswith("mixed"):
                mixed = rep
        df = meta.to_pandas()
        t0 = time.perf_counter()
        _, removed, added = naive_mixed(df, 0.2, 0.1, 0)
        t_naive_noise = time.perf_counter() - t0
        same_counts = all(
            c["removed"] == removed[c["name"]] and c["added"] == added[c["name"]] for c in mixed["classes"]
        )
        print(f"naive pandas mixed: {t_naive_noise:.2f} s (in memory); same per-class counts: {same_counts}")
        check = label_matrix(
            pq.read_table(Path(tmp) / "noise" / "b.parquet").column("labels"), list(BEN19.classes)
        )
        assert check.shape[0] == n

    t_mixed = timings["mixed 0.2/0.1 exact"]
    lines = [
        "## Dataset-wide stages: split and noise (issue 5)",
        "",
        "Command: `python bench/bench_dataset.py --write docs/BENCHMARKS.md` "
        "(one core, same run for all rows).",
        f"Machine: {platform.machine()}, Python {platform.python_version()}. Table: {n:,} patches "
        f"(66 tiles of 8281, 11 of them with a second date, neighbouring tiles overlapping by 9.8 km).",
        "",
        "| step | rsprep | baseline | ratio |",
        "|---|---|---|---|",
        f"| split tile-border, with leakage report (1.2/5/10 km neighbours, {r['overlapping_pairs']:,} "
        f"ground-overlapping pairs) | {t_split:.2f} s | per-row pandas apply, codes only: {t_naive:.1f} s "
        f"| {t_naive / t_split:.1f}× |",
        f"| split random, with leakage report | {t_random:.2f} s | | |",
        f"| split block 10 km, with leakage report | {t_block:.2f} s | | |",
        f"| noise mixed 0.2/0.1 exact, parquet in → 3 files out | {t_mixed:.2f} s | "
        "pandas explode/sample/regroup, "
        f"in memory: {t_naive_noise:.1f} s | {t_naive_noise / t_mixed:.1f}× |",
        f"| noise uniform 0.05 bernoulli | {timings['uniform 0.05 bernoulli']:.2f} s | | |",
        f"| noise sample 0.3/0.2 exact | {timings['sample 0.3/0.2 exact']:.2f} s | | |",
        "",
        f"Tile-border codes identical to the baseline: {same_split}. Per-class removal/addition counts of "
        f"`mixed` identical to the baseline: {same_counts}. "
        f"Random split counts: {out_random.report['counts_all']}.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.write:
        replace_section(args.write, "## Dataset-wide stages", text)
    return 0 if same_split and same_counts else 1


if __name__ == "__main__":
    sys.exit(main())
