"""The GeoTIFF layout from templates (rsprep.formats.tiff_template) holds GDAL's bytes, file by file.

References are real GDAL files: the layout written by the earlier writer (GDAL opens, writes and
closes each file: rsprep.formats.tiff_gdal), files GDAL writes on disk with the layout's profile,
and the official reBEN samples.
"""

from __future__ import annotations

import errno
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import rasterio
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from rsprep.errors import WriteError
from rsprep.formats import geotiff
from rsprep.formats import tiff_template as tt
from rsprep.formats.geotiff import band_files
from rsprep.formats.resumable import ConvertError, ConvertOptions
from rsprep.formats.sources import open_source, read_items
from rsprep.formats.tiff_gdal import write_patch_gdal
from rsprep.formats.tiff_long_counts import widen_strip_byte_counts
from rsprep.stages.convert import convert

LAYOUT = ("BigEarthNet-S2", "BigEarthNet-S1", "Reference_Maps")


def tree(root: Path) -> dict[str, bytes]:
    """Every file below the three layout folders (hidden ones too), by relative path."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for d in LAYOUT
        for p in sorted((root / d).rglob("*"))
        if p.is_file()
    }


def gdal_file(tmp: Path, group: str, arr, crs, transform) -> bytes:
    """The bytes of the band file GDAL writes on disk (S1: StripByteCounts retyped LONG)."""
    path = tmp / "gdal.tif"
    path.unlink(missing_ok=True)
    with rasterio.open(path, "w", **tt.profile(group, arr, crs, transform)) as dst:
        dst.write(arr, 1)
    if group == "s1":
        widen_strip_byte_counts(path)
    return path.read_bytes()


def written(tmp: Path, group: str, arr, crs, transform) -> bytes:
    """The bytes of the band file the layout's writer creates (template or GDAL fallback)."""
    path = tmp / "new.tif"
    path.unlink(missing_ok=True)
    tt.write_file(path, tt.band_buffers(group, arr, crs, transform), path)
    return path.read_bytes()


@pytest.fixture(scope="module")
def reference(dataset, tmp_path_factory) -> Path:
    """The demo dataset's layout as the earlier writer wrote it: GDAL per file."""
    root = tmp_path_factory.mktemp("tiff-reference")
    source = open_source(dataset)
    for group, items in source.items.items():
        for it, values in zip(items, read_items(source.spec, group, items, georef=True), strict=True):
            write_patch_gdal(root, group, it.key.removesuffix("_reference_map"), values)
    return root


# --------------------------------------------------------------------------------------------
# The layout, file by file
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("workers", [1, 2])
def test_layout_is_the_gdal_writers_byte_for_byte(ds_copy, reference, tmp_path, workers):
    out = tmp_path / "out"
    convert("tiff", ds_copy, out, ConvertOptions(workers=workers, chunk=8))
    want, got = tree(reference), tree(out)
    assert len(want) == 31 * 13 + 31 * 2  # 31 patches (12 bands, a map), 31 S1 partners (VV, VH)
    assert sorted(got) == sorted(want)
    assert [k for k in want if got[k] != want[k]] == []
    assert not [p for p in out.iterdir() if p.name.startswith(".rsprep-")]  # no temporaries, no partial


def test_every_demo_file_comes_from_a_template(dataset):
    """The demo's pixels have no all-zero strip: no file needs GDAL (the speed of the layout)."""
    source = open_source(dataset)
    kinds = set()
    for group, items in source.items.items():
        for values in read_items(source.spec, group, items, georef=True):
            for band, arr in values.items():
                if band.startswith("_"):
                    continue
                parts = tt.band_buffers(group, arr, values["_crs"], values["_transform"][band])
                assert len(parts) > 1, (group, band)  # header + strips, not GDAL's one buffer
                kinds.add((group, arr.shape))
    assert {g for g, _ in kinds} == {"s1", "s2", "map"} and len(kinds) == 5  # 3 S2 sizes, S1, map


def test_official_samples_are_rewritten_byte_for_byte_from_templates(shared_data, tmp_path):
    official = shared_data("reben-v2-patches")
    source = open_source(official)
    count = 0
    for group, items in source.items.items():
        for it, values in zip(items, read_items(source.spec, group, items, georef=True), strict=True):
            key = it.key.removesuffix("_reference_map")
            for band, rel in band_files(group, key).items():
                arr, transform = values[band], values["_transform"][band]
                assert len(tt.band_buffers(group, arr, values["_crs"], transform)) > 1
                assert (
                    written(tmp_path, group, arr, values["_crs"], transform) == (official / rel).read_bytes()
                )
                count += 1
    assert count == 2 * 12 + 3 * 2 + 1


# --------------------------------------------------------------------------------------------
# What the templates patch, and what they refuse
# --------------------------------------------------------------------------------------------
def test_a_transform_changes_only_the_patched_bytes(tmp_path):
    """GDAL files of the same pixels at two corners differ only in the tiepoint's X and Y (S2, S1);
    maps also differ in nothing else, their strips being the same."""
    rng = np.random.default_rng(3)
    for group, dtype in (("s2", np.uint16), ("s1", np.float32), ("map", np.uint16)):
        arr = rng.integers(1, 500, (120, 120)).astype(dtype)
        t0, t1 = (10, 0, 390000, 0, -10, 5348400), (10, 0, 271234.5, 0, -10, 4101200.25)
        a, b = (
            gdal_file(tmp_path, group, arr, "EPSG:32633", t0),
            gdal_file(tmp_path, group, arr, "EPSG:32633", t1),
        )
        tpl = tt.template(group, arr, "EPSG:32633", t0)
        changed = [i for i in range(len(a)) if a[i] != b[i]]
        assert len(a) == len(b) and changed and tpl.tiepoint <= changed[0] and changed[-1] < tpl.tiepoint + 16
        assert struct.unpack_from("<2d", b, tpl.tiepoint) == (271234.5, 4101200.25)


@pytest.mark.parametrize(
    ("group", "dtype", "rows"),
    [
        ("s2", np.uint16, slice(0, 34)),  # a first strip of nodata: GDAL stores it last
        ("s2", np.uint16, slice(0, 120)),  # all nodata: GDAL writes a longer file
        ("s2", np.uint16, slice(102, 120)),  # the last strip
        ("s1", np.float32, slice(17, 34)),  # zeros in S1 (no nodata): skipped alike
    ],
)
def test_an_all_zero_strip_is_left_to_gdal(tmp_path, group, dtype, rows):
    arr = np.random.default_rng(4).integers(1, 500, (120, 120)).astype(dtype)
    arr[rows] = 0
    if dtype == np.float32:
        arr[rows.start, ::2] = -0.0  # -0.0 counts as zero for GDAL (and is written as +0.0)
    transform = (10, 0, 390000, 0, -10, 5348400)
    assert tt.template(group, arr, "EPSG:32633", transform).render(arr, transform) is None
    assert len(tt.band_buffers(group, arr, "EPSG:32633", transform)) == 1  # GDAL's bytes
    assert written(tmp_path, group, arr, "EPSG:32633", transform) == gdal_file(
        tmp_path, group, arr, "EPSG:32633", transform
    )


def test_zero_strips_of_a_map_keep_the_template(tmp_path):
    """Compressed strips are written in order whatever they hold: an all-zero map strip is templated."""
    arr = np.random.default_rng(5).integers(0, 50, (120, 120)).astype(np.uint16)
    arr[:34] = 0
    transform = (10, 0, 390000, 0, -10, 5348400)
    assert len(tt.band_buffers("map", arr, "EPSG:32633", transform)) > 1
    assert written(tmp_path, "map", arr, "EPSG:32633", transform) == gdal_file(
        tmp_path, "map", arr, "EPSG:32633", transform
    )


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_transforms_and_inputs_without_a_template(tmp_path):
    arr = np.random.default_rng(6).integers(1, 500, (120, 120)).astype(np.uint16)
    cases = [
        ("EPSG:32633", (10, 0, 390000, 0, -10, 5348400), arr.astype(">u2")),  # big-endian pixels: templated
        ("EPSG:32633", (1, 0, 0, 0, -1, 0), arr),  # GDAL's default transform: no georeferencing
        ("EPSG:32633", (10, 0.5, 390000, 0.25, -10, 5348400), arr),  # rotated: a ModelTransformation
        ("EPSG:32633", (10, 0, 390000, 0, 10, 5348400), arr),  # south-up
        (rasterio.crs.CRS.from_epsg(32633), (10, 0, 390000, 0, -10, 5348400), arr),  # not a string
    ]
    for crs, transform, pixels in cases:
        assert written(tmp_path, "s2", pixels, crs, transform) == gdal_file(
            tmp_path, "s2", pixels, crs, transform
        )
    assert len(tt.band_buffers("s2", arr.astype(">u2"), "EPSG:32633", cases[0][1])) > 1
    assert tt.template("s2", arr, "EPSG:32633", cases[2][1]) is None


def test_gdal_files_a_template_cannot_reproduce_are_refused():
    """GDAL_METADATA, BigTIFF, tiles, a ModelTransformation: the parser gives no template."""
    from rasterio.io import MemoryFile

    probe = tt._probe((120, 120), np.uint16, 0)
    transform = (10, 0, 390000, 0, -10, 5348400)
    variants = {"metadata": {}, "bigtiff": {"BIGTIFF": "YES"}, "tiled": {"tiled": True}, "plain": {}}
    for name, extra in variants.items():
        with MemoryFile() as mem:
            with mem.open(**tt.profile("s2", probe, "EPSG:32633", transform), **extra) as dst:
                dst.write(probe, 1)
                if name == "metadata":
                    dst.update_tags(1, STATISTICS_MEAN="12")
            data = mem.read()
        tpl = tt._parse(data, probe, 390000.0, 5348400.0)
        assert (tpl is not None) == (name == "plain"), name
    rotated = tt.gdal_bytes("s2", probe, "EPSG:32633", (10, 0.5, 390000, 0.25, -10, 5348400))
    assert tt._parse(rotated, probe, 390000.0, 5348400.0) is None


CRSES = ["EPSG:32633", "EPSG:32734", "EPSG:4326", "EPSG:3035", "EPSG:32629"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    group=st.sampled_from(["s2", "s1", "map"]),
    crs=st.sampled_from(CRSES),
    height=st.integers(1, 130),
    width=st.integers(1, 130),
    pixel=st.sampled_from([10.0, 20.0, 60.0, 0.0001, 12.5]),
    corner=st.tuples(
        st.floats(-1e7, 1e7, allow_nan=False, allow_subnormal=False),
        st.floats(-1e7, 1e7, allow_nan=False, allow_subnormal=False),
    ),
    seed=st.integers(0, 2**32 - 1),
    zeros=st.floats(0, 1),
)
def test_template_writer_matches_gdal_on_random_files(
    tmp_path, group, crs, height, width, pixel, corner, seed, zeros
):
    rng = np.random.default_rng(seed)
    if group == "s1":
        arr = rng.normal(-12, 4, (height, width)).astype(np.float32)
    else:
        arr = rng.integers(0, 65536 if group == "s2" else 600, (height, width)).astype(np.uint16)
    arr[rng.random((height, width)) < zeros] = 0  # up to all zero: strips of nodata now and then
    transform = (pixel, 0.0, corner[0], 0.0, -pixel, corner[1])
    try:
        want = gdal_file(tmp_path, group, arr, crs, transform)
    except WriteError:  # S1 of fewer than 3 strips: the LONG retyping refuses it, both ways
        with pytest.raises(WriteError, match="cannot retype StripByteCounts"):
            written(tmp_path, group, arr, crs, transform)
        return
    assert written(tmp_path, group, arr, crs, transform) == want
    templated = len(tt.band_buffers(group, arr, crs, transform)) > 1
    event(f"{group}: {'template' if templated else 'GDAL'}")


# --------------------------------------------------------------------------------------------
# Writing: one rename per patch, short writes, full disks
# --------------------------------------------------------------------------------------------
def _demo_values(dataset):
    source = open_source(dataset)
    items = source.items["s2"][:3]
    return [
        (it.key, v) for it, v in zip(items, read_items(source.spec, "s2", items, georef=True), strict=True)
    ]


def test_a_patch_folder_in_place_is_replaced_and_no_temporary_is_left(dataset, tmp_path):
    (key, values), *_ = _demo_values(dataset)
    geotiff.write_patch(tmp_path, "s2", key, values)
    folder = tmp_path / geotiff.patch_dir("s2", key)
    first = {p.name: p.read_bytes() for p in folder.iterdir()}
    (folder / "stray.tif").write_bytes(b"left by a killed run")
    geotiff.write_patch(tmp_path, "s2", key, values)  # the unlogged task written again
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == first
    temps = list(tmp_path.glob(f"{geotiff.TEMP_PREFIX}*"))
    assert all(not any(t.iterdir()) for t in temps)  # only this process's empty temporary folder
    geotiff.remove_temporaries(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["BigEarthNet-S2"]


def test_short_writes_are_completed(dataset, tmp_path, monkeypatch):
    """``writev`` taking a few bytes at a time (a signal, a pipe-like file system): the file is whole."""
    (key, values), *_ = _demo_values(dataset)
    real = os.writev

    def dribble(fd, buffers):
        return real(fd, [memoryview(buffers[0])[:7]])

    monkeypatch.setattr(tt.os, "writev", dribble)
    geotiff.write_patch(tmp_path / "a", "s2", key, values)
    monkeypatch.setattr(tt.os, "writev", real)
    write_patch_gdal(tmp_path / "b", "s2", key, values)
    assert tree(tmp_path / "a") == tree(tmp_path / "b")


def test_enospc_names_the_file_and_the_resume_gives_the_same_bytes(ds_copy, reference, tmp_path, monkeypatch):
    """A disk that fills up mid-file (a short write, then ENOSPC): one WriteError naming the file,
    nothing of the layout in place, the finished tasks logged; the resumed layout is byte-identical."""
    real, budget = os.writev, {"left": 2_000_000}  # S1 first: 8 files (464 kB) per task of 4

    def filling(fd, buffers):
        if budget["left"] <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        n = real(fd, [memoryview(b).cast("B")[: budget["left"]] for b in buffers[:1]])
        budget["left"] -= n
        return n

    out = tmp_path / "out"
    monkeypatch.setattr(tt.os, "writev", filling)
    with pytest.raises(ConvertError, match=r"\.tif failed \(No space left on device: a full disk") as info:
        convert("tiff", ds_copy, out, ConvertOptions(chunk=4))
    assert isinstance(info.value.__cause__, WriteError) and str(out / geotiff.PARTIAL) in str(info.value)
    assert not any((out / d).exists() for d in LAYOUT)
    logged = (out / geotiff.PARTIAL / "rsprep-progress.log").read_text().split()
    assert logged  # the tasks before the full disk are kept
    monkeypatch.setattr(tt.os, "writev", real)
    result = convert("tiff", ds_copy, out, ConvertOptions(chunk=4))
    assert result.resumed_tasks == len(logged)
    assert tree(out) == tree(reference)
    assert not list(out.glob(".rsprep-*"))


def test_kill_mid_write_then_resume_gives_the_same_bytes(ds_copy, reference, tmp_path):
    """kill -9 while patch folders are being written (workers 2): the next run resumes to the bytes."""
    import signal
    import subprocess
    import sys
    import time

    out, log = tmp_path / "out", tmp_path / "out" / geotiff.PARTIAL / "rsprep-progress.log"
    args = [sys.executable, "-m", "rsprep.cli.main", "-q", "convert", "tiff", str(ds_copy), "--out", str(out)]
    args += ["--workers", "2", "--chunk", "2"]
    proc = subprocess.Popen(args, stderr=subprocess.PIPE)
    while proc.poll() is None and (not log.exists() or len(log.read_text().split()) < 3):
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    r = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert tree(out) == tree(reference)
    assert not list(out.glob(".rsprep-*"))


def test_a_corrupt_work_store_chunk_is_named_and_nothing_is_switched(reference_work, dataset, tmp_path):
    """Work-store values come chunk by chunk (RowChunks): a chunk only decoding finds bad is refused
    naming store, array and chunk, from a worker process too; no layout folder is put in place."""
    import json
    import subprocess
    import sys

    from rsprep.store import dataset as ds

    work, dset = tmp_path / "work", tmp_path / "ds"
    shutil.copytree(reference_work, work)
    shutil.copytree(
        dataset, dset, ignore=shutil.ignore_patterns("lmdb", "zarr", "BigEarthNet-*", "Reference_Maps")
    )
    build = json.loads((dset / ds.BUILD).read_text())
    build["stages"]["metadata"]["work"] = str(work.resolve())
    (dset / ds.BUILD).write_text(json.dumps(build))
    store = "S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP"
    chunk = work / store / "s2.zarr" / "B04" / "c" / "1" / "0" / "0"
    raw = bytearray(chunk.read_bytes())
    raw[16:] = bytes(b ^ 0xFF for b in raw[16:])  # same size: only decoding finds it
    chunk.write_bytes(bytes(raw))
    rsprep = [sys.executable, "-m", "rsprep.cli.main"]
    r = subprocess.run(
        [*rsprep, "convert", "tiff", str(dset), "-j", "2"], capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    line = next(x for x in r.stderr.splitlines() if f"{store}/s2.zarr/B04: chunk c/1/0/0" in x)
    assert "cannot be decoded" in line and "rsprep patch " in line
    assert not any((dset / d).exists() for d in LAYOUT)
