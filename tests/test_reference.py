"""``rsprep reference``: CLC reading, rasterization and the label rule, on real CLC and synthetic truth."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pyogrio
import pytest
import rasterio
import shapely

from rsprep.core import kernels
from rsprep.core.grid import TileGrid
from rsprep.core.labels import label_patches
from rsprep.core.nomenclature import BEN19, BEN43, CLC_LEVEL3, get
from rsprep.core.rasterize import pixel_arrays, rasterize_patches
from rsprep.errors import InputNotFoundError, InvalidParameterError
from rsprep.inputs.clc import ClcError, open_clc, parse_codes, read_clc
from rsprep.stages.patch import patch_product
from rsprep.stages.reference import ReferenceOptions, reference_store, reference_work
from rsprep.store.workstore import LABELS_TABLE, REFERENCE_ARRAYS, TileStore

REAL_MAP = "reben-v2-patches/Reference_Maps"


# -- nomenclature ------------------------------------------------------------------------------
def test_ben19_table_matches_design():
    assert BEN19.size == 19 and len(set(BEN19.classes)) == 19
    assert BEN19.class_of(211) == BEN19.class_of(213) == "Arable land"
    assert BEN19.class_of(241) == "Permanent crops"
    assert BEN19.class_of(333) == BEN19.class_of(321) == "Natural grassland and sparsely vegetated areas"
    for unlabeled in (0, 122, 123, 124, 131, 132, 133, 141, 142, 332, 334, 335, 423, 999):
        assert BEN19.class_of(unlabeled) is None
    mapped = {c for codes in BEN19.codes for c in codes}
    assert len(mapped) == 44 - 12 and mapped < set(CLC_LEVEL3)
    assert list(BEN19.alphabetical) == sorted(BEN19.classes)
    assert BEN19.order("paper") == BEN19.classes and BEN19.classes[0] == "Urban fabric"


def rasterize_grid(
    geometries: np.ndarray, values: np.ndarray, *, ulx: float, uly: float, res: float, width: int, height: int
) -> np.ndarray:
    """Our rasterizer on a plain ``height x width`` grid (one patch), to compare with GDAL's."""
    side = max(width, height)
    xs, ys, ring_off, part_off, part_values = pixel_arrays(geometries, values, ulx, uly, res)
    out = kernels.burn_polygons(xs, ys, ring_off, part_off, part_values, side, 1, fill=0, dtype=np.uint16)
    return np.ascontiguousarray(out[0, :height, :width])


def test_ben43_is_bigearthnet_v1():
    assert BEN43.size == 43 and BEN43.class_of(335) is None
    assert BEN43.class_of(324) == "Transitional woodland/shrub" and BEN43.class_of(412) == "Peatbogs"
    assert get("BEN43") is BEN43
    with pytest.raises(InvalidParameterError, match="ben19"):
        get("ben20")


# -- the label rule on a real reBEN reference map ------------------------------------------------
def test_real_reference_map_gives_the_official_labels(shared_data):
    root = shared_data(REAL_MAP)
    tif = next(root.rglob("*_T33UUP_26_57_reference_map.tif"))
    with rasterio.open(tif) as ds:
        data = ds.read(1)
    assert set(np.unique(data)) == {211, 231, 311, 313}
    labels = label_patches(data[None], BEN19)
    assert labels.labels(0) == ["Arable land", "Broad-leaved forest", "Mixed forest", "Pastures"]
    assert labels.unlabeled_fraction[0] == 0.0 and labels.rule_passed[0]
    # the paper-order vector: Arable land (2), Pastures (4), Broad-leaved (8), Mixed (10)
    assert np.flatnonzero(labels.multi_hot("paper")[0]).tolist() == [2, 4, 8, 10]


def test_label_rule_threshold_is_strict():
    maps = np.full((3, 10, 10), 211, np.uint16)
    maps[0, :2, :5] = 0  # 10 % no polygon
    maps[1, :5, :5] = 999  # exactly 25 % CLC NODATA: not labelled (rule is < 0.25)
    maps[2, :, :] = 523
    maps[2, 0, 0] = 335  # glacier: UNLABELED in both nomenclatures
    lab = label_patches(maps, BEN19)
    np.testing.assert_allclose(lab.unlabeled_fraction, [0.10, 0.25, 0.01])
    assert lab.rule_passed.tolist() == [True, False, True]
    assert lab.labels(2) == ["Marine waters"]
    assert label_patches(maps, BEN43).labels(2) == ["Sea and ocean"]


# -- real CLC files: reading, reprojection, rasterization ------------------------------------------
def _grid_around(source, epsg):
    from pyproj import Transformer

    info = pyogrio.read_info(source.dataset, layer=source.layer)
    b = Transformer.from_crs(source.crs, epsg, always_xy=True).transform_bounds(*info["total_bounds"])
    ulx = np.floor(b[0] / 1200) * 1200 - 1200
    uly = np.ceil(b[3] / 1200) * 1200 + 1200
    n = int(max(b[2] - ulx, uly - b[1]) // 1200) + 2
    return ulx, uly, n, info["features"]


@pytest.mark.parametrize(
    "rel, kwargs, layer, field, epsg",
    [
        ("clc-malta/clc/clc2018_mt.gpkg.zip", {}, "clc18_mt", "CODE_18", 32633),
        ("clc-malta/clc/clc2012_mt.gdb.zip", {"code_field": "code_12"}, "clc12_MT", "CODE_12", 32633),
        ("clc-malta/clc2024/CLC2024_MT.zip", {}, "clc18_mt", "code_18", 32633),
        ("clc-lanjaron/clc.gpkg", {}, "clc", "CODE_18", 32630),
    ],
)
def test_real_clc_reads_reprojects_and_rasterizes_without_loss(shared_data, rel, kwargs, layer, field, epsg):
    source = open_clc(shared_data(rel), **kwargs)
    assert (source.layer, source.code_field) == (layer, field)  # change layers (cha*) are skipped
    ulx, uly, n, features = _grid_around(source, epsg)
    polys = read_clc(source, (ulx, uly - n * 1200, ulx + n * 1200, uly), f"EPSG:{epsg}")
    assert len(polys.codes) == features and polys.skipped_empty == 0
    maps = rasterize_patches(polys.geometries, polys.codes, ulx=ulx, uly=uly, res=10, p=120, n=n)
    codes, counts = np.unique(maps, return_counts=True)
    raster_area = dict(zip(codes.tolist(), (counts * 100.0).tolist(), strict=True))
    assert set(raster_area) - {0} == set(np.unique(polys.codes).tolist())
    for code in np.unique(polys.codes):
        geoms = polys.geometries[polys.codes == code]
        area, perimeter = shapely.area(geoms).sum(), shapely.length(geoms).sum()
        # pixel-centre rasterization errs along edges only: far below one pixel row of perimeter
        assert abs(raster_area[int(code)] - area) <= 0.1 * perimeter * 10, code
    total = shapely.area(polys.geometries).sum()
    assert abs(sum(v for c, v in raster_area.items() if c) - total) / total < 1e-3


def test_lanjaron_matches_the_official_clc_raster(shared_data):
    root = shared_data("clc-lanjaron")
    with rasterio.open(root / "clc.tif") as ds:
        official, t, crs, bounds, nodata = ds.read(1), ds.transform, ds.crs.to_wkt(), ds.bounds, ds.nodata
    source = open_clc(root / "clc.gpkg")
    polys = read_clc(source, tuple(bounds), crs)  # EPSG:3042 (northing-easting axis order)
    ours = rasterize_grid(
        polys.geometries,
        polys.codes,
        ulx=t.c,
        uly=t.f,
        res=t.a,
        width=official.shape[1],
        height=official.shape[0],
    )
    valid = official != nodata
    agreement = float((ours[valid] == official[valid]).mean())
    print(f"clc-lanjaron: {agreement:.4%} of {valid.sum()} official 25 m pixels agree")
    assert agreement >= 0.90
    assert agreement == 1.0  # measured: the official raster follows the same pixel-centre rule


# -- errors that name the problem -----------------------------------------------------------------
def _write_gpkg(path: Path, codes, crs="EPSG:3035", field="Code_18", geoms=None):
    import geopandas as gpd

    if geoms is None:
        geoms = [
            shapely.box(4.5e6 + i * 1000, 3.0e6, 4.5e6 + (i + 1) * 1000, 3.001e6) for i in range(len(codes))
        ]
    gpd.GeoDataFrame({field: codes}, geometry=geoms, crs=crs).to_file(path, layer="clc", driver="GPKG")
    return path


def test_missing_code_field_lists_what_is_there(shared_data, tmp_path):
    with pytest.raises(ClcError, match=r"no layer has a CLC code field 'code_18'.*--code-field.*CODE_12"):
        open_clc(shared_data("clc-malta/clc/clc2012_mt.gdb.zip"))
    with pytest.raises(ClcError, match="lanjaron: id_dera"):
        open_clc(shared_data("clc-lanjaron/clc.gpkg"), layer="lanjaron")
    with pytest.raises(ClcError, match="no layer 'nope'"):
        open_clc(shared_data("clc-lanjaron/clc.gpkg"), layer="nope")
    with pytest.raises(InputNotFoundError, match="does not exist"):
        open_clc(tmp_path / "missing.gpkg")
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    with pytest.raises(ClcError, match="not a readable zip"):
        open_clc(tmp_path / "junk.zip")


def test_codes_outside_the_nomenclature_are_reported_with_counts(tmp_path):
    path = _write_gpkg(tmp_path / "bad.gpkg", ["211", "2111", "2111", None, " 312 ", "abc"])
    src = open_clc(path)
    with pytest.raises(ClcError) as info:
        read_clc(src, (4.4e6, 2.9e6, 4.6e6, 3.1e6), "EPSG:3035")
    msg = str(info.value)
    assert "'2111' (2 polygons)" in msg and "<null> (1 polygon)" in msg and "'abc' (1 polygon)" in msg
    assert "bad.gpkg" in msg and "312" not in msg.split(":", 2)[-1].split(";")[0].replace("'2111'", "")
    np.testing.assert_array_equal(
        parse_codes(np.array(["211", 523, 999.0, b"111"], object), "x"), [211, 523, 999, 111]
    )


def test_untransformable_or_missing_crs(tmp_path):
    eng = (
        'ENGCRS["site grid",EDATUM["local"],CS[Cartesian,2],'
        'AXIS["x",east],AXIS["y",north],LENGTHUNIT["metre",1]]'
    )
    src = open_clc(_write_gpkg(tmp_path / "eng.gpkg", ["211"], crs=eng))
    with pytest.raises(ClcError, match="cannot transform between the CLC CRS"):
        read_clc(src, (300000, 5300000, 301200, 5301200), "EPSG:32633")
    shp = tmp_path / "nocrs.shp"
    _write_gpkg(tmp_path / "tmp.gpkg", ["211"])
    gdf = pyogrio.read_dataframe(tmp_path / "tmp.gpkg")
    gdf.to_file(shp)
    for sidecar in tmp_path.glob("nocrs.prj"):
        sidecar.unlink()
    with pytest.raises(ClcError, match="no coordinate reference system; give --clc-crs"):
        open_clc(shp)
    src = open_clc(shp, crs="EPSG:3035")
    assert {p.suffix for p in src.files} >= {".shp", ".dbf", ".shx"}
    polys = read_clc(src, (4.4e6, 2.9e6, 4.6e6, 3.1e6), "EPSG:3035")
    assert polys.codes.tolist() == [211]


# -- the stage on synthetic archives ---------------------------------------------------------------
@pytest.fixture(scope="module")
def work(archive, manifest, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("refwork")
    for prod in manifest["products"]:
        patch_product(archive / prod["path"], out=out)
    return out


def _truth_labels(counts: dict, nomenclature=BEN19):
    maps = np.zeros((1, 1, sum(counts.values())), np.uint16)
    i = 0
    for code, k in counts.items():
        maps[0, 0, i : i + k] = int(code)
        i += k
    return label_patches(maps, nomenclature)


def test_reference_agrees_with_synthetic_truth(work, archive, manifest):
    clc = archive / manifest["clc"]["path"]
    results, source = reference_work(work, clc, workers=1)
    assert all(r.status == "done" for r in results) and source.code_field == "Code_18"
    tiles = {t["name"]: t for t in manifest["tiles"]}
    agree = total = same_labels = patches = 0
    for prod in manifest["products"]:
        store = TileStore.open(work / prod["patch_prefix"])
        table = pq.read_table(store.path / LABELS_TABLE).to_pylist()
        maps = store.zarr(REFERENCE_ARRAYS)["reference_map"]
        assert maps.shape == (store.grid.count, 120, 120) and maps.dtype == np.uint16
        assert maps.metadata.dimension_names == ("patch", "y", "x")
        maps = maps[:]
        truth = tiles[prod["tile"]]["patch_codes"]
        for row in table:
            x, y = store.grid.xy(row["index"])
            counts = truth[f"{x}_{y}"]
            got = dict(zip(*np.unique(maps[row["index"]], return_counts=True), strict=True))
            agree += sum(min(k, int(got.get(int(c), 0))) for c, k in counts.items())
            total += 120 * 120
            want = _truth_labels(counts)
            patches += 1
            if not prod["quality_passed"]:
                assert row["label_status"] == "quality_failed" and row["labels"] is None
                continue
            expect = want.labels(0) if want.rule_passed[0] else None
            same_labels += row["labels"] == expect
            assert abs(row["unlabeled_fraction"] - want.unlabeled_fraction[0]) < 0.01
            assert row["clc_codes"] == sorted(int(c) for c in got)
            assert sum(row["clc_code_counts"]) == 120 * 120
            if row["labels"] is not None:
                assert row["label_status"] == "labeled"
                hot = row["multi_hot_alphabetical"]
                assert [c for c, h in zip(BEN19.alphabetical, hot, strict=True) if h] == row["labels"]
                assert (
                    sorted(c for c, h in zip(BEN19.classes, row["multi_hot_paper"], strict=True) if h)
                    == row["labels"]
                )
    assert agree / total > 0.999
    quality_ok = sum(1 for p in manifest["products"] if p["quality_passed"]) * 16
    assert same_labels >= 0.95 * quality_ok, (same_labels, quality_ok)
    meta = json.loads(
        pq.read_schema(work / manifest["products"][0]["patch_prefix"] / LABELS_TABLE).metadata[
            b"rsprep:labels"
        ]
    )
    assert meta["class_orders"]["paper"] == list(BEN19.classes)
    assert meta["class_orders"]["alphabetical"] == sorted(BEN19.classes)


def test_reference_skips_when_current_and_redoes_on_change(work, archive, manifest, tmp_path):
    clc = tmp_path / "clc.gpkg"
    shutil.copy2(archive / manifest["clc"]["path"], clc)
    store = TileStore.open(work / manifest["products"][0]["patch_prefix"])
    source = open_clc(clc)
    first = reference_store(store, source, force=True)
    before = (store.path / LABELS_TABLE).read_bytes()
    maps_before = store.zarr(REFERENCE_ARRAYS)["reference_map"][:]
    assert reference_store(store, source).status == "skipped"
    os.utime(clc, ns=(1, 1))  # a touched CLC file invalidates the stage
    again = reference_store(TileStore.open(store.path), open_clc(clc))
    assert again.status == "done" and again.labeled == first.labeled
    assert (store.path / LABELS_TABLE).read_bytes() == before  # deterministic
    np.testing.assert_array_equal(store.zarr(REFERENCE_ARRAYS)["reference_map"][:], maps_before)
    v43 = reference_store(TileStore.open(store.path), open_clc(clc), ReferenceOptions(nomenclature="ben43"))
    assert v43.status == "done"
    schema = pq.read_schema(store.path / LABELS_TABLE)
    assert schema.field("multi_hot_clc").type.list_size == 43
    with pytest.raises(InvalidParameterError, match="max-unlabeled"):
        reference_store(store, source, ReferenceOptions(max_unlabeled=1.5))


def test_interrupted_reference_keeps_the_previous_outputs(work, archive, manifest, monkeypatch):
    store = TileStore.open(work / manifest["products"][1]["patch_prefix"])
    source = open_clc(archive / manifest["clc"]["path"])
    reference_store(store, source, force=True)
    before = (store.path / LABELS_TABLE).read_bytes()

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr("pyarrow.parquet.write_table", boom)
    with pytest.raises(KeyboardInterrupt):
        reference_store(store, source, force=True)
    assert (store.path / LABELS_TABLE).read_bytes() == before
    assert not [p for p in store.path.iterdir() if p.name.startswith(".")]
    assert store.zarr(REFERENCE_ARRAYS)["reference_map"].shape[0] == store.grid.count


def test_clc_that_misses_the_tile_warns_and_leaves_everything_unlabeled(work, manifest, tmp_path):
    far = _write_gpkg(tmp_path / "far.gpkg", ["211"])  # a polygon in Spain's part of EPSG:3035
    results, _ = reference_work(work / manifest["products"][0]["patch_prefix"], far, force=True)
    (r,) = results
    assert r.status == "done" and r.labeled == 0 and r.polygons == 0
    assert "no CLC polygon" in r.warnings[0] and "all 16 patches are unlabeled" in r.warnings[0]
    table = pq.read_table(Path(r.store) / LABELS_TABLE)
    assert set(table["label_status"].to_pylist()) == {"unlabeled_fraction_too_high"}
    assert table["unlabeled_fraction"].to_pylist() == [1.0] * 16


def test_grid_of_a_real_tile_in_another_crs(shared_data):
    # T33SVV-like grid over Malta (ED50 / UTM 33N data onto WGS 84 / UTM 33N patches)
    source = open_clc(shared_data("clc-malta/clc/clc2018_mt.gpkg.zip"))
    from rsprep.stages.reference import grid_maps

    grid = TileGrid(
        "T33SVV", 32633, 399960.0, 4000020.0, 109800.0, 1200, 91, "S2X_MSIL2A_X_N0000_R000_T33SVV"
    )
    maps, n = grid_maps(source, grid)
    assert maps.shape == (8281, 120, 120) and n > 100
    lab = label_patches(maps, BEN19)
    assert 0 < lab.rule_passed.sum() < 8281  # land and sea patches labelled, the far corner is not covered
