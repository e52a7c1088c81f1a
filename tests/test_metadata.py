"""``rsprep metadata``: the official schema, what enters the dataset, flags, countries, v1 names, sidecar."""

from __future__ import annotations

import json
import os
import shutil

import geopandas as gpd
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely

from rsprep.errors import OutputExistsError
from rsprep.inputs.countries import CountryError, nearest_country, parse_candidates, read_countries
from rsprep.inputs.v1names import V1Error, read_v1
from rsprep.stages.metadata import MetadataOptions, build_metadata
from rsprep.store import dataset as ds
from rsprep.store.dataset import FLAGGED, METADATA, METADATA_SCHEMA, SIDECAR
from rsprep.store.workstore import WorkStoreError, find_stores

SAMPLE = "reben-v2-metadata-sample"


def test_schema_is_exactly_the_official_one(dataset, shared_data):
    official = pq.read_schema(shared_data(SAMPLE) / METADATA)
    # the sample was re-written by pandas: drop its index column and rename its list child back
    expected = pa.schema(
        [
            pa.field(f.name, pa.list_(pa.field("element", pa.string())) if f.name == "labels" else f.type)
            for f in official
            if f.name != "__index_level_0__"
        ]
    )
    for name in (METADATA, FLAGGED):
        path = dataset / name
        schema = pq.read_schema(path)
        assert schema.equals(expected) and schema.equals(METADATA_SCHEMA)
        assert not schema.metadata  # no pandas index metadata, no stored Arrow schema
        meta = pq.ParquetFile(path).metadata
        assert all(
            meta.row_group(g).column(c).compression == "ZSTD"
            for g in range(meta.num_row_groups)
            for c in range(meta.num_columns)
        )
        ids = pq.read_table(path).column("patch_id").to_pylist()
        assert ids == sorted(ids) and len(set(ids)) == len(ids)


def test_only_valid_labelled_paired_patches_enter(dataset, reference_work):
    meta = pq.read_table(dataset / METADATA)
    flagged = pq.read_table(dataset / FLAGGED)
    rows = {r["patch_id"]: r for r in meta.to_pylist() + flagged.to_pylist()}
    expected = {}
    for store in find_stores(reference_work):
        p = store.table("patches.parquet").to_pylist()
        lab = store.table("labels.parquet").to_pylist()
        s1 = store.table("s1.parquet").to_pylist()
        for a, b, c in zip(p, lab, s1, strict=True):
            if a["valid"] and b["label_status"] == "labeled" and c["s1_name"]:
                expected[a["patch_id"]] = (b["labels"], c["s1_name"])
    assert set(rows) == set(expected) and rows
    for pid, (labels, s1_name) in expected.items():
        assert rows[pid]["labels"] == labels == sorted(labels)
        assert rows[pid]["s1_name"] == s1_name
        assert rows[pid]["split"] in ("train", "validation", "test")
        assert rows[pid]["s2v1_name"] is None  # no --v1 given
    # the quality-failed product contributes nothing
    failed = [s.name for s in find_stores(reference_work) if not s.product["quality_passed"]]
    assert failed and not any(pid.startswith(failed[0]) for pid in rows)


def test_flags_follow_the_scl_fractions_and_thresholds(dataset, reference_work, tmp_path):
    side = pq.read_table(dataset / SIDECAR).to_pandas()
    snow = side.snow_fraction > 0
    cloud = (side.cloud_fraction + side.shadow_fraction) > 0
    assert (side.contains_seasonal_snow == snow).all() and (side.contains_cloud_or_shadow == cloud).all()
    flagged_ids = set(pq.read_table(dataset / FLAGGED).column("patch_id").to_pylist())
    assert flagged_ids == set(side.patch_id[snow | cloud]) and snow.any() and cloud.any()
    build = json.loads((dataset / "build.json").read_text())["stages"]["metadata"]
    c = build["counts"]
    assert c["flag_seasonal_snow"] == snow.sum() and c["flag_cloud_or_shadow"] == cloud.sum()
    assert c["metadata_rows"] + c["flagged_rows"] == c["dataset_patches"] == len(side)
    assert build["work"] == os.path.relpath(reference_work.resolve(), dataset.resolve())
    assert ds.work_store(dataset) == reference_work.resolve()
    lenient = build_metadata(
        reference_work, tmp_path / "lenient", MetadataOptions(snow_threshold=1.0, cloud_threshold=1.0)
    )
    assert lenient.counts["flagged_rows"] == 0 and lenient.counts["metadata_rows"] == len(side)


def test_sidecar_is_geoparquet_and_agrees_with_metadata(dataset):
    gdf = gpd.read_parquet(dataset / SIDECAR)
    assert gdf.crs.to_epsg() == 4326 and len(gdf)
    centroids = shapely.points(gdf.centroid_lon.to_numpy(), gdf.centroid_lat.to_numpy())
    assert shapely.contains(gdf.geometry.values, centroids).all()
    meta = pq.read_table(dataset / METADATA).to_pandas().set_index("patch_id")
    joined = gdf.set_index("patch_id").loc[meta.index]
    assert (joined.split == meta.split).all() and (joined.country == meta.country).all()
    row = gdf.iloc[0]
    assert row.right - row.left == 1200 and row.top - row.bottom == 1200 and row.epsg == 32633
    assert {"sensing_time", "season", "processing_baseline", "nodata_fraction", "unlabeled_fraction"} <= set(
        gdf
    )


def test_countries_are_the_nearest_candidate(dataset, archive, manifest):
    side = pq.read_table(dataset / SIDECAR).to_pandas()
    assert set(side.country) <= {"Austria", "Germany", "Czechia"} and (side.country_distance_m == 0).all()
    countries = read_countries(archive / manifest["countries"]["path"])
    geoms = dict(zip(countries.names, countries.geometries, strict=True))
    inside = [
        geoms[c].contains(shapely.Point(lon, lat))
        for c, lon, lat in side[["country", "centroid_lon", "centroid_lat"]].itertuples(index=False)
    ]
    assert all(inside)
    # restricted to a distant candidate: everyone gets it, at a positive distance
    swiss = read_countries(archive / manifest["countries"]["path"], candidates=("Switzerland",))
    names, dist = nearest_country(
        swiss, side.left.to_numpy() + 600, side.bottom.to_numpy() + 600, side.epsg.to_numpy()
    )
    assert set(names) == {"Switzerland"} and (dist > 1000).all()
    assert parse_candidates("reben")[0] == "Austria" and parse_candidates(None) is None
    with pytest.raises(CountryError, match="did you mean 'Austria'"):
        read_countries(archive / manifest["countries"]["path"], candidates=("Austira",))
    with pytest.raises(CountryError, match="no field 'NAME_XX'; its fields are NAME, ISO_A2"):
        read_countries(archive / manifest["countries"]["path"], name_field="NAME_XX")


def test_without_country_file_country_is_null(reference_work, tmp_path):
    r = build_metadata(reference_work, tmp_path / "ds", MetadataOptions())
    assert pq.read_table(tmp_path / "ds" / METADATA).column("country").null_count == r.counts["metadata_rows"]


def test_v1_names_from_the_real_v1_folder_and_from_a_table(shared_data, tmp_path):
    index = read_v1(shared_data("ben-v1-patches"))
    got = index.lookup(
        np.array(["S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_87_48"], dtype=object),
        np.array(["T33UUP"], dtype=object),
        np.array(["20170613"], dtype=object),
        np.array([404400.0]),
        np.array([5342400.0]),
    )
    assert got.tolist() == ["S2A_MSIL2A_20170613T101031_87_48"]
    miss = index.lookup(
        *(np.array([v], dtype=object) for v in ("x", "T33UUP", "20170614")),
        np.array([404400.0]),
        np.array([5342400.0]),
    )
    assert miss.tolist() == [None]
    table = tmp_path / "map.csv"
    table.write_text("patch_id,s2v1_name\nA_1_1,S2A_MSIL2A_20171101T94132_0_0\n")
    assert read_v1(table).by_id == {"A_1_1": "S2A_MSIL2A_20171101T94132_0_0"}
    bad = tmp_path / "bad.csv"
    bad.write_text("patch,name\na,b\n")
    with pytest.raises(V1Error, match="lacks the column"):
        read_v1(bad)


def test_v1_names_enter_the_metadata(reference_work, tmp_path):
    work_ids = []
    for store in find_stores(reference_work):
        work_ids += store.table("patches.parquet").column("patch_id").to_pylist()
    mapping = tmp_path / "v1.parquet"
    pq.write_table(
        pa.table({"patch_id": work_ids, "s2v1_name": [f"V1_{i}" for i in range(len(work_ids))]}), mapping
    )
    build_metadata(reference_work, tmp_path / "ds", MetadataOptions(v1=mapping))
    t = pq.read_table(tmp_path / "ds" / METADATA)
    assert t.column("s2v1_name").null_count == 0


def test_rebuild_is_byte_identical_and_refuses_to_overwrite(
    dataset, reference_work, archive, manifest, tmp_path
):
    again = tmp_path / "again"
    build_metadata(reference_work, again, MetadataOptions(countries=archive / manifest["countries"]["path"]))
    for name in (METADATA, FLAGGED, SIDECAR):
        assert (again / name).read_bytes() == (dataset / name).read_bytes(), name
    with pytest.raises(OutputExistsError, match="--overwrite"):
        build_metadata(reference_work, again)
    before = (again / METADATA).read_bytes()
    build_metadata(
        reference_work,
        again,
        MetadataOptions(countries=archive / manifest["countries"]["path"]),
        overwrite=True,
    )
    assert (again / METADATA).read_bytes() == before
    assert not [p for p in again.iterdir() if p.name.startswith(".")]


def test_incomplete_work_stores_fail_clearly(reference_work, tmp_path):
    work = tmp_path / "work"
    store = find_stores(reference_work)[0]
    shutil.copytree(store.path, work / store.name)
    manifest = json.loads((work / store.name / "manifest.json").read_text())
    del manifest["stages"]["s1"]
    (work / store.name / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(WorkStoreError, match="--keep-unpaired"):
        build_metadata(work, tmp_path / "ds")
    r = build_metadata(work, tmp_path / "ds", MetadataOptions(keep_unpaired=True))
    assert r.counts["no_s1_partner"] == 0
    assert (
        pq.read_table(tmp_path / "ds" / SIDECAR).column("s1_name").null_count == r.counts["dataset_patches"]
    )
    del manifest["stages"]["reference"]
    (work / store.name / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(WorkStoreError, match="rsprep reference"):
        build_metadata(work, tmp_path / "ds2", MetadataOptions(keep_unpaired=True))


def test_cli_metadata_split_noise(reference_work, tmp_path):
    from typer.testing import CliRunner

    from rsprep.cli.main import app

    runner = CliRunner()
    ds = tmp_path / "ds"
    r = runner.invoke(app, ["metadata", "--work", str(reference_work), "--out", str(ds)])
    assert r.exit_code == 0, r.output
    assert "seasonal snow flags" in r.output and "countries: none" in r.output
    r = runner.invoke(app, ["metadata", "--work", str(reference_work), "--out", str(ds)])
    assert r.exit_code == 1 and "--overwrite" in r.output
    r = runner.invoke(app, ["split", str(ds), "--method", "random", "--seed", "2"])
    assert r.exit_code == 0 and "split method: random" in r.output and (ds / "split_report.txt").is_file()
    r = runner.invoke(app, ["noise", str(ds), "--mode", "subtractive", "--rate", "0.5"])
    assert r.exit_code == 0 and (ds / "noise" / "subtractive_0.5_seed0.json").is_file()
    r = runner.invoke(app, ["noise", str(ds), "--mode", "subtractive", "--rate", "2"])
    assert r.exit_code == 1 and "--rate must lie in [0, 1]" in r.output


def test_a_failed_write_leaves_the_previous_dataset_intact(dataset, reference_work, tmp_path, monkeypatch):
    from rsprep.store import dataset as ds_module

    copy = tmp_path / "ds"
    shutil.copytree(dataset, copy)
    before = {p.name: p.read_bytes() for p in copy.iterdir() if p.is_file()}
    calls = []
    real = pq.write_table

    def full_disk(table, where, **kw):
        calls.append(where)
        if len(calls) == 2:
            raise OSError(28, "No space left on device", str(where))
        real(table, where, **kw)

    monkeypatch.setattr(ds_module.pq, "write_table", full_disk)
    with pytest.raises(OSError, match="No space left"):
        build_metadata(reference_work, copy, MetadataOptions(snow_threshold=1.0), overwrite=True)
    after = {p.name: p.read_bytes() for p in copy.iterdir() if p.is_file()}
    assert after == before  # nothing renamed, no temporary file left behind


def test_corrupt_tables_are_named(tmp_path):
    from rsprep.core.splits import SplitOptions
    from rsprep.stages.split import split_target
    from rsprep.store.dataset import DatasetError

    bad = tmp_path / "metadata.parquet"
    bad.write_bytes(b"PAR1 not really")
    with pytest.raises(DatasetError, match=r"metadata.parquet is not a readable parquet file"):
        split_target(bad, SplitOptions())


def test_rebuilding_the_tables_drops_the_records_of_later_stages(dataset, tmp_path, reference_work):
    import json
    import shutil

    from rsprep.stages.metadata import build_metadata
    from rsprep.store import dataset as ds_module

    out = tmp_path / "ds"
    shutil.copytree(dataset, out)
    ds_module.record_build(out, "split", {"options": {"method": "random"}})
    build_metadata(reference_work, out, overwrite=True)
    stages = json.loads((out / "build.json").read_text())["stages"]
    assert list(stages) == ["metadata"]  # the old split described tables that no longer exist
