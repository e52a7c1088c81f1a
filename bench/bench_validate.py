"""Benchmark ``rsprep validate``: the table-level checks at reBEN size and the value checks' read speed.

1. Table-level checks on 549,488 rows (goal: all of them together under 30 s on one core). A dataset
   folder holding only tables — metadata.parquet and the flagged file (official schema), the
   georeferenced patches.parquet sidecar (as ``rsprep metadata`` writes it), split_report.json and
   build.json from a tile-border split, one ``mixed`` noise variant and checksums.sha256 — is built
   once into bench/.data from real-looking reBEN names: the 115 L2A products of reBEN's input list
   (``../shared/data/reben-inputs``, 56 MGRS tiles) with each tile's UTM EPSG and upper-left corner on
   the 100 km MGRS grid (60 m multiples, neighbouring 109.8 km tiles overlapping by 9.8 km), a swath
   of each product's 91 × 91 patches, BEN19 labels. ``validate`` runs the schema, completeness,
   split, labels, noise and checksums checks on it, pinned to one CPU with one thread everywhere
   (Arrow, OpenMP, numba, Blosc); seconds per check from the report.
2. Value checks with ``--full``: the ``values`` and ``labels`` checks on an LMDB-only and a Zarr-only
   dataset of bench_convert's synthetic patches (default 3,000), in values/s, against the raw read
   speed of ``LmdbReader.patch`` / ``ZarrReader.patch`` (all arrays of a patch) and of the maps alone
   over the same patches, in the same run (goal: a check at least 0.5× its raw read).

Each measurement runs ``--repeat`` times (default 3); the section reports the min and the median.

    python bench/bench_validate.py [--patches 3000] [--repeat 3] [--write docs/BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import platform
import shutil
import statistics
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, str(Path(__file__).parent))
from bench_convert import generate
from bench_patch import replace_section

from rsprep.core.grid import season
from rsprep.core.labels import label_patches
from rsprep.core.noise import NoiseOptions
from rsprep.core.nomenclature import BEN19
from rsprep.core.splits import SplitOptions, code_names, split_table
from rsprep.core.values import MAP_BAND, REFERENCE_MAP, map_key
from rsprep.formats.readers import LmdbReader, ShardedPatchArray, ZarrReader
from rsprep.formats.resumable import ConvertOptions
from rsprep.stages.convert import convert
from rsprep.stages.metadata import (  # the sidecar exactly as `rsprep metadata` writes it
    _geometry,
    _metadata_table,
    _sidecar,
)
from rsprep.stages.noise import make_noise
from rsprep.store import dataset as ds
from rsprep.validation import validate
from rsprep.validation.checks.checksums import write_checksums

DATA = Path(__file__).parent / ".data"
PRODUCTS_CSV = Path(__file__).resolve().parents[2] / "shared/data/reben-inputs/bigearthnet_s2_tile_ids.csv"
ROWS, FLAGGED_ROWS = 549_488, 69_450  # reBEN: metadata.parquet 480,038 + the flagged file 69,450
SIDE, PATCH, TILE = 91, 1200, 109_800
TABLE_CHECKS = ["schema", "completeness", "split", "labels", "noise", "checksums"]
#: One thread everywhere (read when numba, OpenMP and Blosc start: the script re-runs itself with them).
ONE_THREAD = {
    v: "1" for v in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "BLOSC_NTHREADS", "OPENBLAS_NUM_THREADS")
}
_COLS = ("ABCDEFGH", "JKLMNPQR", "STUVWXYZ")  # MGRS 100 km column letters by zone set
_ROWS = "ABCDEFGHJKLMNPQRSTUV"
_BANDS = "CDEFGHJKLMNPQRSTUVWX"
COUNTRY = {  # by tile prefix (the countries of reBEN)
    "T29S": "Portugal", "T29U": "Ireland", "T31UE": "Belgium", "T31UGR": "Luxembourg",
    "T31UGS": "Belgium", "T32": "Switzerland", "T33": "Austria", "T34TE": "Kosovo", "T34TF": "Serbia",
    "T34TC": "Serbia", "T34U": "Lithuania", "T35U": "Lithuania",
}  # fmt: skip


# --------------------------------------------------------------------------------------------
# 1. The reBEN-size tables
# --------------------------------------------------------------------------------------------
def tile_corner(tile: str) -> tuple[int, float, float]:
    """(EPSG, ulx, uly) of a Sentinel-2 tile: the NW corner of its MGRS 100 km square on 60 m multiples."""
    from pyproj import Transformer

    zone, band, col, row = int(tile[1:3]), tile[3], tile[4], tile[5]
    epsg = 32600 + zone
    east = (_COLS[(zone - 1) % 3].index(col) + 1) * 100_000
    r = (_ROWS.index(row) - (5 if zone % 2 == 0 else 0)) % 20
    lat0 = -80 + 8 * _BANDS.index(band)
    n0 = Transformer.from_crs("EPSG:4326", f"EPSG:{epsg}", always_xy=True).transform(6 * zone - 183, lat0)[1]
    k = math.ceil((n0 - 100_000) / 100_000)
    k += (r - k) % 20  # the square of that row letter within the latitude band
    return epsg, math.floor(east / 60) * 60.0, math.ceil((k + 1) * 100_000 / 60) * 60.0


def products() -> list[str]:
    """reBEN's 115 L2A product prefixes: the 125 inputs less the last date of each 4-date tile."""
    if not PRODUCTS_CSV.is_file():
        raise SystemExit(f"{PRODUCTS_CSV} is missing (the shared data folder beside the checkout)")
    with PRODUCTS_CSV.open() as f:
        names = sorted(row["tile"] for row in csv.DictReader(f))
    by_tile: dict[str, list[str]] = {}
    for n in names:
        by_tile.setdefault(n.split("_")[5], []).append(n)
    keep = [p for ps in by_tile.values() for p in (ps[:3] if len(ps) == 4 else ps)]
    parts = [p.split("_") for p in sorted(keep, key=lambda p: (p.split("_")[5], p))]
    return [f"{m}_MSIL2A_{when}_N9999_{orbit}_{tile}" for m, _, when, _, orbit, tile, _ in parts]


def _counts(n_products: int, rng: np.random.Generator) -> np.ndarray:
    """Patches kept per product (a swath of 15 % to 100 % of the 8,281), summing to ROWS."""
    n = np.minimum(np.round(rng.uniform(0.15, 1.0, n_products) * SIDE * SIDE * 1.05), SIDE * SIDE)
    n = np.round(n * ROWS / n.sum()).astype(np.int64).clip(1, SIDE * SIDE)
    while (d := ROWS - int(n.sum())) != 0:
        room = np.flatnonzero(n < SIDE * SIDE) if d > 0 else np.flatnonzero(n > 1)
        n[room[: abs(d)]] += np.sign(d)
    return n


def _product_rows(prefix: str, n: int, rng: np.random.Generator) -> dict:
    """The ``n`` patches of one product: the side of a swath edge at a random angle, ragged."""
    tile = prefix.split("_")[-1]
    epsg, ulx, uly = tile_corner(tile)
    x, y = (a.ravel() for a in np.meshgrid(np.arange(SIDE), np.arange(SIDE)))
    angle = rng.uniform(0, 2 * math.pi)
    keep = np.sort(np.argsort(np.cos(angle) * x + np.sin(angle) * y + rng.uniform(0, 8, x.size))[:n])
    x, y = x[keep], y[keep]
    when = datetime.strptime(prefix.split("_")[2], "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
    s1 = f"S1{'AB'[int(rng.integers(2))]}_IW_GRDH_1SDV_{when:%Y%m%d}T16{int(rng.integers(6000)):04d}"
    v1 = "_".join(prefix.split("_")[:3])
    country = next((c for k, c in COUNTRY.items() if tile.startswith(k)), "Finland")
    return {
        "patch_id": [f"{prefix}_{a:02d}_{b:02d}" for a, b in zip(x, y, strict=True)],
        "tile": [tile] * n,
        "product_id": [f"{prefix}_{when:%Y%m%dT%H%M%S}.SAFE"] * n,
        "x": x.astype(np.int16),
        "y": y.astype(np.int16),
        "epsg": np.full(n, epsg, dtype=np.int32),
        "left": ulx + PATCH * x.astype(np.float64),
        "bottom": uly - PATCH * (y + 1.0),
        "right": ulx + PATCH * (x + 1.0),
        "top": uly - PATCH * y.astype(np.float64),
        "sensing_time": [when] * n,
        "season": [season(when)] * n,
        "s1_name": [f"{s1}_{tile[1:]}_{a}_{b}" for a, b in zip(x, y, strict=True)],
        "s2v1_name": [f"{v1}_{a}_{b}" for a, b in zip(x, y, strict=True)],
        "country": [country] * n,
        "winter_north": np.full(n, country == "Finland" and when.month in (11, 12, 1, 2, 3, 4)),
    }


def _labels(n: int, rng: np.random.Generator) -> pa.Array:
    """BEN19 labels (1 to ~8 classes per patch), alphabetical, as list<element: string>."""
    classes = np.array(sorted(BEN19.classes), dtype=object)
    prevalence = rng.permutation(np.linspace(0.02, 0.55, len(classes)))
    hot = rng.random((n, len(classes))) < prevalence
    hot[np.arange(n), rng.integers(0, len(classes), n)] |= ~hot.any(axis=1)
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(hot.sum(axis=1), out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(classes[np.nonzero(hot)[1]])).cast(
        ds.LABELS_TYPE
    )


def patch_table(seed: int = 0) -> pa.Table:
    """Every patch of the 115 products with what ``rsprep metadata`` gathers from the work store."""
    rng = np.random.default_rng(seed)
    prods = products()
    parts = [_product_rows(p, int(n), rng) for p, n in zip(prods, _counts(len(prods), rng), strict=True)]
    cols = {}
    for k, first in parts[0].items():
        kind = object if isinstance(first, list) else None
        cols[k] = np.concatenate([np.asarray(p[k], dtype=kind) for p in parts])
    arrays = {k: pa.array(v.tolist() if v.dtype == object else v) for k, v in cols.items()}
    arrays["sensing_time"] = arrays["sensing_time"].cast(pa.timestamp("us", tz="UTC"))
    table = pa.table(arrays)
    table = table.take(pc.sort_indices(table.column("patch_id")))
    n = table.num_rows
    # the flagged rows: snow on the winter scenes of the north first, then cloud/shadow at random
    score = rng.random(n) + np.asarray(table.column("winter_north").to_numpy(), dtype=float)
    flagged = np.zeros(n, dtype=bool)
    flagged[np.argsort(-score)[:FLAGGED_ROWS]] = True
    snow = flagged & (score > 1.0)
    cloud = flagged & (~snow | (rng.random(n) < 0.1))
    extra = {
        "tile_size_m": np.full(n, float(TILE)),
        "patch_size_m": np.full(n, float(PATCH)),
        "processing_baseline": pa.array(["99.99"] * n),
        "nodata_fraction": np.zeros(n),
        "cloud_fraction": np.where(cloud, rng.uniform(0.01, 0.5, n), 0.0),
        "shadow_fraction": np.where(cloud, rng.uniform(0.0, 0.1, n), 0.0),
        "snow_fraction": np.where(snow, rng.uniform(0.01, 1.0, n), 0.0),
        "scl_nodata_fraction": np.zeros(n),
        "unlabeled_fraction": rng.uniform(0.0, 0.2, n) * (rng.random(n) < 0.3),
        "labels": _labels(n, rng),
        "snow": snow,
        "cloud": cloud,
    }
    for k, v in extra.items():
        table = table.append_column(k, pa.array(v) if isinstance(v, np.ndarray) else v)
    return table


def build_tables(root: Path) -> None:
    """The tables-only dataset folder (see the module docstring), written once."""
    tmp = root.with_name(root.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    table = patch_table()
    geometry, lon, lat = _geometry(table)
    table = table.append_column("centroid_lon", pa.array(lon)).append_column("centroid_lat", pa.array(lat))
    options = SplitOptions()
    outcome = split_table(table, options, "bench")
    split = code_names(outcome.codes)
    snow, cloud = (np.asarray(table.column(c).to_numpy(), dtype=bool) for c in ("snow", "cloud"))
    country, s2v1 = table.column("country"), table.column("s2v1_name")
    meta = _metadata_table(table, split, country, s2v1, snow, cloud)
    side = _sidecar(table, geometry, split, country, pa.array(np.zeros(len(split))), s2v1, snow, cloud)
    flagged = pa.array(snow | cloud)
    ds.write_tables(
        {
            tmp / ds.METADATA: (meta.filter(pc.invert(flagged)), True),
            tmp / ds.FLAGGED: (meta.filter(flagged), True),
            tmp / ds.SIDECAR: (side, False),
        }
    )
    ds.write_split_report(outcome.report, options.method, tmp / ds.SPLIT_REPORT)
    ds.record_build(tmp, "split", {"options": asdict(options), "counts": outcome.report["counts_all"]})
    make_noise(tmp, NoiseOptions(mode="mixed", sub_rate=0.2, add_rate=0.1))
    write_checksums(tmp)
    os.replace(tmp, root)


def time_tables(root: Path, repeat: int) -> tuple[dict[str, list[float]], list[float], object]:
    """Seconds per check and in all over ``repeat`` runs, pinned to one CPU with one Arrow thread."""
    cpus, threads = os.sched_getaffinity(0), pa.cpu_count()
    os.sched_setaffinity(0, {min(cpus)})
    pa.set_cpu_count(1)
    per_check: dict[str, list[float]] = {c: [] for c in TABLE_CHECKS}
    totals = []
    try:
        for _ in range(repeat):
            report = validate(root, checks=TABLE_CHECKS)
            totals.append(report.seconds)
            for c in TABLE_CHECKS:
                per_check[c].append(report.outcome(c).seconds)
            print(
                f"tables: {report.seconds:.1f} s, {report.error_count} errors, {report.warning_count} warn."
            )
    finally:
        os.sched_setaffinity(0, cpus)
        pa.set_cpu_count(threads)
    return per_check, totals, report


# --------------------------------------------------------------------------------------------
# 2. Value checks against raw reads
# --------------------------------------------------------------------------------------------
def value_datasets(n: int, workers: int) -> dict[str, Path]:
    """An LMDB-only and a Zarr-only dataset folder of bench_convert's ``n`` synthetic patches."""
    src = DATA / f"official-{n}"
    if not src.is_dir():
        t = time.perf_counter()
        generate(src, n)
        print(f"generated {src} in {time.perf_counter() - t:.0f} s")
    out = {}
    for fmt, sub in (("lmdb", "lmdb"), ("zarr", "zarr/dataset.zarr")):
        root = DATA / f"validate-{fmt}-{n}"
        if not (root / sub).exists():
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir(parents=True)
            convert(fmt, src, root / sub, ConvertOptions(workers=workers))
            shutil.copy(src / ds.METADATA, root / ds.METADATA)
        out[fmt] = root
    return out


def _raw_readers(fmt: str, root: Path):
    """(read the whole patch, read its map only) through freshly opened public readers (as a check
    opens its own)."""
    if fmt == "lmdb":
        r = LmdbReader(root / "lmdb")
        return (lambda pid, s1: r.patch(pid, s1)), (lambda pid, s1: r.get(map_key(pid))[MAP_BAND])
    import json

    r = ZarrReader(root / "zarr" / "dataset.zarr")
    path = r.path / REFERENCE_MAP
    maps = ShardedPatchArray.open(path, json.loads((path / "zarr.json").read_text()))
    return (lambda pid, s1: r.patch(pid)), (lambda pid, s1: maps[r.row(pid)])


def time_values(fmt: str, root: Path, repeat: int) -> dict[str, list[float]]:
    """values/s of the values and labels checks (--full) and of the raw reads, ``repeat`` times."""
    from rsprep.validation.view import open_view

    view = open_view(root)
    pairs = list(zip(view.patch_ids, view.s1_names, strict=True))
    whole, only_map = _raw_readers(fmt, root)
    per_patch = sum(a.size for k, a in whole(*pairs[0]).items() if k != "labels")
    per_map = only_map(*pairs[0]).size
    for pid, s1 in pairs:  # warm: the page cache, numba's compiled kernels
        whole(pid, s1)
    validate(root, checks=["values", "labels"], full=True)
    out: dict[str, list[float]] = {"raw": [], "raw_map": [], "floor": [], "values": [], "labels": []}
    for _ in range(repeat):
        for key, pick, size in (("raw", 0, per_patch), ("raw_map", 1, per_map), ("floor", 1, per_map)):
            t = time.perf_counter()
            fn = _raw_readers(fmt, root)[pick]
            if key == "floor":  # the maps read and labelled by the rule, 1024 at a time
                for i in range(0, len(pairs), 1024):
                    label_patches(np.stack([fn(*p) for p in pairs[i : i + 1024]]), BEN19)
            else:
                for pid, s1 in pairs:
                    fn(pid, s1)
            out[key].append(size * len(pairs) / (time.perf_counter() - t))
        report = validate(root, checks=["values", "labels"], full=True)
        assert report.ok and not report.warning_count, report.problems[:5]
        out["values"].append(per_patch * len(pairs) / report.outcome("values").seconds)
        out["labels"].append(per_map * len(pairs) / report.outcome("labels").seconds)
    print(f"{fmt}: " + ", ".join(f"{k} {min(v):,.0f}-{max(v):,.0f} values/s" for k, v in out.items()))
    return out


# --------------------------------------------------------------------------------------------
# The section
# --------------------------------------------------------------------------------------------
def _mm(values: list[float], fmt: str = "{:.2f}") -> str:
    """min / median (of seconds)."""
    return f"{fmt.format(min(values))} / {fmt.format(statistics.median(values))}"


def _rate(values: list[float]) -> str:
    """best / median of values/s (the best is the fastest run: the min of its seconds), in millions."""
    return f"{max(values) / 1e6:,.0f} / {statistics.median(values) / 1e6:,.0f}"


def _ratio(a: list[float], b: list[float]) -> str:
    """best over best / median over median."""
    return f"{max(a) / max(b):.2f} / {statistics.median(a) / statistics.median(b):.2f}"


def write_section(path: Path, args, rows: int, per_check, totals, report, values) -> None:
    lines = [
        "## Validation (`rsprep validate`)",
        "",
        f"`python bench/bench_validate.py --patches {args.patches} --repeat {args.repeat} "
        f"--write docs/BENCHMARKS.md` — {time.strftime('%Y-%m-%d')}, {platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}. Each figure: min / median of "
        f"{args.repeat} runs in the same process.",
        "",
        f"**Table-level checks on {rows:,} rows** (goal: all together under 30 s on one core). A folder "
        "of tables only, built from reBEN's 115 products over 56 real MGRS tiles (UTM EPSG and upper-left "
        "corners of the real grid, neighbours overlapping by 9.8 km, 1 to 3 dates per tile): both "
        "metadata files, the georeferenced sidecar, a tile-border split_report.json, build.json, one "
        "`mixed` noise variant and checksums.sha256. Pinned to one CPU, one thread for Arrow, OpenMP, "
        f"numba and Blosc. Report: {report.error_count} errors, {report.warning_count} warnings.",
        "",
        "| check | status | seconds (min / median) | what it did |",
        "|---|---|---:|---|",
    ]
    for c in TABLE_CHECKS:
        o = report.outcome(c)
        did = f"{o.checked:,} items" + (f"; {o.note.split(';')[0][:70]}" if o.note else "")
        lines.append(f"| {c} | {o.status} | {_mm(per_check[c])} | {did} |")
    lines += [f"| **all, with opening the tables** | | **{_mm(totals)}** | goal < 30 s |", ""]
    lines += [
        f"**Value checks with `--full`** on {args.patches:,} synthetic patches (bench_convert's: 12 S2 "
        "bands + VV/VH + map = 123,200 values each), an LMDB-only and a Zarr-only dataset, against raw "
        "reads of the same patches through freshly opened readers, in values/s (goal: a check at least "
        "0.5× the raw read). `values` reads every array of a patch (raw: `LmdbReader.patch` / "
        "`ZarrReader.patch`); `labels` reads the maps only (raw: the map alone), and its floor is those "
        "reads plus the label rule itself (`label_patches`, 1,024 maps a call). Millions of values/s, "
        "best / median; ratios best over best / median over median.",
        "",
        "| output | raw `patch()` | `values` check | ratio | raw map | map + rule (floor) "
        "| `labels` check | vs raw map | vs floor |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for fmt, v in values.items():
        lines.append(
            f"| {'LMDB' if fmt == 'lmdb' else 'Zarr'} | {_rate(v['raw'])} | {_rate(v['values'])} "
            f"| **{_ratio(v['values'], v['raw'])}×** | {_rate(v['raw_map'])} | {_rate(v['floor'])} "
            f"| {_rate(v['labels'])} | **{_ratio(v['labels'], v['raw_map'])}×** "
            f"| {_ratio(v['labels'], v['floor'])}× |"
        )
    lines += ["", NOTES]
    replace_section(path, "## Validation (`rsprep validate`)", "\n".join(lines) + "\n")


NOTES = """The `labels` check cannot reach half the speed of reading the maps: the label rule's histogram
(`rsprep.core.kernels.lut_counts_per_patch`, ~20 µs a 120 × 120 map on one core) costs about twice
the read itself (~10 µs a map from LMDB or Zarr), so the floor is a quarter to a third of the raw
map read, and the check runs close to that floor. Speed-ups in the checks (same output, same
reports): `values` checks a single output's bands without the cross-output comparison, counts
non-CLC map pixels in one numba pass (~9 µs a map against ~25 µs for a LUT gather) and frees each
patch before reading the next; `labels` reads Zarr maps through the shard reader (one `pread` each)
instead of zarr-python (~6× faster); `schema` checks label names and order with column operations
instead of a Python loop over the rows (3.3 s → about 0.5 s at reBEN size)."""


def main() -> None:
    if any(os.environ.get(k) != v for k, v in ONE_THREAD.items()):
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **ONE_THREAD})
    ap = argparse.ArgumentParser()
    ap.add_argument("--patches", type=int, default=3000, help="patches of the value-check datasets")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2, help="conversion workers (setup only)")
    ap.add_argument("--write", type=Path)
    args = ap.parse_args()

    tables = DATA / f"validate-tables-{ROWS}"
    if not (tables / "checksums.sha256").is_file():
        t = time.perf_counter()
        build_tables(tables)
        print(f"built {tables} in {time.perf_counter() - t:.0f} s")
    roots = value_datasets(args.patches, args.workers)
    # the value checks first: the reBEN-size tables leave a large, fragmented heap behind
    values = {fmt: time_values(fmt, root, args.repeat) for fmt, root in roots.items()}
    per_check, totals, report = time_tables(tables, args.repeat)
    for c in TABLE_CHECKS:
        print(f"  {c}: {_mm(per_check[c])} s ({report.outcome(c).status})")
    if args.write:
        write_section(args.write, args, ROWS, per_check, totals, report, values)
        print(f"wrote {args.write}")


if __name__ == "__main__":
    main()
