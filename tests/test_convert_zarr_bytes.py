"""The Zarr writer of issue 16 (docs/convert.md, "The Zarr writer"): its store is byte for byte what
zarr-python writes, every work-store chunk is decompressed once per task, and a run killed with
``kill -9`` resumes to the same bytes.

The reference store is written here with zarr-python the way the earlier writer did (the store created
by ``create_store``, then ``root[name][a:b] = block`` per shard, blocks read by ``read_items``), so it
does not depend on the code under test.
"""

from __future__ import annotations

import json
import math
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st

from rsprep.core.bands import SPECTRAL_BANDS
from rsprep.core.kernels import to_side
from rsprep.core.nomenclature import BEN19
from rsprep.core.values import GROUP_BANDS, MAP_BAND
from rsprep.formats import zarr_plan, zarr_tasks, zarr_write
from rsprep.formats.resumable import PROGRESS, ConvertOptions, chunks
from rsprep.formats.sources import open_source, read_items
from rsprep.formats.store_values import ARRAYS, RowChunks
from rsprep.formats.zarr import create_store, image_compressors, rows_of
from rsprep.formats.zarr_shards import ShardEncoder, ShardFile, read_layout
from rsprep.stages.convert import convert
from rsprep.store import dataset as ds
from rsprep.store.workstore import consolidate, find_stores

RSPREP = str(Path(sys.executable).with_name("rsprep"))


def reference(src: Path, path: Path, options: ConvertOptions) -> None:
    """The store as zarr-python writes it (the writer before issue 16, step by step)."""
    source = open_source(src)
    s2_items, s1_items, map_items = rows_of(source)
    n = len(s2_items)
    shard = min(options.shard_patches, n)
    classes = BEN19.order("alphabetical" if options.class_order == "alphabetical" else "native")
    create_store(path, source, n, options, shard, classes)
    root = zarr.open_group(path, mode="r+")
    side = source.patch_size // 10
    for a, b in chunks(s2_items, shard):
        s2 = read_items(source.spec, "s2", s2_items[a:b])
        blocks = {band: np.stack([d[band] for d in s2]) for band in SPECTRAL_BANDS}
        for band, block in blocks.items():
            root[f"s2/{band}"][a:b] = block
        paired = [i for i in range(a, b) if s1_items[i] is not None]
        s1 = read_items(source.spec, "s1", [s1_items[i] for i in paired])
        for band in GROUP_BANDS["s1"]:
            block = np.full((b - a, side, side), np.nan, dtype=np.float32)
            for i, d in zip(paired, s1, strict=True):
                block[i - a] = d[band]
            root[f"s1/{band}"][a:b] = block
        maps = read_items(source.spec, "map", map_items[a:b])
        root["reference_map"][a:b] = np.stack([d[MAP_BAND] for d in maps])
        if options.stack:
            out = np.empty((b - a, len(SPECTRAL_BANDS), side, side), dtype=np.uint16)
            for j, band in enumerate(SPECTRAL_BANDS):
                out[:, j] = to_side(blocks[band], side, options.stack_method, 0)
            root["s2_stacked"][a:b] = out
    consolidate(path)


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def assert_same_files(a: Path, b: Path) -> None:
    fa, fb = files(a), files(b)
    assert sorted(fa) == sorted(fb)
    assert [k for k in fa if fa[k] != fb[k]] == []


@pytest.fixture(scope="module")
def unpaired(dataset, tmp_path_factory) -> Path:
    """The demo dataset with the S1 partner of six patches dropped: the first four (a whole shard of
    four, all NaN: no shard file) and two further ones."""
    out = tmp_path_factory.mktemp("unpaired") / "ds"
    shutil.copytree(dataset, out, ignore=shutil.ignore_patterns("lmdb", "zarr", "BigEarthNet-*"))
    ids = sorted(open_source(out).table.column("patch_id").to_pylist())
    drop = pa.array(ids[:4] + ids[9:10] + ids[17:18])
    for name in (ds.METADATA, ds.FLAGGED):
        table = pq.read_table(out / name)
        col = pc.if_else(pc.is_in(table.column("patch_id"), drop), None, table.column("s1_name"))
        i = table.schema.get_field_index("s1_name")
        pq.write_table(table.set_column(i, table.schema.field(i), col), out / name)
    return out


@pytest.fixture(scope="module")
def official_folder(dataset, tmp_path_factory) -> Path:
    """The demo dataset as the official GeoTIFF layout with its metadata tables."""
    out = tmp_path_factory.mktemp("official") / "reben"
    convert("tiff", dataset, out, ConvertOptions(workers=2))
    return out


@pytest.mark.parametrize(
    ("src", "compressor", "shard", "stack", "workers"),
    [
        ("dataset", "none", 8, True, 1),
        ("dataset", "lz4", 5, False, 2),
        ("dataset", "zstd", 7, True, 2),
        ("dataset", "none", 1024, False, 2),  # one shard of all 31 patches
        ("unpaired", "lz4", 4, True, 1),
        ("unpaired", "none", 4, False, 2),
        ("official_folder", "lz4", 8, True, 2),
    ],
)
def test_the_store_is_what_zarr_python_writes(request, tmp_path, src, compressor, shard, stack, workers):
    folder = request.getfixturevalue(src)
    options = ConvertOptions(compressor=compressor, shard_patches=shard, stack=stack, workers=workers)
    reference(folder, tmp_path / "ref.zarr", options)
    result = convert("zarr", folder, tmp_path / "new.zarr", options)
    assert_same_files(tmp_path / "ref.zarr", tmp_path / "new.zarr")
    assert result.values["patches"] == 31
    if src == "unpaired":
        assert not (tmp_path / "new.zarr" / "s1" / "VV" / "c" / "0").exists()  # four NaN rows: no file
        vv = zarr.open_group(tmp_path / "new.zarr", mode="r")["s1/VV"]
        assert np.isnan(vv[9]).all() and not np.isnan(vv[8]).any()


def test_workers_one_and_two_give_the_same_bytes(dataset, tmp_path, monkeypatch):
    monkeypatch.setattr(zarr_plan, "RUN_PATCHES", 8)  # several runs per array (runs of 2 shards)
    for w in (1, 2):
        convert(
            "zarr", dataset, tmp_path / f"w{w}.zarr", ConvertOptions(workers=w, shard_patches=4, stack=True)
        )
    assert_same_files(tmp_path / "w1.zarr", tmp_path / "w2.zarr")


# --------------------------------------------------------------------------------------------
# The shard encoder against zarr-python
# --------------------------------------------------------------------------------------------
KINDS = [("uint16", 0), ("float32", math.nan), ("float32", 0.0)]


@settings(max_examples=60, deadline=None)
@given(
    kind=st.sampled_from(KINDS),
    compressor=st.sampled_from(["none", "lz4", "zstd"]),
    n=st.integers(1, 13),
    per=st.integers(1, 6),
    inner=st.sampled_from([(3, 3), (1, 5), (2, 2, 4)]),
    seed=st.integers(0, 2**32 - 1),
)
def test_shards_are_what_zarr_python_writes(kind, compressor, n, per, inner, seed):
    dtype, fill = kind
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 4, (n, *inner)).astype(dtype)  # small values: many equal elements
    state = rng.integers(0, 4, n)  # per patch: 0 all fill, 1 one fill element, 2 -0.0 / NaN, 3 as drawn
    for i, what in enumerate(state):
        if what == 0:
            values[i] = fill
        elif what == 1:
            values[i].flat[0] = fill
        elif what == 2 and dtype == "float32" and fill == 0:
            values[i] = -0.0  # equals the fill 0.0, but not bit for bit: zarr writes it
        elif what == 2 and dtype == "float32":
            values[i].flat[-1] = np.nan
    with tempfile.TemporaryDirectory() as tmp:
        arrays = {}
        for name in ("zarr", "ours"):
            arrays[name] = zarr.create_array(
                store=Path(tmp) / name,
                shape=values.shape,
                chunks=(1, *inner),
                shards=(per, *inner),
                dtype=dtype,
                fill_value=fill,
                compressors=image_compressors(compressor),
            )
        enc = ShardEncoder(Path(tmp) / "ours")
        for a, b in chunks(values, per):
            arrays["zarr"][a:b] = values[a:b]
            enc.write(a // per, values[a:b])
        assert_same_files(Path(tmp) / "zarr", Path(tmp) / "ours")
        back = zarr.open_array(Path(tmp) / "ours", mode="r")[:]
        np.testing.assert_array_equal(back, values)
        layout = read_layout(Path(tmp) / "ours")
        for a, b in chunks(values, per):
            shard = ShardFile(Path(tmp) / "ours", layout, a // per)
            r0 = int(rng.integers(0, b - a))
            np.testing.assert_array_equal(shard.read(r0, b - a), values[a + r0 : b])
            shard.close()


# --------------------------------------------------------------------------------------------
# Each work-store chunk read once per task
# --------------------------------------------------------------------------------------------
def needed_chunks(source) -> set[tuple[str, int]]:
    """(work-store array folder, chunk row) of every chunk that holds a value of the dataset."""
    stores = {s.name: s.path for s in find_stores(source.spec.work)}
    s2, s1, maps = rows_of(source)
    out = set()
    for group, items in (("s2", s2), ("s1", s1), ("map", maps)):
        zgroup, bands = ARRAYS[group]
        for it in items:
            if it is None:
                continue
            for array in bands.values():
                folder = stores[it.store] / zgroup / array
                per = json.loads((folder / "zarr.json").read_text())["chunk_grid"]["configuration"]
                out.add((str(folder), it.row // per["chunk_shape"][0]))
    return out


@pytest.mark.parametrize("run_patches", [32768, 8])
def test_each_chunk_is_read_once_per_task(dataset, tmp_path, monkeypatch, run_patches):
    reads: list = []

    class Counted(RowChunks):
        def read(self, k: int) -> np.ndarray:
            reads[-1].append((str(self.path), k))
            return super().read(k)

    real = zarr_write.write_task

    def task(payload):
        reads.append([])
        return real(payload)

    monkeypatch.setattr(zarr_tasks, "RowChunks", Counted)
    monkeypatch.setattr(zarr_write, "write_task", task)
    monkeypatch.setattr(zarr_plan, "RUN_PATCHES", run_patches)
    result = convert("zarr", dataset, tmp_path / "z.zarr", ConvertOptions(shard_patches=4, workers=1))
    flat = [r for task_reads in reads for r in task_reads]
    assert all(len(set(t)) == len(t) for t in reads)  # no chunk twice within a task
    assert set(flat) == needed_chunks(open_source(dataset))  # every chunk needed, nothing else
    twice = len(flat) - len(set(flat))
    assert len(flat) == result.extra["chunk_reads"] and twice == result.extra["chunks_read_twice"]
    if run_patches == 32768:  # one run per array: every chunk once
        assert twice == 0 and len(reads) == 15
    else:  # runs of two shards of 4 patches: the stores split between runs are read again
        assert len(reads) > 15 and 0 < twice < len(set(flat))


# --------------------------------------------------------------------------------------------
# Runs: cover every shard, bounded in rows and in the shards held at once
# --------------------------------------------------------------------------------------------
@settings(max_examples=80, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 40), min_size=1, max_size=12),
    shard=st.integers(1, 9),
    most=st.integers(1, 60),
    fit=st.integers(1, 8),
    per=st.integers(1, 7),
    gaps=st.integers(0, 5),
)
def test_runs_cover_the_shards_within_their_bounds(sizes, shard, most, fit, per, gaps):
    store = np.concatenate([np.full(k, i) for i, k in enumerate(sizes)])
    store[::7][:gaps] = -1  # some rows without a value (unpaired S1)
    src = np.concatenate([np.random.default_rng(k).permutation(k) for k in sizes])
    key = np.where(store >= 0, store * 2**32 + src // per, -1)
    rows = zarr_plan.GroupRows(store, src, key)
    runs = zarr_plan.plan_runs(rows, shard, row_bytes=1, run_patches=most, memory=fit * shard)
    shards = -(-len(store) // shard)
    assert runs[0][0] == 0 and runs[-1][1] == shards
    assert all(a < b and b == c for (a, b), (c, _) in zip(runs, [*runs[1:], (shards, 0)], strict=True))
    for a, b in runs:
        assert b - a <= max(1, most // shard)
        assert b - a == 1 or zarr_plan.peak_shards(store, shard, a, b) <= fit
    reads, distinct = zarr_plan.chunk_reads(rows, shard, runs)
    assert reads >= distinct == len(np.unique(key[key >= 0]))


# --------------------------------------------------------------------------------------------
# kill -9, then resume: the same bytes
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("after", [4, 20])  # native arrays / s2_stacked (15 native tasks, then 16)
def test_a_killed_conversion_resumes_to_the_same_bytes(dataset, tmp_path, after):
    src = tmp_path / "ds"
    shutil.copytree(dataset, src, ignore=shutil.ignore_patterns("lmdb", "zarr", "BigEarthNet-*"))
    args = ["convert", "zarr", str(src), "--workers", "1", "--shard-patches", "2", "--stack"]
    clean = tmp_path / "clean.zarr"
    reference(src, clean, ConvertOptions(shard_patches=2, stack=True))
    log = src / "zarr" / ".dataset.zarr.partial" / PROGRESS
    proc = subprocess.Popen([RSPREP, "-q", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    while proc.poll() is None and (not log.exists() or len(log.read_text().split()) < after):
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL, "the conversion finished before it was killed"
    done = len(log.read_text().split())
    r = subprocess.run([RSPREP, "-q", *args], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert ds.read_build(src)["stages"]["convert_zarr"]["resumed_tasks"] == done
    new = src / "zarr" / "dataset.zarr"
    fa, fb = files(clean), files(new)
    fa.pop("zarr.json"), fb.pop("zarr.json")  # the root attributes name the source as recorded
    assert sorted(fa) == sorted(fb) and [k for k in fa if fa[k] != fb[k]] == []


def test_a_corrupt_work_store_chunk_is_named_and_nothing_is_put_in_place(reference_work, dataset, tmp_path):
    """A chunk that only decoding finds bad is refused by RowChunks in a worker, naming store, array and
    chunk; the store is not put in place."""
    work, dset = tmp_path / "work", tmp_path / "ds"
    shutil.copytree(reference_work, work)
    shutil.copytree(dataset, dset, ignore=shutil.ignore_patterns("lmdb", "zarr", "BigEarthNet-*"))
    build = json.loads((dset / ds.BUILD).read_text())
    build["stages"]["metadata"]["work"] = str(work.resolve())
    (dset / ds.BUILD).write_text(json.dumps(build))
    store = "S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP"
    chunk = work / store / "s1.zarr" / "VH" / "c" / "1" / "0" / "0"
    raw = bytearray(chunk.read_bytes())
    raw[16:] = bytes(b ^ 0xFF for b in raw[16:])  # same size: only decoding finds it
    chunk.write_bytes(bytes(raw))
    r = subprocess.run(
        [RSPREP, "convert", "zarr", str(dset), "-j", "2"], capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    line = next(x for x in r.stderr.splitlines() if f"{store}/s1.zarr/VH: chunk c/1/0/0" in x)
    assert "cannot be decoded" in line and "rsprep s1 " in line
    assert not (dset / "zarr" / "dataset.zarr").exists()
