"""Benchmark: each numba kernel against its plain-numpy reference, on full-tile-sized inputs (same run).

python bench/bench_kernels.py [--write docs/BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_patch import replace_section
from test_kernels import (
    ref_bilinear,
    ref_burn,
    ref_class_counts,
    ref_count,
    ref_lut_counts,
    ref_mark,
    ref_nearest,
)

from rsprep.core import kernels


def best(fn, repeat=3) -> float:
    fn()  # compile / warm up
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--write", type=Path, default=None)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    band10 = rng.integers(0, 3000, (10980, 10980)).astype(np.uint16)
    band10[:, :500] = 0
    band60 = rng.integers(0, 3000, (1830, 1830)).astype(np.uint16)
    band60[:100] = 0
    scl = rng.integers(0, 12, (5490, 5490)).astype(np.uint8)
    mask = np.zeros((10980, 10980), bool)
    p20 = rng.integers(1, 3000, (91 * 91 // 8, 60, 60)).astype(np.uint16)  # 1/8 tile: the reference is slow
    p60 = rng.integers(1, 3000, (91, 20, 20)).astype(np.uint16)
    # a CLC-like partition of the 10920 x 10920 px grid: 4500 Voronoi cells, CLC codes as values
    import shapely

    from rsprep.core.labels import CODE_BINS, CODE_LUT
    from rsprep.core.rasterize import rasterize_patches

    side_m = 91 * 1200
    seeds = shapely.multipoints(rng.uniform(0, side_m, (4500, 2)))
    cells = np.asarray(
        shapely.get_parts(shapely.voronoi_polygons(seeds, extend_to=shapely.box(0, 0, side_m, side_m)))
    )
    cells = shapely.segmentize(shapely.intersection(cells, shapely.box(0, 0, side_m, side_m)), 150.0)
    codes = rng.choice(CODE_BINS[1:], len(cells)).astype(np.uint16)
    maps = rasterize_patches(cells, codes, ulx=0.0, uly=side_m, res=10, p=120, n=91)
    cases = [
        (
            "nodata count per patch (10 m tile)",
            lambda: kernels.count_value_per_patch(band10, 0, 120, 91),
            lambda: ref_count(band10, 0, 120, 91),
        ),
        (
            "nodata union, 60 m into 10 m mask",
            lambda: kernels.mark_value_upsampled(mask, band60, 0, 6),
            lambda: ref_mark(mask, band60, 0, 6),
        ),
        (
            "SCL class counts per patch (20 m tile)",
            lambda: kernels.class_counts_per_patch(scl, 60, 91, 12),
            lambda: ref_class_counts(scl, 60, 91, 12),
        ),
        (
            "nearest upsampling 20 → 10 m (1035 patches)",
            lambda: kernels.upsample_nearest(p20, 2),
            lambda: ref_nearest(p20, 2),
        ),
        (
            "bilinear upsampling 60 → 10 m (91 patches)",
            lambda: kernels.upsample_bilinear(p60, 6, nodata=0),
            lambda: ref_bilinear(p60, 6, 0),
        ),
        (
            "CLC code histogram per patch (8281 maps)",
            lambda: kernels.lut_counts_per_patch(maps, CODE_LUT, len(CODE_BINS) + 1),
            lambda: ref_lut_counts(maps, CODE_LUT, len(CODE_BINS) + 1),
        ),
        (
            "polygon rasterization into patches vs GDAL + cut (4500 cells)",
            lambda: rasterize_patches(cells, codes, ulx=0.0, uly=side_m, res=10, p=120, n=91),
            lambda: ref_burn(cells, codes, 120, 91),
        ),
    ]
    rows = []
    for name, fast, ref in cases:
        if "union" not in name:  # the union kernel works in place; tests/test_kernels.py checks it
            np.testing.assert_array_equal(fast(), ref())
        tf, tr = best(fast), best(ref, repeat=1)
        rows.append((name, tr, tf))
        print(f"{name}: numpy {tr:.3f} s, numba {tf:.4f} s, {tr / tf:.1f}×")
    if args.write:
        lines = [
            "## numba kernels vs their numpy references (issues 3 and 4)",
            "",
            "Command: `python bench/bench_kernels.py --write docs/BENCHMARKS.md` "
            f"({time.strftime('%Y-%m-%d')}, {platform.machine()}, Python {platform.python_version()}).",
            "The references are the plain-numpy",
            "functions the tests compare the kernels against (tests/test_kernels.py; for the rasterizer",
            "GDAL via rasterio, then cutting into patches); same inputs, same run, best of 3 for numba",
            "after a warm-up call.",
            "",
            "| kernel | reference (s) | numba (s) | speed-up |",
            "|---|---|---|---|",
        ]
        lines += [f"| {n} | {tr:.3f} | {tf:.4f} | **{tr / tf:.1f}×** |" for n, tr, tf in rows]
        replace_section(args.write, "## numba kernels vs their numpy references", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
