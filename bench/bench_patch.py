"""Benchmark: ``rsprep patch`` against the floor of merely decoding the 13 band files (same run).

    python bench/bench_patch.py [--archive-dir DIR] [--repeat 1] [--contents jp2,gtiff]
        [--write docs/BENCHMARKS.md]

For each content type (JPEG2000 and GeoTIFF) one full-size synthetic tile is generated (or reused
from --archive-dir), then, alternately: the decode floor (rasterio reads the 12 spectral bands and
SCL, whole, one after another) and ``rsprep patch`` in a fresh process (wall time and peak RSS), with
the check of its inputs against manifest.safe (the default) and with ``--no-verify``; and the check
alone (hashing the 13 band files and the metadata in one thread, nothing decoded).
The ratio patch / floor is what counts; absolute seconds depend on the machine.
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

FLOOR = """
import sys, time, rasterio
from rsprep.inputs.safe import read_product
from rsprep.core.bands import SPECTRAL_BANDS
pr = read_product(sys.argv[1])
t = time.perf_counter()
for b in (*SPECTRAL_BANDS, "SCL"):
    with rasterio.open(pr.gdal_path(pr.band_file(b))) as ds:
        ds.read(1)
print(time.perf_counter() - t)
"""

VERIFY = """
import sys, time
from rsprep.core.bands import SPECTRAL_BANDS
from rsprep.inputs.safe import read_product
from rsprep.inputs.safe_manifest import product_inputs, verify_files
pr = read_product(sys.argv[1])
rels = product_inputs(pr, [pr.band_file(b).path for b in (*SPECTRAL_BANDS, "SCL")])
t = time.perf_counter()
assert verify_files(pr, rels, workers=1).problems == []
print(time.perf_counter() - t)
"""

PATCH = """
import sys, time
from rsprep.stages.patch import PatchOptions, patch_product
t = time.perf_counter()
r = patch_product(sys.argv[1], out=sys.argv[2], force=True, options=PatchOptions(verify=sys.argv[3] == "1"))
assert r.status == "done", r.error
print(time.perf_counter() - t)
"""


def _run(code: str, *args: str) -> tuple[float, float]:
    """(seconds reported by the child, peak RSS of the child in GB)."""
    out = subprocess.run(
        ["/usr/bin/time", "-f", "RSS %M", sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        check=True,
    )
    rss_kb = int(next(line for line in out.stderr.splitlines() if line.startswith("RSS")).split()[1])
    return float(out.stdout.strip().splitlines()[-1]), rss_kb / 1024**2


def ensure_archive(base: Path, content: str) -> Path:
    out = base / f"full-{content}"
    if not (out / "synth.json").is_file():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "rsprep.cli.main",
                "-q",
                "synth",
                str(out),
                "--tiles",
                "1",
                "--acquisitions",
                "1",
                "--full-size",
                "--no-s1",
                "--content",
                content,
                "--overwrite",
            ],
            check=True,
        )
    return next((out / "s2").glob("*.SAFE"))


def archive_args() -> argparse.Namespace:
    """The options of the benchmarks that run on full-size synthetic archives."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--archive-dir", type=Path, default=Path("bench/.data"))
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--write", type=Path, default=None)
    ap.add_argument("--contents", default="jp2,gtiff", help="band contents to measure, comma-separated")
    args = ap.parse_args()
    args.archive_dir.mkdir(parents=True, exist_ok=True)
    return args


def main() -> None:
    args = archive_args()
    rows = []
    for content in args.contents.split(","):
        product = ensure_archive(args.archive_dir, content)
        _run(PATCH, str(product), str(args.archive_dir / "work-warmup"), "1")  # numba cache, file cache
        floors, patches, unverified, alone, rss = [], [], [], [], []
        work = str(args.archive_dir / f"work-{content}")
        for _ in range(args.repeat):
            floors.append(_run(FLOOR, str(product))[0])
            s, r = _run(PATCH, str(product), work, "1")
            patches.append(s)
            rss.append(r)
            unverified.append(_run(PATCH, str(product), work, "0")[0])
            alone.append(_run(VERIFY, str(product))[0])
        floor, patch, bare = min(floors), min(patches), min(unverified)
        rows.append(
            {
                "content": content,
                "decode_floor_s": round(floor, 2),
                "patch_s": round(patch, 2),
                "ratio": round(patch / floor, 2),
                "peak_rss_gb": round(max(rss), 2),
                "patch_no_verify_s": round(bare, 2),
                "verify_cost_pct": round(100 * (patch - bare) / bare, 1),
                "verify_alone_s": round(min(alone), 2),
            }
        )
        print(json.dumps(rows[-1]))
    if args.write:
        write_section(args.write, rows, args.repeat, args.contents)


def write_section(path: Path, rows: list[dict], repeat: int, contents: str = "jp2,gtiff") -> None:
    goal = {"jp2": 1.3, "gtiff": 3.0}
    lines = [
        "## rsprep patch vs the decode floor (issue 3)",
        "",
        f"Command: `python bench/bench_patch.py --repeat {repeat} --contents {contents} "
        "--write docs/BENCHMARKS.md` "
        f"({time.strftime('%Y-%m-%d')}, {platform.machine()}, Python {platform.python_version()}).",
        "One full-size synthetic tile (10980 × 10980 px, 8281 patches); the floor decodes the 12 spectral",
        "band files and SCL with rasterio, one after another, in the same run. Best of the repeats.",
        "",
        "| content | decode floor (s) | rsprep patch (s) | ratio | goal | peak RSS (GB) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['content']} | {r['decode_floor_s']} | {r['patch_s']} | **{r['ratio']}×** "
            f"| ≤ {goal[r['content']]}× | {r['peak_rss_gb']} |"
        )
    if {r["content"] for r in rows} == set(goal):  # a partial run leaves the other rows as they are
        replace_section(path, "## rsprep patch vs the decode floor", "\n".join(lines) + "\n")
    replace_section(path, "## Checking inputs against manifest.safe", verify_section(rows, repeat, contents))


def verify_section(rows: list[dict], repeat: int, contents: str) -> str:
    lines = [
        "## Checking inputs against manifest.safe (issue 14)",
        "",
        f"Command: `python bench/bench_patch.py --repeat {repeat} --contents {contents} "
        f"--write docs/BENCHMARKS.md` ({time.strftime('%Y-%m-%d')}, {platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}).",
        "The same full-size synthetic tile as above, the runs alternating in one session: `rsprep patch`",
        "checking the 13 band files and the two metadata files against manifest.safe (size and MD5, hashed",
        "in a thread while the bands decode; the default) and with `--no-verify`; and the check alone",
        "(hashing the same files in one thread, nothing decoded). Best of the repeats. Goal: < 5 %.",
        "",
        "| content | patch with verification (s) | patch `--no-verify` (s) | cost of verifying "
        "| check alone (s) |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['content']} | {r['patch_s']} | {r['patch_no_verify_s']} | **{r['verify_cost_pct']} %** "
            f"| {r['verify_alone_s']} |"
        )
    return "\n".join(lines) + "\n"


def replace_section(path: Path, heading: str, text: str) -> None:
    """Replace the section that starts with ``heading`` (up to the next ``## ``) or append it."""
    old = (
        path.read_text()
        if path.exists()
        else "# Benchmarks\n\nRatios against a baseline measured in the same run.\n"
    )
    start = old.find(heading)
    if start < 0:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        end = old.find("\n## ", start + 1)
        new = old[:start] + text + (old[end + 1 :] if end >= 0 else "")
    path.write_text(new)


if __name__ == "__main__":
    main()
