"""BigEarthNet v1.0 alignment from the patch id alone: the library, ``rsprep v1 align`` and the metadata
stage's ``v1_alignment`` (docs/inputs.md#v1-alignment)."""

from __future__ import annotations

import datetime
import json
import os
import shutil

import geopandas as gpd
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from rsprep.cli.main import app
from rsprep.errors import InvalidParameterError
from rsprep.inputs import v1_tables as vt
from rsprep.inputs.v1_align import ALIGNED, align_patch_ids
from rsprep.inputs.v1_check import align_table
from rsprep.stages.metadata import MetadataOptions, build_metadata
from rsprep.store.dataset import FLAGGED, METADATA, SIDECAR
from rsprep.store.workstore import WorkStoreError, find_stores

SAMPLE = "reben-v2-metadata-sample"
CHECKED = ("s2v1_name", "s1_name", "contains_seasonal_snow", "contains_cloud_or_shadow")
DEMO_PRODUCT = "S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP"


@pytest.fixture(scope="session")
def v1_cache(tmp_path_factory):
    """A private cache folder for the whole session (the first load fills it)."""
    path = tmp_path_factory.mktemp("v1cache")
    old = os.environ.get("RSPREP_CACHE")
    os.environ["RSPREP_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("RSPREP_CACHE", None)
    else:
        os.environ["RSPREP_CACHE"] = old


@pytest.fixture(scope="session")
def tables(v1_cache):
    """The package's tables, loaded once; the cache starts out damaged (test_a_damaged_cache_is_rebuilt)."""
    vt.cache_path(vt.package_version()).write_bytes(b"not parquet")
    return vt.load_v1_tables()


@pytest.fixture(scope="session")
def official(shared_data) -> pa.Table:
    """The 24 official rows (both metadata files of the sample)."""
    parts = [pq.read_table(shared_data(SAMPLE) / name) for name in (METADATA, FLAGGED)]
    return pa.concat_tables([t.select(["patch_id", "country", *CHECKED]) for t in parts])


def _run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


# --------------------------------------------------------------------------------------------
# The library and the package's tables
# --------------------------------------------------------------------------------------------
def test_the_package_tables_hold_every_v1_patch_once(tables, v1_cache):
    assert len(tables) == 590_326 and tables.source.startswith("bigearthnet-common ")
    assert (np.diff(tables.keys) > 0).all()
    assert int(np.asarray(tables.table.column("contains_seasonal_snow")).sum()) == 61_707
    assert int(np.asarray(tables.table.column("contains_cloud_or_shadow")).sum()) == 9_280
    cached = vt.cache_path(vt.package_version())
    assert cached.parent == v1_cache and cached.is_file()
    again = vt.load_v1_tables()  # from the cache: the same table
    assert np.array_equal(again.keys, tables.keys) and again.table.equals(tables.table)
    assert again.tiles.equals(tables.tiles) and np.array_equal(again.time_s, tables.time_s)


def test_a_damaged_cache_is_rebuilt(tables, v1_cache):
    path = vt.cache_path(vt.package_version())
    assert pq.read_table(path).num_rows == len(tables)  # the damaged file was replaced by a good one
    assert not [p for p in v1_cache.iterdir() if p.name.startswith(".")]  # no temporary left


def test_the_24_official_rows_from_their_patch_ids_alone(official, tables):
    got = align_patch_ids(official.column("patch_id"), tables)
    assert got.column_names == ["patch_id", *ALIGNED]
    for name in CHECKED:
        assert got.column(name).to_pylist() == official.column(name).to_pylist(), name
    assert got.column("v1_country").to_pylist() == official.column("country").to_pylist()
    # the quirks of these rows: a time one second off without its leading zero, unpadded cells
    row = got.filter(
        pa.compute.equal(got.column("patch_id"), "S2A_MSIL2A_20171101T094131_N9999_R036_T35VNJ_00_00")
    )
    assert row.column("s2v1_name").to_pylist() == ["S2A_MSIL2A_20171101T94132_0_0"]
    assert row.column("s1_name").to_pylist() == ["S1B_IW_GRDH_1SDV_20171101T154016_35VNJ_0_0"]


def test_patch_ids_without_a_v1_counterpart_get_nulls(tables):
    ids = [
        "S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_26_57",  # a real one
        "S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_00_00",  # a cell v1 left out
        "S2A_MSIL2A_20170614T101031_N9999_R022_T33UUP_26_57",  # another day
        "S2A_MSIL2A_20170613T111031_N9999_R022_T33UUP_26_57",  # another datatake of that day
        "S2B_MSIL2A_20170613T101031_N9999_R022_T33UUP_26_57",  # another satellite
        "S2A_MSIL2A_20170613T101031_N9999_R022_T99XXX_26_57",  # a tile v1 does not have
        "S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_126_57",  # no such cell
        "not a patch id",
        None,
    ]
    got = align_patch_ids(ids, tables)
    assert got.column("patch_id").to_pylist() == ids
    assert got.column("s2v1_name").to_pylist() == ["S2A_MSIL2A_20170613T101031_26_57"] + [None] * 8
    for name in ALIGNED:
        assert got.column(name).null_count == 8
    with pytest.raises(InvalidParameterError, match="must be strings"):
        align_patch_ids(pa.array([1, 2]), tables)


def test_a_missing_extra_names_the_install_command(monkeypatch):
    monkeypatch.setattr(vt, "DISTRIBUTION", "bigearthnet-common-not-installed")
    with pytest.raises(vt.V1TablesMissingError, match=r"pip install 'rsprep\[reben\]'"):
        vt.load_v1_tables()


# --------------------------------------------------------------------------------------------
# Synthetic tables in v1's own format (folder and bytes)
# --------------------------------------------------------------------------------------------
def _v1_csv(rows):
    return (
        "s1_name,s2_name,country,season\n" + "".join(f"{a},{b},{c},{d}\n" for a, b, c, d in rows)
    ).encode()


def _write_v1_folder(folder, rows, snow, cloud):
    import bz2

    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{vt.PAIRS}.bz2").write_bytes(bz2.compress(_v1_csv(rows)))
    (folder / vt.SNOW).write_text("".join(f"{n}\n" for n in snow))
    (folder / vt.CLOUD).write_text("".join(f"{n}\n" for n in cloud))
    return folder


@settings(max_examples=60, deadline=None)
@given(
    mission=st.sampled_from(["S2A", "S2B"]),
    day=st.dates(min_value=datetime.date(2017, 1, 1), max_value=datetime.date(2019, 12, 31)),
    hour=st.integers(6, 14),
    minute=st.integers(0, 59),
    second=st.integers(0, 59),
    off=st.integers(-8, 8),
    x=st.integers(0, 90),
    y=st.integers(0, 90),
    tile=st.sampled_from(["29SNB", "33UUP", "35VNJ"]),
)
def test_name_normalisation(mission, day, hour, minute, second, off, x, y, tile):
    """Any v2 id finds the v1 name written v1's way: no leading zero, seconds off, cells unpadded."""
    t = hour * 3600 + minute * 60 + second
    v1_t = t + off
    v1_time = f"{v1_t // 3600}{v1_t // 60 % 60:02d}{v1_t % 60:02d}"  # v1 drops the hour's leading zero
    date = f"{day:%Y%m%d}"
    s2 = f"{mission}_MSIL2A_{date}T{v1_time}_{x}_{y}"
    s1 = f"S1A_IW_GRDH_1SDV_{date}T050505_{tile}_{x}_{y}"
    tables = vt.tables_from_csv(_v1_csv([(s1, s2, "Kosovo", "Fall")]), f"{s2}\n".encode(), b"")
    v2 = f"{mission}_MSIL2A_{date}T{hour:02d}{minute:02d}{second:02d}_N9999_R022_T{tile}_{x:02d}_{y:02d}"
    got = align_patch_ids([v2, v2.replace(f"_{x:02d}_{y:02d}", f"_{x}_{y}")], tables).to_pylist()
    for row in got:
        assert (row["s2v1_name"], row["s1_name"], row["contains_seasonal_snow"]) == (s2, s1, True)
        assert (row["contains_cloud_or_shadow"], row["v1_country"]) == (False, "Kosovo")
    far = f"{mission}_MSIL2A_{date}T{(hour + 2):02d}{minute:02d}{second:02d}_N9999_R022_T{tile}_{x}_{y}"
    assert align_patch_ids([far], tables).column("s2v1_name").to_pylist() == [None]


def test_bad_v1_tables_are_named(tmp_path):
    with pytest.raises(vt.InputNotFoundError, match="does not exist"):
        vt.load_v1_tables(tmp_path / "nope")
    folder = _write_v1_folder(tmp_path / "v1", [], [], [])
    (folder / vt.CLOUD).unlink()
    with pytest.raises(vt.InputNotFoundError, match=f"has no {vt.CLOUD}"):
        vt.load_v1_tables(folder)
    bad = _write_v1_folder(tmp_path / "bad", [("S1A_x", "S2A_MSIL2A_20170101T1_1_1", "A", "B")], [], [])
    with pytest.raises(
        vt.V1TablesError, match=r"s2_name values are not v1 names, e.g. \['S2A_MSIL2A_20170101T1_1_1'\]"
    ):
        vt.load_v1_tables(bad)
    row = ("S1A_IW_GRDH_1SDV_20170101T050505_33UUP_1_1", "S2A_MSIL2A_20170101T100000_1_1", "A", "B")
    dup = _write_v1_folder(tmp_path / "dup", [row, row], [], [])
    with pytest.raises(vt.V1TablesError, match="share mission, day, tile and cell"):
        vt.load_v1_tables(dup)


# --------------------------------------------------------------------------------------------
# rsprep v1 align
# --------------------------------------------------------------------------------------------
def test_cli_fills_the_official_values_from_patch_ids_alone(official, tables, tmp_path):
    ids = tmp_path / "ids.parquet"
    pq.write_table(official.select(["patch_id"]), ids)
    out = tmp_path / "aligned.parquet"
    r = _run("v1", "align", ids, "--out", out)
    assert r.exit_code == 0, r.output
    assert "24 patches, 24 with a v1 counterpart, 0 without" in r.output
    assert "filled: s2v1_name, s1_name, contains_seasonal_snow, contains_cloud_or_shadow" in r.output
    got = pq.read_table(out)
    assert got.column_names == ["patch_id", *CHECKED]
    for name in CHECKED:
        assert got.column(name).to_pylist() == official.column(name).to_pylist(), name
    assert pq.read_table(ids).column_names == ["patch_id"]  # the input is untouched
    r = _run("v1", "align", ids, "--out", out)
    assert r.exit_code == 1 and "--overwrite" in r.output
    r = _run("v1", "align", ids, "--out", out, "--overwrite", "--v1-extras")
    assert r.exit_code == 0 and pq.read_table(out).column("v1_season").to_pylist()[:1] == ["Summer"]


def test_cli_checks_the_official_files_with_no_mismatch(shared_data, tables):
    for name in (METADATA, FLAGGED):
        path = shared_data(SAMPLE) / name
        before = path.read_bytes()
        r = _run("v1", "align", path)
        assert r.exit_code == 0, r.output
        for column in CHECKED:
            assert f"checked {column}: 0 mismatches" in r.output
        assert "0 without" in r.output and "wrote" not in r.output and path.read_bytes() == before
    r = _run("v1", "align", shared_data(SAMPLE) / METADATA, "--json")
    assert r.exit_code == 0 and '"mismatches": {' in r.output and '"unmatched": 0' in r.output


def test_cli_reports_mismatches_and_patches_without_counterpart(official, tables, tmp_path):
    rows = official.to_pylist()
    rows[0]["s1_name"] = "S1A_IW_GRDH_1SDV_20170613T165043_33UUP_37_88"
    rows[1]["contains_seasonal_snow"] = True
    rows.append({**rows[2], "patch_id": f"{DEMO_PRODUCT}_00_00"})
    path = tmp_path / "meta.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=official.schema), path)
    out = tmp_path / "out.parquet"
    r = _run("v1", "align", path, "--out", out)
    assert r.exit_code == 1
    assert "25 patches, 24 with a v1 counterpart, 1 without" in r.output
    assert f"without a v1 counterpart, e.g. {DEMO_PRODUCT}_00_00" in r.output
    assert "checked s1_name: 1 mismatch\n" in r.output
    assert (
        f"{rows[0]['patch_id']}: table 'S1A_IW_GRDH_1SDV_20170613T165043_33UUP_37_88', "
        f"v1 '{official.column('s1_name')[0].as_py()}'" in r.output
    )
    assert (
        "checked contains_seasonal_snow: 1 mismatch" in r.output
        and "checked s2v1_name: 0 mismatches" in r.output
    )
    assert "2 value(s)" in r.output and "nothing written" in r.output and not out.exists()
    r = _run("v1", "align", path, "--out", path, "--replace")  # in place, named explicitly
    assert r.exit_code == 0, r.output
    fixed = pq.read_table(path)
    for name in CHECKED:
        assert fixed.column(name).to_pylist()[:24] == official.column(name).to_pylist()
    assert fixed.column("s1_name")[24].as_py() == rows[2]["s1_name"]  # no counterpart: kept
    assert _run("v1", "align", tmp_path / "none.parquet").exit_code == 1
    (tmp_path / "x.parquet").write_bytes(b"junk")
    r = _run("v1", "align", tmp_path / "x.parquet")
    assert r.exit_code == 1 and "not a readable parquet file" in r.output
    pq.write_table(pa.table({"id": ["a"]}), tmp_path / "noid.parquet")
    r = _run("v1", "align", tmp_path / "noid.parquet")
    assert r.exit_code == 1 and "has no patch_id column" in r.output


def test_align_table_refuses_an_incomparable_column(tables):
    t = pa.table({"patch_id": [f"{DEMO_PRODUCT}_0_0"], "contains_seasonal_snow": [[1]]})
    with pytest.raises(InvalidParameterError, match="column contains_seasonal_snow is list"):
        align_table(t, tables=tables)


# --------------------------------------------------------------------------------------------
# The metadata stage with v1 alignment (a synthetic work store and v1 tables in v1's format)
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo_v1(reference_work, tmp_path_factory):
    """v1 tables for the demo's T33UUP product of 2017-06-13: all cells but (3, 3), written v1's way."""
    cells = [(x, y) for x in range(4) for y in range(4) if (x, y) != (3, 3)]
    rows = [
        (
            f"S1B_IW_GRDH_1SDV_20170612T165809_33UUP_{x}_{y}",
            f"S2A_MSIL2A_20170613T101032_{x}_{y}",
            "Serbia",
            "Summer",
        )
        for x, y in cells
    ]
    snow = ["S2A_MSIL2A_20170613T101032_0_0", "S2A_MSIL2A_20170613T101032_1_1"]
    cloud = ["S2A_MSIL2A_20170613T101032_1_1", "S2A_MSIL2A_20170613T101032_2_0"]
    return _write_v1_folder(tmp_path_factory.mktemp("demo-v1") / "tables", rows, snow, cloud)


def _candidates(reference_work):
    """Valid, labelled patches of the work store: patch_id → (SCL snow, SCL cloud/shadow, stage s1_name)."""
    out = {}
    for store in find_stores(reference_work):
        p = store.table("patches.parquet").to_pylist()
        lab = store.table("labels.parquet").to_pylist()
        s1 = store.table("s1.parquet").to_pylist()
        for a, b, c in zip(p, lab, s1, strict=True):
            if a["valid"] and b["label_status"] == "labeled":
                out[a["patch_id"]] = (
                    a["snow_fraction"] > 0,
                    a["cloud_fraction"] + a["shadow_fraction"] > 0,
                    c["s1_name"],
                )
    return out


def _kosovo_file(reference_work, path):
    """Country polygons: Kosovo over the demo's T33UUP patches, Serbia beside it (two of reBEN's ten)."""
    store = next(s for s in find_stores(reference_work) if s.name.startswith(DEMO_PRODUCT))
    t = store.table("patches.parquet")
    left, top = min(t.column("left").to_pylist()), max(t.column("top").to_pylist())
    right, bottom = max(t.column("right").to_pylist()), min(t.column("bottom").to_pylist())
    kosovo = shapely.box(left - 100, bottom - 100, right + 100, top + 100)
    serbia = shapely.box(right + 100, bottom - 100, right + 50_000, top + 100)
    gdf = gpd.GeoDataFrame(
        {"NAME": ["Kosovo", "Serbia"]}, geometry=[kosovo, serbia], crs=f"EPSG:{store.grid.epsg}"
    )
    gdf.to_file(path, driver="GPKG")
    return path


def _v1_paired_copy(reference_work, path):
    """A copy of the work store whose s1 stage names every patch's v1 partner (what ``rsprep s1 --s1-v1``
    records; the demo has no real v1 S1 patches on its grid), the demo's other products unpaired."""
    shutil.copytree(reference_work, path, symlinks=True)
    for store in find_stores(path):
        t = store.table("s1.parquet")
        names = [
            f"S1B_IW_GRDH_1SDV_20170612T165809_33UUP_{int(x)}_{int(y)}"
            if store.name.startswith(DEMO_PRODUCT)
            else None
            for x, y in (pid.split("_")[-2:] for pid in t.column("patch_id").to_pylist())
        ]
        t = t.set_column(t.column_names.index("s1_name"), "s1_name", pa.array(names, pa.string()))
        pq.write_table(t, store.path / "s1.parquet")
    return path


def test_metadata_with_v1_alignment_refuses_other_s1_pixels(reference_work, demo_v1, tmp_path):
    # the demo's s1 stage paired synthetic S1 scenes: v1's names would label other pixels
    r = _run("metadata", "--work", reference_work, "--out", tmp_path / "ds", "--v1-alignment",
             "--v1-tables", demo_v1)  # fmt: skip
    assert r.exit_code == 1
    assert "hold S1 pixels of another S1 patch than their BigEarthNet v1 partner" in r.output
    assert "rsprep s1 --s1-v1 DIR" in r.output and not (tmp_path / "ds").exists()


def test_metadata_with_v1_alignment(reference_work, demo_v1, tmp_path):
    work = _v1_paired_copy(reference_work, tmp_path / "work")
    countries = _kosovo_file(reference_work, tmp_path / "countries.gpkg")
    ds = tmp_path / "ds"
    r = _run(
        "metadata", "--work", work, "--out", ds, "--v1-alignment", "--v1-tables", demo_v1,
        "--countries", countries, "--country-candidates", "Kosovo,Serbia",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    candidates = _candidates(reference_work)
    expected = {pid for pid in candidates if pid.startswith(DEMO_PRODUCT + "_") and not pid.endswith("_3_3")}
    assert expected and len(expected) < len(candidates)
    assert f"({len(candidates) - len(expected)} without a v1 counterpart)" in r.output
    meta = pq.read_table(ds / METADATA).to_pylist() + pq.read_table(ds / FLAGGED).to_pylist()
    assert {row["patch_id"] for row in meta} == expected
    flagged = {row["patch_id"] for row in pq.read_table(ds / FLAGGED).to_pylist()}
    for row in meta:
        x, y = row["patch_id"].split("_")[-2:]
        v1 = f"S2A_MSIL2A_20170613T101032_{x}_{y}"
        assert row["s2v1_name"] == v1
        assert row["s1_name"] == f"S1B_IW_GRDH_1SDV_20170612T165809_33UUP_{x}_{y}"
        assert row["contains_seasonal_snow"] == ((x, y) in (("0", "0"), ("1", "1")))
        assert row["contains_cloud_or_shadow"] == ((x, y) in (("1", "1"), ("2", "0")))
        assert (row["patch_id"] in flagged) == (
            row["contains_seasonal_snow"] or row["contains_cloud_or_shadow"]
        )
        assert row["country"] == "Kosovo"  # from the polygons, not v1's "Serbia"
    side = pq.read_table(ds / SIDECAR)
    assert side.column_names[-5:] == [
        "scl_contains_seasonal_snow", "scl_contains_cloud_or_shadow", "v1_country", "v1_season", "geometry"
    ]  # fmt: skip
    for row in side.to_pylist():
        scl_snow, scl_cloud, _ = candidates[row["patch_id"]]
        assert (row["scl_contains_seasonal_snow"], row["scl_contains_cloud_or_shadow"]) == (
            scl_snow,
            scl_cloud,
        )
        assert (row["v1_country"], row["v1_season"], row["country"]) == ("Serbia", "Summer", "Kosovo")
    record = json.loads((ds / "build.json").read_text())["stages"]["metadata"]
    assert record["v1"]["alignment"] is True and record["v1"]["matched"] == len(expected)
    assert record["options"]["v1_alignment"] is True


def test_metadata_v1_alignment_keep_unpaired_and_errors(reference_work, demo_v1, tmp_path):
    work = _v1_paired_copy(reference_work, tmp_path / "work")
    r = build_metadata(
        work,
        tmp_path / "ds",
        MetadataOptions(v1_alignment=True, v1_tables=demo_v1, keep_unpaired=True),
    )
    candidates = _candidates(reference_work)
    side = {row["patch_id"]: row for row in pq.read_table(tmp_path / "ds" / SIDECAR).to_pylist()}
    assert set(side) == set(candidates) and r.counts["no_s1_partner"] == 0
    for pid, row in side.items():
        if row["s2v1_name"] is None:  # no counterpart: no S1 partner, the SCL flags
            assert row["s1_name"] is None and row["v1_country"] is None
            assert (row["contains_seasonal_snow"], row["contains_cloud_or_shadow"]) == candidates[pid][:2]
    with pytest.raises(
        WorkStoreError, match=r"none of the .* valid, labelled patches has a BigEarthNet v1 counterpart"
    ):
        build_metadata(reference_work, tmp_path / "ds2", MetadataOptions(v1_alignment=True))
    assert not (tmp_path / "ds2").exists()
    with pytest.raises(InvalidParameterError, match=r"--v1 .* and v1 alignment both give s2v1_name"):
        build_metadata(reference_work, tmp_path / "ds3", MetadataOptions(v1_alignment=True, v1=demo_v1))
    with pytest.raises(InvalidParameterError, match="only read with v1 alignment"):
        build_metadata(reference_work, tmp_path / "ds3", MetadataOptions(v1_tables=demo_v1))


def test_the_reben_recipe_aligns_with_v1_and_the_others_do_not():
    from rsprep.build.recipe import load_recipe

    assert load_recipe("reben").metadata_options(countries=None, v1=None).v1_alignment is True
    for name in ("demo", "ben43-600m-blocks"):
        assert load_recipe(name).metadata_options(countries=None, v1=None).v1_alignment is False


def test_a_reben_build_refuses_v1_with_alignment_before_any_work(tmp_path):
    from rsprep.build.recipe import load_recipe
    from rsprep.build.run import prepare

    with pytest.raises(InvalidParameterError, match=r"--v1 .* and v1 alignment both give s2v1_name"):
        prepare(
            load_recipe("reben"), s2=tmp_path / "s2", s1=tmp_path / "s1", clc=tmp_path / "clc.gpkg",
            countries=tmp_path / "c.gpkg", v1=tmp_path / "v1", out=tmp_path / "out",
        )  # fmt: skip
    assert not (tmp_path / "out").exists()
