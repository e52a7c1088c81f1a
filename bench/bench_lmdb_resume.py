"""What byte-identical LMDB resume costs: the replay of the interrupted run's transactions.

Builds the LMDB of a synthetic official-layout folder (bench_convert.py's, in bench/.data) once
uninterrupted and once interrupted after a third of its tasks and resumed; checks that the two
``data.mdb`` are byte-identical and reports the resumed run's replay (the committed units copied into
a fresh environment, transaction by transaction: rsprep/formats/lmdb_build.py) against the
uninterrupted conversion, from each run's ``extra.seconds``.

    python bench/bench_lmdb_resume.py [--patches 1000] [--workers 1]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

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
    t0 = time.perf_counter()
    resumed = convert("lmdb", src, out / "resumed", opts)
    again = time.perf_counter() - t0
    same = (out / "clean" / "data.mdb").read_bytes() == (out / "resumed" / "data.mdb").read_bytes()
    replay = resumed.extra["seconds"]["replay"]
    size = (out / "clean" / "data.mdb").stat().st_size
    print(f"{args.patches} patches, {sum(result.values.values())} values, data.mdb {size / 2**20:.0f} MiB")
    print(
        f"convert lmdb --workers {args.workers}: {total:.2f} s uninterrupted ({result.extra['seconds']}); "
        f"resumed after {resumed.resumed_tasks} of {result.tasks} tasks: {again:.2f} s, of it the replay "
        f"{replay:.2f} s ({replay / total:.1%} of the uninterrupted conversion); byte-identical: {same}"
    )
    shutil.rmtree(out)


if __name__ == "__main__":
    main()
