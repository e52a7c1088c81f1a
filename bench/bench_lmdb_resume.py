"""What byte-identical LMDB resume costs: the compacting copy that finishes every ``convert lmdb``.

Builds the LMDB of a synthetic official-layout folder (bench_convert.py's, in bench/.data) once
uninterrupted and once interrupted after a third of its tasks and resumed; checks that the two
``data.mdb`` are byte-identical and times the compacting copy (``env.copy(compact=True)``) and
the zeroing of the bytes LMDB never writes, the steps that make them so, against the conversion.

    python bench/bench_lmdb_resume.py [--patches 1000] [--workers 1]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import lmdb

sys.path.insert(0, str(Path(__file__).parent))
from bench_convert import DATA, generate

from rsprep.formats import lmdb as lmdb_writer
from rsprep.formats.resumable import ConvertOptions
from rsprep.stages.convert import convert


def interrupted(src: Path, dest: Path, opts: ConvertOptions, after: int) -> None:
    real, calls = lmdb_writer.encode, {"n": 0}

    def failing(payload):
        calls["n"] += 1
        if calls["n"] > after:
            raise KeyboardInterrupt
        return real(payload)

    lmdb_writer.encode = failing
    try:
        convert("lmdb", src, dest, opts)
    except KeyboardInterrupt:
        pass
    finally:
        lmdb_writer.encode = real


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--patches", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()
    src = DATA / f"official-{args.patches}"
    if not (src / "metadata.parquet").is_file():
        generate(src, args.patches)
    out = DATA / "lmdb-resume"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    opts = ConvertOptions(workers=args.workers, chunk=64)
    t0 = time.perf_counter()
    result = convert("lmdb", src, out / "clean", opts)
    total = time.perf_counter() - t0
    interrupted(src, out / "resumed", opts, result.tasks // 3)
    convert("lmdb", src, out / "resumed", opts)
    same = (out / "clean" / "data.mdb").read_bytes() == (out / "resumed" / "data.mdb").read_bytes()
    env = lmdb.open(str(out / "clean"), readonly=True, lock=False)
    (out / "copy").mkdir()
    t0 = time.perf_counter()
    env.copy(str(out / "copy"), compact=True)
    lmdb_writer.zero_gaps(out / "copy" / "data.mdb", env.stat()["psize"])
    copy = time.perf_counter() - t0
    env.close()
    size = (out / "clean" / "data.mdb").stat().st_size
    print(f"{args.patches} patches, {sum(result.values.values())} values, data.mdb {size / 2**20:.0f} MiB")
    print(
        f"convert lmdb --workers {args.workers}: {total:.2f} s; compacting copy + zeroing: {copy:.2f} s "
        f"({copy / total:.1%} of the conversion); resumed build byte-identical: {same}"
    )
    shutil.rmtree(out)


if __name__ == "__main__":
    main()
