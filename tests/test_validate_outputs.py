"""rsprep validate, completeness and values: each test damages a copy of the demo dataset and finds
the problem named by its check, message and place, and no other check failing."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rsprep.core.values import map_key
from rsprep.formats.geotiff import band_files, patch_dir
from rsprep.formats.readers import LmdbReader
from rsprep.store import dataset as ds
from rsprep.validation import validate
from rsprep.validation.checks.values import value_problem
from rsprep.validation.view import open_view

PID = 3  # the row of the patch that is damaged


@pytest.fixture
def copy(full_dataset, tmp_path) -> Path:
    out = tmp_path / "ds"
    shutil.copytree(full_dataset, out)
    return out


def _ids(root: Path) -> tuple[str, str]:
    view = open_view(root)
    return view.patch_ids[PID], view.s1_names[PID]


def _failing(report) -> list[str]:
    return [c.name for c in report.checks if c.errors]


def _errors(report, check: str) -> list[tuple[str, str]]:
    return [(p.message, p.where) for p in report.errors if p.check == check]


def _one(report, check: str, fragment: str) -> str:
    """The place of the only error of ``check``, which must contain ``fragment``."""
    errors = _errors(report, check)
    assert len(errors) == 1 and fragment in errors[0][0], errors
    return errors[0][1]


def _lmdb_env(root: Path):
    """The copy's LMDB opened for writing (the readers' environment, left open by a validation, closed)."""
    import lmdb

    LmdbReader(root / "lmdb").close()
    return lmdb.open(str(root / "lmdb"), map_size=4 * (root / "lmdb" / "data.mdb").stat().st_size)


def _rewrite_lmdb(root: Path, key: str, change) -> None:
    """Replace the LMDB value of ``key`` by ``change(bytes)``."""
    env = _lmdb_env(root)
    with env.begin(write=True) as txn:
        txn.put(key.encode(), change(bytes(txn.get(key.encode()))))
    env.close()


def test_the_demo_dataset_is_complete_and_its_outputs_agree(full_dataset):
    report = validate(full_dataset, checks=["completeness", "values"], full=True)
    assert report.problems == []
    assert report.outcome("completeness").checked == 93 + 31 + 93  # keys, Zarr rows, patch folders
    values = report.outcome("values")
    assert values.checked == 31 and "11,457,600 values checked" in values.note


def test_a_deleted_lmdb_key_and_an_extra_one(copy):
    pid, _ = _ids(copy)
    env = _lmdb_env(copy)
    with env.begin(write=True) as txn:
        assert txn.delete(pid.encode())
        txn.put(b"S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_9_9", txn.get(map_key(pid).encode()))
    env.close()
    report = validate(copy, full=True)
    assert _failing(report) == ["completeness"]
    assert sorted(_errors(report, "completeness")) == [
        ("LMDB key 'S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_9_9' is a value the metadata tables "
         "do not name", "S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_9_9"),
        (f"the LMDB has no key {pid!r} (s2 value of the metadata tables)", pid),
    ]  # fmt: skip


def test_flipped_bytes_in_an_lmdb_value_differ_from_the_other_outputs(copy):
    pid, _ = _ids(copy)

    def flip(value: bytes) -> bytes:
        start = 8 + int.from_bytes(value[:8], "little") + 100  # pixels 50-54 of B01
        data = bytearray(value)
        data[start : start + 10] = bytes(b ^ 0x55 for b in data[start : start + 10])
        return bytes(data)

    _rewrite_lmdb(copy, pid, flip)
    report = validate(copy, full=True)
    assert _failing(report) == ["values"]
    where = _one(report, "values", "LMDB differs from Zarr, GeoTIFF: B01 in 5 of 400 pixels")
    assert where == pid


def test_a_truncated_geotiff_band(copy):
    pid, _ = _ids(copy)
    rel = band_files("s2", pid)["B02"]
    os.truncate(copy / rel, (copy / rel).stat().st_size // 2)
    report = validate(copy, full=True)
    assert _failing(report) == ["completeness", "values"]  # the header is fine, its pixels are cut off
    assert _one(report, "completeness", "the band file is truncated: its pixels run to byte") == str(rel)
    assert _one(report, "values", f"the GeoTIFF patch cannot be read ({copy / rel}") == pid
    os.truncate(copy / rel, 100)  # the header is cut off too
    assert "not a readable GeoTIFF" in _errors(validate(copy, checks=["completeness"]), "completeness")[0][0]


def test_a_geotiff_band_of_the_wrong_dtype(copy):
    import rasterio

    pid, _ = _ids(copy)
    rel = band_files("s2", pid)["B05"]
    with rasterio.open(copy / rel) as src:
        profile, pixels = src.profile, src.read(1)
    profile["dtype"] = "float32"
    with rasterio.open(copy / rel, "w", **profile) as dst:
        dst.write(pixels.astype(np.float32), 1)
    report = validate(copy, full=True)
    assert _failing(report) == ["completeness"]  # the same values: the value check is content
    msg = "the band file holds 1 band(s) of float32 [60, 60], not 1 of uint16 [60, 60]"
    assert _one(report, "completeness", msg) == str(rel)


def test_stray_files_and_folders_in_the_layout(copy):
    pid, s1 = _ids(copy)
    folder = copy / patch_dir("s2", pid)
    shutil.copy(folder / f"{pid}_B02.tif", folder / f"{pid}_B02_copy.tif")
    (folder / "notes.txt").write_text("not a band")  # not a .tif: allowed
    extra = patch_dir("s1", "_".join([*s1.split("_")[:-2], "7", "7"]))
    shutil.copytree(copy / patch_dir("s1", s1), copy / extra)
    report = validate(copy, full=True)
    assert _failing(report) == ["completeness"]
    assert sorted(_errors(report, "completeness")) == sorted(
        [
            (f"a .tif file that is no band of {pid}", str(patch_dir("s2", pid) / f"{pid}_B02_copy.tif")),
            (f"s1 patch folder {extra.name!r} is a folder the metadata tables do not name", str(extra)),
        ]
    )


def test_nodata_in_every_output_and_in_zarr_only(copy):
    import rasterio
    import zarr
    from safetensors.numpy import load, save

    pid, _ = _ids(copy)

    def zero(value: bytes) -> bytes:
        arrays = load(value)
        arrays["B02"][:5, :5] = 0
        return save(arrays)

    zarr.open_array(copy / "zarr" / "dataset.zarr" / "s2" / "B02", mode="r+")[PID, :5, :5] = 0
    report = validate(copy, full=True)
    assert _failing(report) == ["values"]
    assert sorted(_errors(report, "values")) == [
        ("B02: 25 of 14,400 pixels are 0 (nodata); S2 bands have none (in Zarr)", pid),
        ("Zarr differs from LMDB, GeoTIFF: B02 in 25 of 14,400 pixels", pid),
    ]
    _rewrite_lmdb(copy, pid, zero)
    with rasterio.open(copy / band_files("s2", pid)["B02"], "r+") as dst:
        pixels = dst.read(1)
        pixels[:5, :5] = 0
        dst.write(pixels, 1)
    report = validate(copy, full=True)
    assert _failing(report) == ["values"]
    msg = "B02: 25 of 14,400 pixels are 0 (nodata); S2 bands have none (in LMDB, Zarr, GeoTIFF)"
    assert _one(report, "values", msg) == pid


def test_a_missing_zarr_shard_and_a_wrong_s1_name(copy):
    import zarr

    pid, s1 = _ids(copy)
    wrong = "S1A_IW_GRDH_1SDV_20170613T165043_33UUP_9_9"
    store = copy / "zarr" / "dataset.zarr"
    (store / "s2" / "B03" / "c" / "0" / "0" / "0").unlink()  # rows 0-7
    zarr.open_array(store / "s1_name", mode="r+")[PID] = wrong
    report = validate(copy, full=True)
    assert _failing(report) == ["completeness", "values"]
    first8 = open_view(copy).patch_ids[:8]
    assert sorted(_errors(report, "completeness")) == [
        (f"the Zarr s1_name is {wrong!r}, the tables say {s1!r}", pid),
        (f"the shard file is missing: 8 patches from {first8[0]} have no data", "s2/B03/c/0/0/0"),
    ]
    values = _errors(report, "values")  # the rows read as fill values: nodata, and unlike the others
    assert len(values) == 16 and {w for _, w in values} == set(first8)
    assert ("B03: 14,400 of 14,400 pixels are 0 (nodata); S2 bands have none (in Zarr)", first8[0]) in values


def test_a_missing_s1_shard_of_paired_patches_is_an_error(copy):
    store = copy / "zarr" / "dataset.zarr"
    (store / "s1" / "VV" / "c" / "0" / "0" / "0").unlink()  # rows 0-7, all with an S1 partner
    view = open_view(copy)
    paired = [p for p, n in zip(view.patch_ids[:8], view.s1_names[:8], strict=True) if n]
    assert paired
    report = validate(copy, checks=["completeness"], full=True)
    msg = f"the shard file is missing: {len(paired)} patches from {paired[0]} have no data"
    assert (msg, "s1/VV/c/0/0/0") in _errors(report, "completeness")


def test_a_patch_whose_s1_name_the_tables_drop(copy):
    import pyarrow.compute as pc

    pid, s1 = _ids(copy)
    for name in (ds.METADATA, ds.FLAGGED):
        table = pq.read_table(copy / name)
        hit = pc.equal(table.column("patch_id"), pid)
        s1_col = pc.if_else(hit, pa.scalar(None, pa.string()), table.column("s1_name"))
        i = table.schema.get_field_index("s1_name")
        pq.write_table(table.set_column(i, table.schema.field(i), s1_col), copy / name)
    report = validate(copy, checks=["completeness", "values"], full=True)
    assert sorted(_errors(report, "completeness")) == [
        (f"LMDB key {s1!r} is a value the metadata tables do not name", s1),
        (f"s1 patch folder {s1!r} is a folder the metadata tables do not name", str(patch_dir("s1", s1))),
        (f"the Zarr s1_name is {s1!r}, the tables say ''", pid),
    ]
    assert sorted(_errors(report, "values")) == [  # Zarr's S1 row is not the NaN of an unpaired patch
        (f"Zarr {band} holds values for a patch without s1_name (NaN expected)", pid) for band in ("VH", "VV")
    ]


def test_the_checks_of_one_band():
    assert value_problem("B01", np.array([[1, 0], [0, 3]], dtype=np.uint16)).startswith("B01: 2 of 4 pixels")
    assert value_problem("VV", np.array([1.0, np.nan, np.inf], dtype=np.float32)).startswith("VV: 2 of 3")
    codes = np.array([0, 111, 999, 523, 7, 7, 1000], dtype=np.uint16)  # 0 (no polygon) and 999 are fine
    assert value_problem("reference_map", codes) == "reference map: 3 pixels hold no CLC code (7, 1000)"
    assert value_problem("Data", codes[:4]) is None and value_problem("B12", codes[1:4]) is None


def test_the_official_geotiff_sample_checks_its_own_layout(shared_data):
    report = validate(shared_data("reben-v2-patches"), full=True)
    assert report.ok, report.errors
    assert (
        report.outcome("schema").status == "skipped"
        and "no metadata.parquet" in report.outcome("schema").note
    )
    outcome = report.outcome("completeness")
    assert "names from keys/folders" in outcome.note
    assert sorted(p.message.split(" has ")[1] for p in report.warnings if p.check == "completeness") == [
        "no S2 patch in BigEarthNet-S2/",
        "no reference map in Reference_Maps/",
        "no reference map in Reference_Maps/",
    ]
    assert report.outcome("values").checked == 6  # 2 S2 patches, 3 S1 patches, 1 map: all files read


def test_the_rico_hdl_lmdb_alone_and_with_a_table(shared_data, tmp_path):
    lmdb = shared_data("reben-v2-lmdb-expected")
    report = validate(lmdb, checks=["completeness", "values"], full=True)
    assert report.problems == [] and report.outcome("values").checked == 2
    s2 = "S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_75_43"
    s1 = "S1A_IW_GRDH_1SDV_20170613T165043_33UUP_70_48"
    root = tmp_path / "official"
    (root / "lmdb").mkdir(parents=True)
    shutil.copy(lmdb / "data.mdb", root / "lmdb" / "data.mdb")
    row = {
        "patch_id": [s2], "labels": [["Arable land"]], "split": ["train"], "country": ["Austria"],
        "s1_name": [s1], "s2v1_name": [None], "contains_seasonal_snow": [False],
        "contains_cloud_or_shadow": [False],
    }  # fmt: skip
    pq.write_table(pa.table(row, schema=ds.METADATA_SCHEMA), root / ds.METADATA)
    report = validate(root, checks=["schema", "completeness", "values"], full=True)
    assert _failing(report) == ["completeness"]
    assert _one(report, "completeness", "the LMDB has no key") == map_key(s2)  # rico-hdl wrote no map
    assert report.outcome("values").checked == 1  # the patch is left to completeness
