"""Benchmark ``rsprep card`` on a reBEN-size table dataset (goal: under 60 s, figures included).

A synthetic 550,000-row dataset folder of tables only is made once into bench/.data: metadata.parquet
and the flagged file (official schema; a patch is flagged when it has seasonal snow or cloud/shadow),
and the sidecar patches.parquet (centroids, season, cloud/shadow/snow fractions, WKB footprints),
121 products (11 tiles × 11 dates) of 4,546 patches each (90 columns), BEN19 labels (each class with
probability 0.15), a 50/25/25 random split; no build.json (an official-like folder) and no pixels
(so the RGB preview grid is left out, with its note). Then, ``--repeat`` times, alternately:

- the baseline: reading the three parquet files with ``pyarrow.parquet.read_table``;
- the card's table facts step: ``open_view`` (which reads the same three files) and ``card_facts``;
- the figures: ``draw_all`` on those facts (every PNG the folder allows, rendered to bytes);
- ``make_card`` end to end (facts, figures written, README.md, croissant.json with its sha256s);
- ``rsprep card DATASET --overwrite`` in a fresh process (interpreter and imports included), with
  its peak RSS.

The section reports min / median of the repeats, after a warm-up ``make_card``.

    python bench/bench_card.py [--rows 550000] [--repeat 3] [--write docs/BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).parent))
from bench_patch import replace_section

from rsprep.card import CardOptions, make_card
from rsprep.card.facts import card_facts
from rsprep.card.make import draw_all
from rsprep.core.nomenclature import BEN19
from rsprep.store import dataset as ds
from rsprep.validation.view import open_view

DATA = Path(__file__).parent / ".data"
GOAL_S = 60.0
TABLES = (ds.METADATA, ds.FLAGGED, ds.SIDECAR)
TILES = (
    "T33UUP", "T34WFU", "T35VNJ", "T29SND", "T31UFS", "T32TLT", "T34VFN", "T29UPV", "T34TDN", "T35VLG",
    "T32ULA",
)  # fmt: skip
DATES = (
    "20170613T101031", "20171101T094131", "20180120T102329", "20180526T100031", "20170717T093029",
    "20171005T100019", "20180310T095029", "20180814T094029", "20170811T101021", "20180426T100031",
    "20171221T101431",
)  # fmt: skip
COUNTRIES = (
    "Austria", "Belgium", "Finland", "Ireland", "Kosovo", "Lithuania", "Luxembourg", "Portugal",
    "Serbia", "Switzerland",
)  # fmt: skip


# --------------------------------------------------------------------------------------------
# The dataset
# --------------------------------------------------------------------------------------------
def build_tables(out: Path, n: int) -> int:
    """Write the three tables of an ``n``-patch folder into ``out``; the number of flagged rows."""
    import shapely

    rng = np.random.default_rng(0)
    prods = [f"S2A_MSIL2A_{d}_N9999_R022_{t}" for t in TILES for d in DATES]
    per = -(-n // len(prods))
    p = np.repeat(np.arange(len(prods)), per)[:n]
    k = np.tile(np.arange(per), len(prods))[:n]
    x, y = k % 90, k // 90
    ids = np.array([f"{prods[a]}_{b}_{c}" for a, b, c in zip(p, x, y, strict=True)], dtype=object)
    order = np.argsort(ids)
    ids, p, x, y = ids[order], p[order], x[order], y[order]
    alpha = np.array(BEN19.alphabetical, dtype=object)
    rng.integers(1, 7, n)  # unused; kept so the draws equal those of the dataset first measured
    hot = rng.random((n, len(alpha))) < 0.15
    labels = [sorted(alpha[np.flatnonzero(h)].tolist() or [alpha[i % len(alpha)]]) for i, h in enumerate(hot)]
    split = rng.choice(np.array(["train", "validation", "test"]), n, p=[0.5, 0.25, 0.25])
    country = np.array(COUNTRIES)[p % len(COUNTRIES)]
    snow, cloud = rng.random(n) < 0.05, rng.random(n) < 0.1
    s1 = [
        f"S1A_IW_GRDH_1SDV_{DATES[a % 11][:8]}T165043_{TILES[a // 11][1:]}_{b}_{c}"
        for a, b, c in zip(p, x, y, strict=True)
    ]
    table = pa.table(
        {
            "patch_id": pa.array(ids, pa.string()),
            "labels": pa.array(labels, ds.LABELS_TYPE),
            "split": pa.array(split),
            "country": pa.array(country),
            "s1_name": pa.array(s1, pa.string()),
            "s2v1_name": pa.nulls(n, pa.string()),
            "contains_seasonal_snow": pa.array(snow),
            "contains_cloud_or_shadow": pa.array(cloud),
        }
    )
    flag = snow | cloud
    lon0 = 5 + (p // 11) * 2.0 + x * 0.016
    lat0 = 40 + (p // 11) * 1.5 - y * 0.011
    boxes = shapely.box(lon0, lat0 - 0.011, lon0 + 0.016, lat0)
    months = np.array([int(DATES[a % 11][4:6]) for a in p])
    sidecar = pa.table(
        {
            "patch_id": pa.array(ids, pa.string()),
            "centroid_lon": lon0 + 0.008,
            "centroid_lat": lat0 - 0.0055,
            "season": pa.array(np.array(["winter", "spring", "summer", "autumn"])[(months % 12) // 3]),
            "cloud_fraction": np.where(cloud, rng.random(n), 0.0),
            "shadow_fraction": np.where(cloud, rng.random(n) * 0.3, 0.0),
            "snow_fraction": np.where(snow, rng.random(n), 0.0),
            "split": pa.array(split),
            "geometry": pa.array(shapely.to_wkb(boxes), pa.binary()),
        }
    )
    ds.write_tables(
        {
            out / ds.METADATA: (table.filter(pa.array(~flag)), True),
            out / ds.FLAGGED: (table.filter(pa.array(flag)), True),
            out / ds.SIDECAR: (sidecar, False),
        }
    )
    return int(flag.sum())


def make_dataset(n: int) -> Path:
    """bench/.data/card-<n>: the three tables (made once; a card written there is replaced by each run)."""
    root = DATA / f"card-{n}"
    if all((root / t).is_file() for t in TABLES):
        return root
    tmp = root.with_name(root.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    t = time.perf_counter()
    flagged = build_tables(tmp, n)
    shutil.rmtree(root, ignore_errors=True)
    os.replace(tmp, root)
    print(f"built {root} ({n:,} rows, {flagged:,} flagged) in {time.perf_counter() - t:.0f} s")
    return root


# --------------------------------------------------------------------------------------------
# The measurements
# --------------------------------------------------------------------------------------------
def read_tables(root: Path) -> float:
    t = time.perf_counter()
    for name in TABLES:
        pq.read_table(root / name)
    return time.perf_counter() - t


def facts_step(root: Path):
    """Seconds of ``open_view`` + ``card_facts``, and what they returned."""
    t = time.perf_counter()
    view = open_view(root)
    facts, data = card_facts(view)
    return time.perf_counter() - t, (view, facts, data)


def figures_step(view, facts, data) -> tuple[float, dict[str, bytes], dict[str, str]]:
    t = time.perf_counter()
    pngs, notes = draw_all(facts, data, view, CardOptions())
    return time.perf_counter() - t, pngs, notes


def whole(root: Path):
    t = time.perf_counter()
    result = make_card(root, CardOptions(), overwrite=True)
    return time.perf_counter() - t, result


def shell(root: Path) -> tuple[float, float | None]:
    """Wall seconds of ``rsprep card`` in a fresh process, and its peak RSS in GB (with /usr/bin/time)."""
    cmd = [str(Path(sys.executable).parent / "rsprep"), "card", str(root), "--overwrite"]
    timer = Path("/usr/bin/time")
    if timer.is_file():
        cmd = [str(timer), "-f", "RSS %M", *cmd]
    t = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - t
    rss = [int(line.split()[1]) for line in out.stderr.splitlines() if line.startswith("RSS ")]
    return seconds, (rss[-1] / 1024**2 if rss else None)


def _mm(values: list[float]) -> str:
    """min / median (of seconds)."""
    return f"{min(values):.2f} / {statistics.median(values):.2f}"


# --------------------------------------------------------------------------------------------
# The section
# --------------------------------------------------------------------------------------------
def write_section(path: Path, args, info: dict, t: dict[str, list[float]]) -> None:
    shell_min, shell_med = min(t["shell"]), statistics.median(t["shell"])
    met = "met" if shell_med < GOAL_S else "met at best only" if shell_min < GOAL_S else "missed"
    med = {k: statistics.median(v) for k, v in t.items()}
    base = med["read"]
    lines = [
        "## Dataset card (`rsprep card`)",
        "",
        f"`python bench/bench_card.py --rows {args.rows} --repeat {args.repeat} "
        "--write docs/BENCHMARKS.md` — "
        f"{time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} CPUs (shared with a CI run "
        f"while measuring: load average {info['load'][0]:.2f} before, {info['load'][1]:.2f} after), "
        f"Python {platform.python_version()}, pyarrow {pa.__version__}. Default threads. Each figure: "
        f"min / median of {args.repeat} runs in the same process, after a warm-up `make_card`.",
        "",
        f"**Goal: `rsprep card` on a {args.rows:,}-row table in under {GOAL_S:.0f} s, figures included — "
        f"{met}** ({shell_min:.1f} s best, {shell_med:.1f} s median, from the shell). A synthetic folder of "
        f"tables only (bench/.data/card-{args.rows}): metadata.parquet ({info['metadata']:,} rows) and the "
        f"flagged file ({info['flagged']:,} rows) in the official schema, the sidecar patches.parquet "
        f"({info['sidecar']:,} rows: centroids, season, cloud/shadow/snow fractions, WKB footprints); "
        f"{info['mb']:.1f} MB of ZSTD parquet, in the page cache; 121 products over 11 tiles, BEN19 "
        "labels, no build.json, no pixels.",
        "",
        "| step | seconds (min / median) | vs. reading the tables (medians) |",
        "|---|---:|---:|",
        f"| baseline: `pyarrow.parquet.read_table` of the three files | {_mm(t['read'])} | 1.0× |",
        f"| table facts: `open_view` (reads the same three files) + `card_facts` | {_mm(t['facts'])} "
        f"| {statistics.median(t['facts']) / base:.1f}× |",
        f"| figures: `draw_all` ({', '.join(info['figures'])}; PNG bytes) | {_mm(t['figures'])} "
        f"| {statistics.median(t['figures']) / base:.1f}× |",
        f"| `make_card` end to end (README.md, figures/, croissant.json) | {_mm(t['whole'])} "
        f"| {statistics.median(t['whole']) / base:.1f}× |",
        f"| **`rsprep card DATASET --overwrite`** (fresh process, start-up included) | **{_mm(t['shell'])}** "
        f"| {shell_med / base:.1f}× |",
        "",
        f"The card states {info['patches']:,} patches. Peak RSS of `rsprep card`: {info['rss']}. "
        f"Not drawn: {'; '.join(f'{k} ({v})' for k, v in info['notes'].items()) or 'none'}. "
        f"{info['map']}; without `--countries` no borders are drawn. `make_card` less the facts and "
        f"figures steps (README.md, croissant.json with its sha256s, writing the files): about "
        f"{med['whole'] - med['facts'] - med['figures']:.1f} s (medians).",
        "",
    ]
    replace_section(path, "## Dataset card (`rsprep card`)", "\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=550_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--write", type=Path)
    args = ap.parse_args()

    root = make_dataset(args.rows)
    load0 = os.getloadavg()[0]
    whole(root)  # warm-up: page cache, imports, matplotlib's font cache
    t: dict[str, list[float]] = {k: [] for k in ("read", "facts", "figures", "whole", "shell")}
    rss: list[float] = []
    for i in range(args.repeat):
        t["read"].append(read_tables(root))
        sec, (view, facts, data) = facts_step(root)
        t["facts"].append(sec)
        sec, pngs, _ = figures_step(view, facts, data)
        t["figures"].append(sec)
        del view, facts, data
        sec, result = whole(root)
        t["whole"].append(sec)
        sec, peak = shell(root)
        t["shell"].append(sec)
        if peak is not None:
            rss.append(peak)
        print(f"run {i + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in t.items()))
    assert result.patches == args.rows, (result.patches, args.rows)
    assert set(pngs) == {p.stem for p in result.figures}, (sorted(pngs), result.figures)
    assert result.croissant is not None and result.croissant.is_file()
    from rsprep.card.figures import MAX_POLYGONS

    info = {
        "load": (load0, os.getloadavg()[0]),
        "patches": result.patches,
        "metadata": pq.read_metadata(root / ds.METADATA).num_rows,
        "flagged": pq.read_metadata(root / ds.FLAGGED).num_rows,
        "sidecar": pq.read_metadata(root / ds.SIDECAR).num_rows,
        "mb": sum((root / n).stat().st_size for n in TABLES) / 1e6,
        "figures": [p.stem for p in result.figures],
        "notes": {k: v for k, v in result.notes.items() if k not in pngs},
        "rss": f"{max(rss):.2f} GB" if rss else "not measured (no /usr/bin/time)",
        "map": (
            f"The footprint map draws centroids (more than {MAX_POLYGONS:,} patches with a sidecar row)"
            if result.patches > MAX_POLYGONS
            else "The footprint map draws each patch's polygon"
        ),
    }
    for k, v in t.items():
        print(f"{k}: {_mm(v)} s")
    print(f"{result.patches:,} patches; figures {info['figures']}; notes {info['notes']}; RSS {info['rss']}")
    if args.write:
        write_section(args.write, args, info, t)
        print(f"wrote {args.write}")


if __name__ == "__main__":
    main()
