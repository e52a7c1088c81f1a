"""Benchmark ``rsprep convert`` and the readers on a synthetic official-layout folder.

1. Conversion of the GeoTIFF layout to LMDB: ``rsprep convert lmdb`` (``--workers``) against a
   straightforward single-process loop (rasterio per file → safetensors → one LMDB transaction), timed
   in the same run; every value of both environments is checked to be byte-identical.
2. Random-access reads (all 12 bands + the reference map of a random patch): LMDB and Zarr through
   ``rsprep.formats.readers``, and the per-band GeoTIFFs as TorchGeo's ``BigEarthNetV2`` reads them (a glob
   per patch, ``rasterio.open`` per band, resampled to 120 × 120 with bilinear, int32). All files are
   in the page cache (warm reads), as in a training epoch after the first.

The folder (default 3,000 patch pairs = 45,000 files) is generated once into bench/.data.

    python bench/bench_convert.py [--patches 3000] [--write docs/BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import glob
import os
import platform
import random
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import zarr

sys.path.insert(0, str(Path(__file__).parent))
from bench_patch import replace_section

from rsprep.core.bands import BANDS_BY_NAME, SPECTRAL_BANDS
from rsprep.core.nomenclature import BEN19
from rsprep.formats.geotiff import band_files, scan, write_patch
from rsprep.formats.readers import LmdbReader, ZarrReader
from rsprep.formats.resumable import ConvertOptions
from rsprep.stages.convert import convert
from rsprep.store import dataset as ds

DATA = Path(__file__).parent / ".data"
PREFIX = "S2A_MSIL2A_20180601T101031_N9999_R022_T33UUP"
S1_SCENE = "S1A_IW_GRDH_1SDV_20180601T165043"
CODES = [c for codes in BEN19.codes for c in codes]


def generate(root: Path, n: int, seed: int = 0) -> None:
    """``n`` S2 patches with S1 partners and reference maps in the official layout, plus metadata."""
    rng = np.random.default_rng(seed)
    tmp = root.with_name(root.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    rows = []
    for i in range(n):
        x, y = i % 91, i // 91
        pid, s1 = f"{PREFIX}_{x}_{y}", f"{S1_SCENE}_33UUP_{x}_{y}"
        left, top = 300000 + 1200 * x, 5400000 - 1200 * y
        georef = {"_crs": "EPSG:32633"}
        s2 = {}
        for b in SPECTRAL_BANDS:
            res = BANDS_BY_NAME[b].resolution
            side = 1200 // res
            smooth = np.cumsum(rng.integers(-40, 41, (side, side)), axis=1)
            s2[b] = np.clip(1500 + smooth + rng.integers(0, 200, (side, side)), 1, 20000).astype(np.uint16)
        s2["_transform"] = {
            b: (BANDS_BY_NAME[b].resolution, 0, left, 0, -BANDS_BY_NAME[b].resolution, top)
            for b in SPECTRAL_BANDS
        }
        write_patch(tmp, "s2", pid, s2 | georef)
        t10 = (10, 0, left, 0, -10, top)
        s1v = {b: (rng.normal(-12, 3, (120, 120))).astype(np.float32) for b in ("VV", "VH")}
        write_patch(tmp, "s1", s1, s1v | georef | {"_transform": {"VV": t10, "VH": t10}})
        blocks = rng.choice(CODES, (4, 4)).astype(np.uint16)
        ref = np.kron(blocks, np.ones((30, 30), dtype=np.uint16))
        write_patch(tmp, "map", pid, {"Data": ref, **georef, "_transform": {"Data": t10}})
        labels = sorted({BEN19.class_of(int(c)) for c in np.unique(ref)})
        rows.append((pid, labels, ("train", "validation", "test")[i % 4 % 3], "Austria", s1))
    table = pa.table(
        {
            "patch_id": [r[0] for r in rows],
            "labels": [r[1] for r in rows],
            "split": [r[2] for r in rows],
            "country": [r[3] for r in rows],
            "s1_name": [r[4] for r in rows],
            "s2v1_name": pa.nulls(n, pa.string()),
            "contains_seasonal_snow": [False] * n,
            "contains_cloud_or_shadow": [False] * n,
        }
    )
    ds.write_metadata(table, tmp / ds.METADATA)
    os.replace(tmp, root)


def baseline_lmdb(root: Path, out: Path) -> None:
    """The straightforward loop: rasterio per file → safetensors → lmdb put, one process."""
    import lmdb
    import rasterio
    from safetensors.numpy import save

    env = lmdb.open(str(out), map_size=1 << 36)
    with env.begin(write=True) as txn:
        for group in ("s1", "s2", "map"):
            for name in scan(root, group):
                arrays = {}
                for band, rel in band_files(group, name).items():
                    with rasterio.open(root / rel) as src:
                        arrays[band] = src.read(1)
                key = name + "_reference_map" if group == "map" else name
                txn.put(key.encode(), save(arrays))
    env.close()


def torchgeo_read(root: Path, pid: str) -> dict:
    """What TorchGeo's BigEarthNetV2 does for one S2 sample and its map."""
    import rasterio
    from rasterio.enums import Resampling

    folder = "_".join(pid.split("_")[:-2])
    paths = sorted(glob.glob(os.path.join(root, "BigEarthNet-S2", folder, pid, "*.tif")))
    out = {}
    for path in paths:
        with rasterio.open(path) as src:
            out[path[-7:-4]] = src.read(
                1, out_shape=(120, 120), out_dtype="int32", resampling=Resampling.bilinear
            )
    with rasterio.open(os.path.join(root, "Reference_Maps", folder, pid, f"{pid}_reference_map.tif")) as src:
        out["reference_map"] = src.read(out_dtype="int32")
    return out


def rate(fn, ids) -> float:
    fn(ids[0])
    t = time.perf_counter()
    for pid in ids:
        fn(pid)
    return len(ids) / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patches", type=int, default=3000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--samples", type=int, default=3000)
    ap.add_argument("--write", type=Path)
    args = ap.parse_args()

    root = DATA / f"official-{args.patches}"
    if not root.is_dir():
        t = time.perf_counter()
        generate(root, args.patches)
        print(f"generated {root} in {time.perf_counter() - t:.0f} s")
    work = DATA / "convert-out"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    values = 3 * args.patches

    t = time.perf_counter()
    baseline_lmdb(root, work / "baseline")
    t_base = time.perf_counter() - t
    t = time.perf_counter()
    convert("lmdb", root, work / "lmdb", ConvertOptions(workers=args.workers))
    t_ours = time.perf_counter() - t
    t = time.perf_counter()
    convert("lmdb", root, work / "lmdb1", ConvertOptions(workers=1))
    t_one = time.perf_counter() - t
    a, b = LmdbReader(work / "baseline"), LmdbReader(work / "lmdb")
    keys = a.keys()
    identical = keys == b.keys() and all(a.raw(k) == b.raw(k) for k in keys)
    print(
        f"lmdb: baseline {t_base:.1f} s, ours {t_ours:.1f} s ({args.workers} workers), "
        f"{t_one:.1f} s (1); identical={identical}"
    )

    zarr_times = {}
    for comp in ("lz4", "none"):
        t = time.perf_counter()
        convert(
            "zarr",
            root,
            work / f"{comp}.zarr",
            ConvertOptions(workers=args.workers, compressor=comp),
        )
        zarr_times[comp] = time.perf_counter() - t
    sizes = {
        "lmdb": (work / "lmdb" / "data.mdb").stat().st_size,
        **{
            f"zarr-{c}": sum(p.stat().st_size for p in (work / f"{c}.zarr").rglob("*") if p.is_file())
            for c in zarr_times
        },
    }
    files = {c: sum(1 for p in (work / f"{c}.zarr").rglob("*") if p.is_file()) for c in zarr_times}

    ids = scan(root, "s2")
    rng = random.Random(0)
    sample = [rng.choice(ids) for _ in range(args.samples)]
    lm = b
    zl, zn = ZarrReader(work / "lz4.zarr"), ZarrReader(work / "none.zarr")
    r_tiff = rate(lambda p: torchgeo_read(root, p), sample[: max(1, args.samples // 10)])
    r_lmdb = rate(lambda p: lm.patch(p), sample)
    r_zl = rate(lambda p: zl.patch(p, s1=False), sample)
    r_zn = rate(lambda p: zn.patch(p, s1=False), sample)
    zroot = zarr.open_group(work / "none.zarr", mode="r")
    zarrays = [zroot[f"s2/{b}"] for b in SPECTRAL_BANDS] + [zroot["reference_map"]]
    r_zpy = rate(lambda p: [a[zn.row(p)] for a in zarrays], sample[: max(1, args.samples // 10)])
    print(f"reads/s: tiff {r_tiff:.0f}, lmdb {r_lmdb:.0f}, zarr-lz4 {r_zl:.0f}, zarr-none {r_zn:.0f}")
    print(f"zarr-python arr[i]: {r_zpy:.0f}")

    if args.write:
        text = f"""## Conversion and random access (`rsprep convert`, readers)

`python bench/bench_convert.py --patches {args.patches} --write docs/BENCHMARKS.md` —
{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}. A synthetic official-layout
folder of {args.patches:,} S2 patches + {args.patches:,} S1 patches + {args.patches:,} reference maps
({15 * args.patches:,} GeoTIFFs, written by our GeoTIFF writer), all in the page cache.

| conversion to LMDB ({values:,} values) | seconds | values/s | vs. baseline |
|---|---:|---:|---:|
| baseline: one process, rasterio per file → safetensors → `put` | {t_base:.1f} | {values / t_base:,.0f} | 1.0× |
| `rsprep convert lmdb --workers 1` | {t_one:.1f} | {values / t_one:,.0f} | {t_base / t_one:.1f}× |
| `rsprep convert lmdb --workers {args.workers}` | {t_ours:.1f} | {values / t_ours:,.0f} | **{t_base / t_ours:.1f}×** |

Every value of the two environments is byte-identical: **{identical}**. The gain on one core comes from
reading the uncompressed/deflate strips with tifffile instead of opening each file through GDAL
(~0.2 ms against ~0.8 ms per file); the rest from worker processes reading while the main process writes.
`rsprep convert zarr` of the same folder: {zarr_times["lz4"]:.1f} s (LZ4), {zarr_times["none"]:.1f} s (uncompressed).

| random access, 12 bands + reference map | samples/s | vs. GeoTIFF | vs. LMDB |
|---|---:|---:|---:|
| GeoTIFF as TorchGeo reads it (glob, rasterio per band, bilinear to 120 px) | {r_tiff:,.0f} | 1.0× | {r_tiff / r_lmdb:.3f}× |
| LMDB (`LmdbReader.patch`) | {r_lmdb:,.0f} | **{r_lmdb / r_tiff:.0f}×** | 1.0× |
| Zarr, Blosc-LZ4 (`ZarrReader.patch`, `--compressor lz4`) | {r_zl:,.0f} | {r_zl / r_tiff:.0f}× | **{r_zl / r_lmdb:.2f}×** |
| Zarr, uncompressed (`ZarrReader.patch`, default `--compressor none`) | {r_zn:,.0f} | {r_zn / r_tiff:.0f}× | **{r_zn / r_lmdb:.2f}×** |
| the same store through zarr-python (`arr[i]` per band) | {r_zpy:,.0f} | {r_zpy / r_tiff:.1f}× | {r_zpy / r_lmdb:.3f}× |

Sizes: LMDB {sizes["lmdb"] / 1e6:.0f} MB, Zarr LZ4 {sizes["zarr-lz4"] / 1e6:.0f} MB in {files["lz4"]} files,
Zarr uncompressed {sizes["zarr-none"] / 1e6:.0f} MB in {files["none"]} files. The TorchGeo-style read
resamples the 20/60 m bands to 120 px (as TorchGeo does); LMDB and Zarr return native sizes. Zarr reads go
through `ShardedPatchArray` (cached shard indexes, one `pread` and one Blosc decode per band); without
it, zarr-python's event loop costs about a millisecond per band read (last row).
"""
        replace_section(args.write, "## Conversion and random access", text)
        print(f"wrote {args.write}")


if __name__ == "__main__":
    main()
