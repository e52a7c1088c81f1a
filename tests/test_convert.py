"""`rsprep convert`: LMDB (byte-identical to rico-hdl), Zarr v3, the official GeoTIFF layout, readers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import lmdb
import numpy as np
import pyarrow.parquet as pq
import pytest
import rasterio
import zarr

from rsprep.core.bands import BANDS_BY_NAME, SPECTRAL_BANDS
from rsprep.core.nomenclature import BEN19
from rsprep.core.values import map_key
from rsprep.errors import OutputExistsError
from rsprep.formats.geotiff import band_files
from rsprep.formats.readers import LmdbReader, ReaderError, TiffReader, ZarrReader, iter_patches
from rsprep.formats.resumable import PROGRESS, ConvertOptions
from rsprep.formats.sources import SourceError, open_source
from rsprep.stages.convert import convert
from rsprep.store import dataset as ds
from rsprep.store.workstore import find_stores

QUIET = ConvertOptions()


def opts(**kw) -> ConvertOptions:
    return ConvertOptions(**kw)


@pytest.fixture(scope="module")
def official(shared_data) -> Path:
    return shared_data("reben-v2-patches")


@pytest.fixture(scope="module")
def converted(dataset, tmp_path_factory):
    """LMDB, Zarr (--stack) and GeoTIFF layout of the demo dataset, built once with two workers."""
    root = tmp_path_factory.mktemp("converted")
    src = root / "ds"
    shutil.copytree(dataset, src)
    convert("lmdb", src, None, opts(workers=2))
    convert("zarr", src, None, opts(workers=2, stack=True, shard_patches=8))
    convert("tiff", src, None, opts(workers=2))
    return src


def _table(root: Path):
    return open_source(root).table


def _mdb(path: Path) -> bytes:
    return (path / "data.mdb").read_bytes()


# --------------------------------------------------------------------------------------------
# LMDB
# --------------------------------------------------------------------------------------------
def test_lmdb_values_byte_identical_to_rico_hdl(official, shared_data, tmp_path):
    result = convert("lmdb", official, tmp_path / "lmdb", QUIET)
    expected = lmdb.open(str(shared_data("reben-v2-lmdb-expected")), readonly=True, lock=False)
    got = lmdb.open(str(tmp_path / "lmdb"), readonly=True, lock=False)
    with expected.begin() as a, got.begin() as b:
        pairs = list(a.cursor())
        assert len(pairs) == 2
        for key, value in pairs:
            assert b.get(key) == value, key
        keys = [bytes(k).decode() for k in b.cursor().iternext(values=False)]
    # every patch folder of the sample is a key: 3 S1, 2 S2, 1 reference map
    assert keys == sorted(keys) and len(keys) == 6
    assert result.values == {"s1": 3, "s2": 2, "map": 1}
    assert keys[3].endswith("_26_57_reference_map")
    # the map size comes from the data (a few MiB here, never a fixed huge reservation)
    assert result.extra["used_bytes"] <= result.extra["map_size"] <= result.extra["used_bytes"] + (1 << 20)
    assert sorted(p.name for p in (tmp_path / "lmdb").iterdir()) == ["data.mdb"]


def test_lmdb_values_are_the_geotiff_pixels(official, tmp_path):
    convert("lmdb", official, tmp_path / "lmdb", QUIET)
    reader = LmdbReader(tmp_path / "lmdb")
    pid = "S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_75_43"
    values = reader.get(pid)
    assert sorted(values) == sorted(SPECTRAL_BANDS)
    for name, rel in band_files("s2", pid).items():
        with rasterio.open(official / rel) as src:
            pixels = src.read(1)
        assert (
            values[name].dtype == np.uint16
            and values[name].shape == (1200 // BANDS_BY_NAME[name].resolution,) * 2
        )
        np.testing.assert_array_equal(values[name], pixels)
    s1 = reader.get("S1A_IW_GRDH_1SDV_20170613T165043_33UUP_70_48")
    assert set(s1) == {"VV", "VH"} and s1["VV"].dtype == np.float32 and s1["VV"].shape == (120, 120)
    ref = reader.get(map_key("S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_26_57"))
    assert set(ref) == {"Data"} and ref["Data"].dtype == np.uint16
    assert set(np.unique(ref["Data"])) == {211, 231, 311, 313}
    with pytest.raises(ReaderError, match="not a key"):
        reader.get("S2A_nope_1_1")


def test_lmdb_of_dataset_matches_work_store(converted):
    table = _table(converted)
    reader = LmdbReader(converted / "lmdb")
    ids = table.column("patch_id").to_pylist()
    s1_names = [n for n in table.column("s1_name").to_pylist() if n]
    assert reader.keys() == sorted(ids + s1_names + [map_key(p) for p in ids])
    stores = {s.name: s for s in find_stores(ds.work_store(converted))}
    pid = ids[0]
    prefix, x, y = pid.rsplit("_", 2)
    store = stores[prefix]
    row = store.grid.index(int(x), int(y))
    arrays = reader.patch(pid, table.column("s1_name")[0].as_py())
    for b in SPECTRAL_BANDS:
        np.testing.assert_array_equal(arrays[b], store.zarr("s2.zarr")[b][row])
    np.testing.assert_array_equal(arrays["reference_map"], store.zarr("reference.zarr")["reference_map"][row])
    # every metadata key of both files is in the LMDB (docs/dataset.md)
    flagged = pq.read_table(converted / ds.FLAGGED).column("patch_id").to_pylist()
    assert set(flagged) <= set(reader.keys())


def test_lmdb_deterministic_across_worker_counts(ds_copy, tmp_path):
    convert("lmdb", ds_copy, tmp_path / "a", opts(workers=1, chunk=5))
    convert("lmdb", ds_copy, tmp_path / "b", opts(workers=2, chunk=5))
    assert _mdb(tmp_path / "a") == _mdb(tmp_path / "b")


def test_lmdb_resumes_after_an_interruption(ds_copy, tmp_path, monkeypatch):
    from rsprep.formats import lmdb as lmdb_writer

    convert("lmdb", ds_copy, tmp_path / "clean", opts(chunk=4))
    calls = {"n": 0}
    real = lmdb_writer.read_piece

    def failing(payload):
        calls["n"] += 1
        if calls["n"] == 12:
            raise KeyboardInterrupt
        return real(payload)

    monkeypatch.setattr(lmdb_writer, "read_piece", failing)
    dest = tmp_path / "lmdb"
    with pytest.raises(KeyboardInterrupt):
        convert("lmdb", ds_copy, dest, opts(chunk=4))
    partial = tmp_path / ".lmdb.partial"
    logged = (partial / PROGRESS).read_text().split()  # finished write units (one per S1 scene/tile)
    assert not dest.exists() and len(logged) >= 1
    monkeypatch.setattr(lmdb_writer, "read_piece", real)
    result = convert("lmdb", ds_copy, dest, opts(chunk=4))
    assert 0 < result.resumed_tasks < 11 and not partial.exists()
    a, b = LmdbReader(tmp_path / "clean"), LmdbReader(dest)
    keys = a.keys()
    assert keys == b.keys()
    assert all(a.raw(k) == b.raw(k) for k in keys)


def test_lmdb_refuses_to_overwrite_and_replaces_only_when_done(ds_copy, tmp_path):
    dest = tmp_path / "lmdb"
    convert("lmdb", ds_copy, dest, QUIET)
    before = _mdb(dest)
    with pytest.raises(OutputExistsError, match="--overwrite"):
        convert("lmdb", ds_copy, dest, QUIET)
    assert _mdb(dest) == before
    convert("lmdb", ds_copy, dest, opts(overwrite=True))
    assert _mdb(dest) == before
    rec = json.loads((ds_copy / ds.BUILD).read_text())["stages"]["convert_lmdb"]
    assert ds.resolve_recorded(rec["path"], ds_copy) == dest.resolve() and rec["values"]["s2"] == 31


def test_a_plan_change_discards_the_partial_build(ds_copy, tmp_path):
    partial = tmp_path / ".lmdb.partial"
    partial.mkdir()
    (partial / "rsprep-convert.json").write_text('{"plan_digest": "other"}')
    (partial / "junk").write_text("x")
    messages = []
    convert("lmdb", ds_copy, tmp_path / "lmdb", QUIET, say=messages.append)
    assert any("discarding" in m for m in messages) and not partial.exists()
    assert len(LmdbReader(tmp_path / "lmdb")) == 93


# --------------------------------------------------------------------------------------------
# Zarr
# --------------------------------------------------------------------------------------------
def test_zarr_layout_and_values(converted):
    path = converted / "zarr" / "dataset.zarr"
    meta = json.loads((path / "zarr.json").read_text())
    assert "consolidated_metadata" in meta and meta["attributes"]["classes"] == list(BEN19.alphabetical)
    root = zarr.open_group(path, mode="r")
    n = 31
    for b in SPECTRAL_BANDS:
        arr = root[f"s2/{b}"]
        side = 1200 // BANDS_BY_NAME[b].resolution
        assert arr.shape == (n, side, side) and arr.dtype == np.uint16
        assert arr.chunks == (1, side, side) and arr.shards == (8, side, side)
        assert arr.metadata.dimension_names == ("patch", f"y_{1200 // side}m", f"x_{1200 // side}m")
        assert arr.attrs["resolution_m"] == BANDS_BY_NAME[b].resolution
    assert root["s1/VV"].dtype == np.float32 and root["reference_map"].dtype == np.uint16
    assert root["labels"].shape == (n, 19) and root["labels"].attrs["classes"] == list(BEN19.alphabetical)
    # shards: a handful of files per array, not one per patch
    shard_files = list((path / "s2" / "B02").rglob("c/*"))
    assert len(shard_files) == 4
    table = _table(converted)
    assert root["patch_id"][:].tolist() == table.column("patch_id").to_pylist()
    assert root["split"][:].tolist() == table.column("split").to_pylist()
    labels = root["labels"][:]
    for r, names in enumerate(table.column("labels").to_pylist()):
        assert [BEN19.alphabetical[j] for j in np.flatnonzero(labels[r])] == sorted(names)
    # every array value equals the LMDB value of the same patch
    lm, zr = LmdbReader(converted / "lmdb"), ZarrReader(path)
    ids, s1_names = table.column("patch_id").to_pylist(), table.column("s1_name").to_pylist()
    for pid, a in iter_patches(lm, ids, s1_names):
        b = zr.patch(pid)
        assert set(a) <= set(b)
        for k, v in a.items():
            assert v.dtype == b[k].dtype
            np.testing.assert_array_equal(v, b[k])
    stacked = root["s2_stacked"]
    assert stacked.shape == (n, 12, 120, 120) and stacked.attrs["resampling"] == "bilinear"
    np.testing.assert_array_equal(stacked[3, SPECTRAL_BANDS.index("B02")], root["s2/B02"][3])


def test_zarr_opens_in_xarray(converted):
    xr = pytest.importorskip("xarray")
    path = converted / "zarr" / "dataset.zarr"
    root = xr.open_zarr(path)
    assert root.sizes["patch"] == 31 and root["labels"].dims == ("patch", "class")
    assert root["reference_map"].dims == ("patch", "y_10m", "x_10m")
    s2 = xr.open_zarr(path, group="s2")
    assert s2["B01"].dims == ("patch", "y_60m", "x_60m") and s2["B02"].shape == (31, 120, 120)
    np.testing.assert_array_equal(s2["B05"][2].values, zarr.open_group(path, mode="r")["s2/B05"][2])
    assert str(root["patch_id"].values[0]) == _table(converted).column("patch_id")[0].as_py()


def test_zarr_stack_nearest_repeats_pixels(ds_copy, tmp_path):
    path = tmp_path / "n.zarr"
    convert("zarr", ds_copy, path, opts(stack=True, stack_method="nearest"))
    root = zarr.open_group(path, mode="r")
    b01 = root["s2/B01"][5]
    np.testing.assert_array_equal(root["s2_stacked"][5, 0], np.repeat(np.repeat(b01, 6, 0), 6, 1))


def test_zarr_is_deterministic(ds_copy, tmp_path):
    convert("zarr", ds_copy, tmp_path / "a.zarr", opts(shard_patches=8))
    convert("zarr", ds_copy, tmp_path / "b.zarr", opts(shard_patches=8, workers=2))
    files_a = sorted(
        p.relative_to(tmp_path / "a.zarr") for p in (tmp_path / "a.zarr").rglob("*") if p.is_file()
    )
    files_b = sorted(
        p.relative_to(tmp_path / "b.zarr") for p in (tmp_path / "b.zarr").rglob("*") if p.is_file()
    )
    assert files_a == files_b
    for rel in files_a:
        if rel.name != "zarr.json" or rel.parent != Path("."):
            assert (tmp_path / "a.zarr" / rel).read_bytes() == (tmp_path / "b.zarr" / rel).read_bytes(), rel


def test_zarr_needs_metadata(official, tmp_path):
    with pytest.raises(SourceError, match=r"metadata\.parquet"):
        convert("zarr", official, tmp_path / "z.zarr", QUIET)


# --------------------------------------------------------------------------------------------
# GeoTIFF layout
# --------------------------------------------------------------------------------------------
def test_tiff_layout(converted):
    table = _table(converted)
    pid = table.column("patch_id")[0].as_py()
    s1 = table.column("s1_name")[0].as_py()
    for group, key in (("s2", pid), ("s1", s1), ("map", pid)):
        files = band_files(group, key)
        folder = converted / next(iter(files.values())).parent
        assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in files.values())
    with rasterio.open(converted / band_files("s2", pid)["B01"]) as src:
        assert (src.dtypes[0], src.nodata, src.compression, src.width) == ("uint16", 0, None, 20)
        assert src.transform.a == 60
    with rasterio.open(converted / band_files("s1", s1)["VV"]) as src:
        assert (src.dtypes[0], src.nodata, src.compression) == ("float32", None, None)
    with rasterio.open(converted / band_files("map", pid)["Data"]) as src:
        assert (src.dtypes[0], src.nodata, src.compression.value) == ("uint16", 0, "DEFLATE")
    assert not list(converted.glob("*/*/*/.*"))  # no temporary folders left


def test_tiff_writer_reproduces_official_files_byte_for_byte(official, tmp_path):
    """Every S2, S1 and reference-map file of the real samples, rewritten, has the official bytes."""
    from rsprep.formats.geotiff import write_patch
    from rsprep.formats.sources import SourceSpec, read_items

    spec = SourceSpec("official", str(official))
    source = open_source(official)
    files = 0
    for group in ("s2", "map", "s1"):
        items = source.items[group]
        for it, values in zip(items, read_items(spec, group, items, georef=True), strict=True):
            key = it.key.removesuffix("_reference_map")
            write_patch(tmp_path, group, key, values)
            for rel in band_files(group, key).values():
                assert (tmp_path / rel).read_bytes() == (official / rel).read_bytes(), rel
                files += 1
    assert files == 2 * 12 + 1 + 3 * 2  # S1 too: StripByteCounts typed LONG as the official files


def test_s1_strip_byte_counts_widened_exactly(official, tmp_path):
    """GDAL types an S1 patch's StripByteCounts SHORT; the rewrite types it LONG and moves what follows."""
    import tifffile

    from rsprep.errors import WriteError
    from rsprep.formats.geotiff import profile
    from rsprep.formats.tiff_long_counts import widen_strip_byte_counts, widened

    src = next((official / "BigEarthNet-S1").rglob("*_VV.tif"))
    with rasterio.open(src) as a:
        arr, crs, transform = a.read(1), a.crs, a.transform
    gdal = tmp_path / "gdal.tif"
    with rasterio.open(gdal, "w", **profile("s1", arr, crs, tuple(transform)[:6])) as dst:
        dst.write(arr, 1)
    before = gdal.read_bytes()
    with tifffile.TiffFile(gdal) as t:
        assert t.pages[0].tags["StripByteCounts"].dtype == 3  # SHORT
    assert widen_strip_byte_counts(gdal) is True
    after = gdal.read_bytes()
    assert len(after) == len(before) + 16 and after == src.read_bytes()
    with tifffile.TiffFile(gdal) as t:
        page = t.pages[0]
        assert page.tags["StripByteCounts"].dtype == 4 and page.tags["StripOffsets"].value[0] == 424
        np.testing.assert_array_equal(page.asarray(), arr)
    assert widen_strip_byte_counts(gdal) is False and gdal.read_bytes() == after  # LONG already
    with pytest.raises(WriteError, match="not a little-endian classic TIFF"):
        widened(b"MM\x00*" + after[4:], "big.tif")


def test_official_layout_round_trip(converted, tmp_path):
    """Dataset → GeoTIFF layout → LMDB gives the same bytes as dataset → LMDB; Zarr alike."""
    out = tmp_path / "official"
    convert("tiff", converted, out, opts(workers=2))
    assert (out / ds.METADATA).is_file() and (out / ds.FLAGGED).is_file()
    convert("lmdb", out, out / "lmdb", QUIET)
    a, b = LmdbReader(converted / "lmdb"), LmdbReader(out / "lmdb")
    keys = a.keys()
    assert keys == b.keys()
    assert all(a.raw(k) == b.raw(k) for k in keys)
    convert("zarr", out, out / "z.zarr", opts(shard_patches=8, stack=True))
    za, zb = (
        zarr.open_group(converted / "zarr" / "dataset.zarr", mode="r"),
        zarr.open_group(out / "z.zarr", mode="r"),
    )
    for name in ("s2/B01", "s2/B8A", "s1/VH", "reference_map", "labels", "s2_stacked"):
        np.testing.assert_array_equal(za[name][:], zb[name][:])
    with pytest.raises(SourceError, match="already in the GeoTIFF layout"):
        convert("tiff", out, None, QUIET)


def test_official_folder_missing_patch_is_named(converted, tmp_path):
    out = tmp_path / "official"
    convert("tiff", converted, out, QUIET)
    victim = next((out / "BigEarthNet-S2").glob("*/*"))
    shutil.rmtree(victim)
    with pytest.raises(SourceError, match=victim.name):
        open_source(out)


def test_corrupt_geotiff_is_named(official, tmp_path):
    copy = tmp_path / "o"
    shutil.copytree(official, copy)
    bad = copy / band_files("s2", "S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_75_43")["B03"]
    bad.write_bytes(b"not a tiff")
    with pytest.raises(ReaderError, match=r"B03\.tif"):
        convert("lmdb", copy, tmp_path / "lmdb", QUIET)
    assert not (tmp_path / "lmdb").exists()
    with pytest.raises(ReaderError, match="missing"):
        TiffReader(copy).get("s2", "S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_1_1")


def test_not_a_source(tmp_path):
    with pytest.raises(SourceError, match="neither"):
        open_source(tmp_path)


def test_cli_convert(ds_copy, tmp_path):
    from typer.testing import CliRunner

    from rsprep.cli.main import app

    runner = CliRunner()
    r = runner.invoke(app, ["--quiet", "convert", "lmdb", str(ds_copy)])
    assert r.exit_code == 0, r.output
    assert (ds_copy / "lmdb" / "data.mdb").is_file()
    r = runner.invoke(app, ["convert", "lmdb", str(ds_copy)])
    assert r.exit_code == 1 and "--overwrite" in r.output
    r = runner.invoke(app, ["convert", "parquet", str(ds_copy)])
    assert r.exit_code == 1 and "lmdb, zarr, tiff" in r.output


@pytest.mark.parametrize("compressor", ["lz4", "zstd"])
def test_zarr_reader_fast_path_equals_zarr_python(ds_copy, tmp_path, compressor):
    from rsprep.formats.readers import ShardedPatchArray

    path = tmp_path / "z.zarr"
    convert("zarr", ds_copy, path, opts(compressor=compressor, shard_patches=8))
    reader, root = ZarrReader(path), zarr.open_group(path, mode="r")
    first = reader.read_row(0)
    assert all(isinstance(a, ShardedPatchArray) for a in reader._arrays.values())
    assert set(first) == {*SPECTRAL_BANDS, "VV", "VH", "reference_map", "labels"}
    for i in (0, 7, 8, 30):  # first and last row of a shard, the short last shard
        row = reader.read_row(i)
        for b in SPECTRAL_BANDS:
            np.testing.assert_array_equal(row[b], root[f"s2/{b}"][i])
        np.testing.assert_array_equal(row["VV"], root["s1/VV"][i])
        np.testing.assert_array_equal(row["reference_map"], root["reference_map"][i])
    with pytest.raises(IndexError, match="outside"):
        reader._arrays["B02"][31]
    with pytest.raises(ReaderError, match="not a patch"):
        reader.patch("nope")


def test_lmdb_write_failure_keeps_progress_and_resumes(ds_copy, tmp_path, monkeypatch):
    """A real LMDB error (the map full) mid-run: a clear error, finished tasks kept, then a resume."""
    from rsprep.formats import lmdb_build as lmdb_writer
    from rsprep.formats.resumable import ConvertError

    calls = {"n": 0}
    real = lmdb_writer.ensure_room

    def starve(env, extra):
        calls["n"] += 1
        if calls["n"] < 3:
            real(env, extra)  # the third write unit gets no room: MDB_MAP_FULL

    monkeypatch.setattr(lmdb_writer, "ensure_room", starve)
    dest = tmp_path / "lmdb"
    with pytest.raises(ConvertError, match="run the same command again to resume"):
        convert("lmdb", ds_copy, dest, opts(chunk=8))
    assert (tmp_path / ".lmdb.partial" / PROGRESS).read_text().split() == ["0", "1"]
    monkeypatch.setattr(lmdb_writer, "ensure_room", real)
    assert convert("lmdb", ds_copy, dest, opts(chunk=8)).resumed_tasks >= 2
    assert len(LmdbReader(dest)) == 93


def test_zarr_and_tiff_resume(ds_copy, tmp_path, monkeypatch):
    from rsprep.formats import geotiff as tiff_writer
    from rsprep.formats import zarr_write as zarr_writer

    for module, fn, fmt, dest, kw in (
        (zarr_writer, "write_task", "zarr", tmp_path / "z.zarr", {"shard_patches": 4}),
        (tiff_writer, "write_task", "tiff", tmp_path / "tif", {"chunk": 8}),
    ):
        real = getattr(module, fn)
        calls = {"n": 0}

        def flaky(payload, real=real, calls=calls):
            calls["n"] += 1
            if calls["n"] == 3:
                raise KeyboardInterrupt
            return real(payload)

        monkeypatch.setattr(module, fn, flaky)
        with pytest.raises(KeyboardInterrupt):
            convert(fmt, ds_copy, dest, opts(**kw))
        monkeypatch.setattr(module, fn, real)
        assert convert(fmt, ds_copy, dest, opts(**kw)).resumed_tasks == 2  # tasks 1 and 2 finished
    clean = tmp_path / "clean.zarr"
    convert("zarr", ds_copy, clean, opts(shard_patches=4))
    a, b = zarr.open_group(clean, mode="r"), zarr.open_group(tmp_path / "z.zarr", mode="r")
    for name in ("s2/B01", "s1/VV", "reference_map", "labels", "patch_id"):
        np.testing.assert_array_equal(a[name][:], b[name][:])
    assert not list(tmp_path.glob("tif/.rsprep-tiff.partial"))
    assert len(list((tmp_path / "tif" / "BigEarthNet-S2").glob("*/*"))) == 31


def test_full_disk_is_a_clear_error_and_resumable(ds_copy, tmp_path, monkeypatch):
    import errno

    from rsprep.formats import geotiff as tiff_writer
    from rsprep.formats.resumable import ConvertError

    real = tiff_writer.write_patch
    calls = {"n": 0}

    def full(root, group, key, values):
        calls["n"] += 1
        if calls["n"] == 20:
            raise OSError(errno.ENOSPC, "No space left on device", str(root / key))
        return real(root, group, key, values)

    monkeypatch.setattr(tiff_writer, "write_patch", full)
    with pytest.raises(ConvertError, match=r"No space left.*run the same command again to resume"):
        convert("tiff", ds_copy, tmp_path / "t", opts(chunk=8))
    assert not (tmp_path / "t" / "BigEarthNet-S2").exists()  # nothing half-done is in place
    logged = (tmp_path / "t" / ".rsprep-tiff.partial" / PROGRESS).read_text().split()
    assert 0 < len(logged) < 19  # the tasks finished before the 20th patch
    monkeypatch.setattr(tiff_writer, "write_patch", real)
    assert convert("tiff", ds_copy, tmp_path / "t", opts(chunk=8)).resumed_tasks == len(logged)


def test_bad_options_and_a_missing_work_store_are_named(ds_copy, tmp_path):
    from rsprep.errors import InvalidParameterError

    for kw, flag in (
        ({"compressor": "gzip"}, "--compressor"),
        ({"stack": True, "stack_method": "cubic"}, "--stack-method"),
        ({"class_order": "random"}, "--class-order"),
        ({"shard_patches": 0}, "--shard-patches"),
        ({"workers": 0}, "--workers"),
    ):
        with pytest.raises(InvalidParameterError, match=flag):
            convert("zarr", ds_copy, tmp_path / "z.zarr", opts(**kw))
    assert not (tmp_path / "z.zarr").exists()
    build = json.loads((ds_copy / ds.BUILD).read_text())
    build["stages"]["metadata"]["work"] = str(tmp_path / "gone")
    (ds_copy / ds.BUILD).write_text(json.dumps(build))
    with pytest.raises(SourceError, match=r"names the work store .*gone, which does not exist"):
        convert("lmdb", ds_copy, None, QUIET)
