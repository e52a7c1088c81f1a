"""`rsprep synth`: files that GDAL, pyogrio and our reader open, consistent with synth.json's truth."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import rasterio

from rsprep.core.bands import SPECTRAL_BANDS
from rsprep.core.grid import parse_patch_id
from rsprep.errors import InvalidParameterError, OutputExistsError
from rsprep.inputs.safe import read_product
from rsprep.synth import SynthConfig, synthesize
from rsprep.synth.spectra import CLC_CODES

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"
UNLABELED_CODES = {122, 123, 124, 131, 132, 133, 141, 142, 332, 334, 335, 423, 999}


def _products(archive: Path) -> list[Path]:
    return sorted((archive / "s2").glob("*.SAFE"))


def _hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _read(path: Path | str) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(path) as ds:
            return ds.read(1)


# --------------------------------------------------------------------------------------------
# Layout and formats
# --------------------------------------------------------------------------------------------
def test_manifest_matches_schema(manifest):
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((SCHEMAS / "synth-manifest.schema.json").read_text())
    jsonschema.validate(manifest, schema)


def test_default_archive_layout(archive, manifest):
    assert [t["name"] for t in manifest["tiles"]] == ["T33UUP", "T33UVP"]
    uup, uvp = manifest["tiles"]
    assert (uup["ulx"], uup["uly"]) == (300_000, 5_400_000)
    assert uup["size_m"] == 4 * 1200 + 600 and uup["patches_per_side"] == 4
    assert 0 < uvp["ulx"] - uup["ulx"] < uup["size_m"]  # neighbours overlap
    assert (uvp["ulx"] - uup["ulx"]) % 60 == 0
    assert len(manifest["products"]) == 4
    first = manifest["products"][0]
    assert first["product_uri"].startswith("S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_")
    assert sorted(first["patches"])[0] == "S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_0_0"
    for p in manifest["products"]:
        assert (archive / p["path"]).is_dir()
    for s in manifest["s1"]:
        for f in s["files"].values():
            assert (archive / f).is_file()
    assert (archive / manifest["clc"]["path"]).is_file()
    assert not list(archive.parent.glob(".archive.tmp-*"))


def test_gdal_sentinel2_driver_opens_every_product(archive):
    expected = {
        "10m": ["B4", "B3", "B2", "B8"],
        "20m": ["B5", "B6", "B7", "B8A", "B11", "B12"],
        "60m": ["B1", "B9"],
    }
    for safe in _products(archive):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with rasterio.open(safe / "MTD_MSIL2A.xml") as ds:
                subs = ds.subdatasets
                tags = ds.tags()
            assert tags["PRODUCT_URI"] == safe.name
            by_res = {s.split(":")[-2]: s for s in subs}
            assert {"10m", "20m", "60m", "TCI"} <= set(by_res)
            for res, bands in expected.items():
                with rasterio.open(by_res[res]) as sd:
                    names = [d.split(",")[0] for d in sd.descriptions]
                    assert names[: len(bands)] == bands
                    assert {"AOT", "WVP"} <= set(names)
                    if res != "10m":
                        assert {"SCL", "CLD", "SNW"} <= set(names)
                    assert sd.crs.to_epsg() == 32633
                    data = sd.read(1)
                    assert data.dtype == np.uint16 and data.max() > 0


def test_our_reader_reads_every_product_without_problems(archive, manifest):
    for doc in manifest["products"]:
        p = read_product(archive / doc["path"])
        assert p.problems == []
        assert p.product_uri == doc["product_uri"]
        assert p.patch_prefix == doc["patch_prefix"]
        assert p.tile_id == doc["tile"]
        assert p.processing_baseline == doc["baseline"]
        assert set(p.add_offsets[b] for b in SPECTRAL_BANDS) == {doc["boa_add_offset"]}
        assert p.offsets_in_metadata == (doc["boa_add_offset"] != 0)
        assert p.quality_passed == doc["quality_passed"]
        assert p.failed_quality_checks == doc["failed_checks"]
        assert p.geocoding[10].ulx == next(t["ulx"] for t in manifest["tiles"] if t["name"] == doc["tile"])
        assert p.band_file("B02").actual_shape == (540, 540)
        assert p.band_file("B01").actual_shape == (90, 90)
        assert p.band_file("SCL").actual_shape == (270, 270)


def test_product_roles(manifest):
    roles = [tuple(p["roles"]) for p in manifest["products"]]
    assert roles == [(), (), ("old-baseline",), ("failed-quality",)]
    old = manifest["products"][2]
    assert old["baseline"] == "02.05" and old["boa_add_offset"] == 0 and "_N0205_" in old["product_uri"]
    assert manifest["products"][3]["failed_checks"] == ["GEOMETRIC_QUALITY"]
    assert manifest["products"][0]["season"] == "summer" and manifest["products"][2]["season"] == "winter"


def test_band_files_are_lossless_jpeg2000(archive):
    f = next(_products(archive)[0].glob("GRANULE/*/IMG_DATA/R10m/*_B02_10m.jp2"))
    assert f.read_bytes()[:12] == b"\x00\x00\x00\x0cjP  \r\n\x87\n"
    with rasterio.open(f) as ds:
        assert ds.driver == "JP2OpenJPEG" and ds.dtypes[0] == "uint16"
        assert ds.crs.to_epsg() == 32633 and ds.transform.a == 10 and ds.transform.c == 300_000


def test_clc_geopackage_like_the_real_database(archive, manifest):
    path = archive / manifest["clc"]["path"]
    assert path.name == "U2018_CLC2018_V2020_20u1.gpkg"
    assert [tuple(x) for x in pyogrio.list_layers(path)] == [("U2018_CLC2018_V2020_20u1", "MultiPolygon")]
    info = pyogrio.read_info(path)
    assert info["crs"] == "EPSG:3035"
    assert list(info["fields"]) == ["ID", "Code_18", "Remark", "Area_Ha"]
    df = pyogrio.read_dataframe(path)
    assert df["Code_18"].map(type).eq(str).all()
    codes = set(df["Code_18"].astype(int))
    assert codes <= set(CLC_CODES)
    assert 523 in codes and codes & UNLABELED_CODES
    assert len(df) == manifest["clc"]["n_polygons"]
    assert df.geometry.is_valid.all()
    assert np.allclose(df.geometry.area / 10_000, df["Area_Ha"], rtol=1e-6)


def test_clc_contains_999_and_a_realistic_mix_at_larger_sizes(tmp_path):
    m = synthesize(
        tmp_path / "a", SynthConfig(tiles=2, patches_per_side=12, acquisitions=1, s1=False, content="gtiff")
    )
    codes = {int(c) for c in m["clc"]["polygons_per_code"]}
    assert 999 in codes and 523 in codes
    assert len(codes & UNLABELED_CODES) >= 3
    assert len(codes) >= 20


def test_countries_file(archive, manifest):
    df = pyogrio.read_dataframe(archive / manifest["countries"]["path"])
    assert df.crs.to_epsg() == 4326
    assert list(df["NAME"]) == ["Austria", "Germany", "Czechia", "Switzerland"]
    assert df.geometry.is_valid.all()


def test_s1_scenes(archive, manifest):
    from pyproj import Transformer

    scenes = manifest["s1"]
    assert scenes[0]["name"].startswith("S1A_IW_GRDH_1SDV_20170613T165043_")
    assert {s["crs"] for s in scenes} == {"EPSG:32633", "EPSG:4326"}
    for s in scenes:
        for pol, f in s["files"].items():
            with rasterio.open(archive / f) as ds:
                assert ds.dtypes[0] == "float32" and ds.count == 1
                assert ds.tags()["POLARISATION"] == pol and ds.tags()["UNIT"] == "dB"
                a = ds.read(1, masked=True)
                assert -40 < float(a.mean()) < 5
                if s["nodata"] is None:
                    assert np.isnan(ds.nodata)
                else:
                    assert ds.nodata == -99.0
                # sample a grid of points inside every tile
                to_scene = Transformer.from_crs("EPSG:32633", ds.crs, always_xy=True)
                inside = []
                for t in manifest["tiles"]:
                    g = np.linspace(0.01, 0.99, 12) * t["size_m"]
                    xs, ys = np.meshgrid(t["ulx"] + g, t["uly"] - g)
                    sx, sy = to_scene.transform(xs.ravel(), ys.ravel())
                    vals = np.array([v[0] for v in ds.sample(zip(sx, sy, strict=True))])
                    inside.append(~np.isnan(vals) & (vals != -99.0))
                inside = np.concatenate(inside)
                if s["full_coverage"]:
                    assert inside.all(), s["name"]
                else:  # its swath edge leaves part of the tiles uncovered
                    assert 0.01 < (~inside).mean() < 0.6, s["name"]
    # VH below VV on average, as for real backscatter
    vv = _read(archive / scenes[0]["files"]["VV"])
    vh = _read(archive / scenes[0]["files"]["VH"])
    ok = vv > -90
    assert vh[ok].mean() < vv[ok].mean()


# --------------------------------------------------------------------------------------------
# Truth recorded in synth.json agrees with the files
# --------------------------------------------------------------------------------------------
def _patch_views(a: np.ndarray, n: int, px: int) -> np.ndarray:
    return a[: n * px, : n * px].reshape(n, px, n, px).transpose(0, 2, 1, 3)


def test_patch_truth_matches_band_and_scl_files(archive, manifest):
    n = manifest["tiles"][0]["patches_per_side"]
    for doc in manifest["products"]:
        p = read_product(archive / doc["path"])
        nodata_any = np.zeros((n, n), dtype=bool)
        for b in SPECTRAL_BANDS:
            bf = p.band_file(b)
            nodata_any |= (_patch_views(_read(p.gdal_path(bf)), n, 1200 // bf.resolution) == 0).any(
                axis=(2, 3)
            )
        scl = _patch_views(_read(p.gdal_path(p.band_file("SCL"))), n, 60)
        b02 = _patch_views(_read(p.gdal_path(p.band_file("B02"))), n, 120)
        for pid, t in doc["patches"].items():
            _, x, y = parse_patch_id(pid)
            assert t["valid"] == (not nodata_any[y, x]), pid
            assert t["nodata_fraction"] == pytest.approx((b02[y, x] == 0).mean(), abs=1e-6)
            assert t["cloud_fraction"] == pytest.approx(np.isin(scl[y, x], (8, 9, 10)).mean(), abs=1e-6)
            assert t["shadow_fraction"] == pytest.approx((scl[y, x] == 3).mean(), abs=1e-6)
            assert t["snow_fraction"] == pytest.approx((scl[y, x] == 11).mean(), abs=1e-6)


def test_truth_has_clouds_snow_and_nodata_edges(manifest):
    prods = manifest["products"]
    assert all(any(t["cloud_fraction"] > 0 for t in p["patches"].values()) for p in prods)
    assert any(t["cloud_fraction"] == 0 for t in prods[0]["patches"].values())
    winter = [p for p in prods if p["season"] == "winter"]
    assert any(t["snow_fraction"] > 0 for p in winter for t in p["patches"].values())
    summer = [p for p in prods if p["season"] == "summer"]
    assert not any(t["snow_fraction"] > 0 for p in summer for t in p["patches"].values())
    edge = prods[1]  # the first datatake ends inside T33UVP
    assert edge["swath_edge"] and edge["tile"] == "T33UVP"
    invalid = [t for t in edge["patches"].values() if not t["valid"]]
    assert 0 < len(invalid) < len(edge["patches"])
    assert any(0 < t["nodata_fraction"] < 1 for t in invalid)


def test_code_truth_agrees_with_rasterized_clc(archive, manifest):
    """Rasterizing the EPSG:3035 CLC polygons back onto the tile grid reproduces the truth."""
    from rasterio.features import rasterize
    from rasterio.transform import from_origin

    df = pyogrio.read_dataframe(archive / manifest["clc"]["path"]).to_crs(32633)
    for tile in manifest["tiles"]:
        size = tile["size_m"] // 10
        grid = rasterize(
            zip(df.geometry, df["Code_18"].astype(int), strict=True),
            out_shape=(size, size),
            transform=from_origin(tile["ulx"], tile["uly"], 10, 10),
            fill=0,
            dtype="uint16",
        )
        n = tile["patches_per_side"]
        views = _patch_views(grid, n, 120)
        agree = total = 0
        for key, counts in tile["patch_codes"].items():
            x, y = map(int, key.split("_"))
            got = dict(zip(*np.unique(views[y, x], return_counts=True), strict=True))
            assert sum(counts.values()) == 120 * 120
            for code, k in counts.items():
                agree += min(k, int(got.get(int(code), 0)))
            total += 120 * 120
        assert agree / total > 0.999, tile["name"]


def test_truth_includes_unlabeled_and_outside_coverage_pixels(tmp_path):
    m = synthesize(
        tmp_path / "a", SynthConfig(tiles=2, patches_per_side=8, acquisitions=1, s1=False, content="gtiff")
    )
    all_codes = set()
    for t in m["tiles"]:
        for counts in t["patch_codes"].values():
            all_codes |= {int(c) for c in counts}
    assert 0 in all_codes  # outside CLC coverage
    assert 523 in all_codes
    assert all_codes & UNLABELED_CODES


def test_overlapping_tiles_agree_pixel_for_pixel(archive, manifest):
    p0, p1 = (
        read_product(archive / manifest["products"][i]["path"]) for i in (2, 3)
    )  # winter: no swath edge
    assert p0.tile_id == "T33UUP" and p1.tile_id == "T33UVP"
    offset_px = int(p1.geocoding[10].ulx - p0.geocoding[10].ulx) // 10
    a = _read(p0.gdal_path(p0.band_file("B08")))
    b = _read(p1.gdal_path(p1.band_file("B08")))
    # the old-baseline product has no +1000 offset: compare reflectance-equivalent values
    assert np.array_equal(a[:, offset_px:].astype(int) + 1000, b[:, : a.shape[1] - offset_px].astype(int))


def test_labels_are_learnable_from_spectra(archive, manifest):
    """Forest pixels are greener (NDVI) than urban pixels in a clear summer product."""
    from rasterio.features import rasterize
    from rasterio.transform import from_origin

    doc = manifest["products"][0]
    p = read_product(archive / doc["path"])
    red = _read(p.gdal_path(p.band_file("B04"))).astype(float) - 1000
    nir = _read(p.gdal_path(p.band_file("B08"))).astype(float) - 1000
    scl = np.repeat(np.repeat(_read(p.gdal_path(p.band_file("SCL"))), 2, 0), 2, 1)
    df = pyogrio.read_dataframe(archive / manifest["clc"]["path"]).to_crs(32633)
    codes = rasterize(
        zip(df.geometry, df["Code_18"].astype(int), strict=True),
        out_shape=red.shape,
        transform=from_origin(300_000, 5_400_000, 10, 10),
        fill=0,
        dtype="uint16",
    )
    ndvi = (nir - red) / np.maximum(nir + red, 1)
    clear = np.isin(scl, (4, 5, 6))
    forest = clear & np.isin(codes, (311, 312, 313))
    water = clear & np.isin(codes, (511, 512, 521, 522, 523))
    assert forest.sum() > 100
    assert ndvi[forest].mean() > 0.6
    if water.sum() > 100:
        assert ndvi[water].mean() < 0.0


# --------------------------------------------------------------------------------------------
# Determinism, variants, errors
# --------------------------------------------------------------------------------------------
def test_same_seed_gives_byte_identical_files(archive, tmp_path):
    again = tmp_path / "again"
    synthesize(again, SynthConfig())
    assert _hashes(again) == _hashes(archive)


def test_other_seed_gives_other_archive(tmp_path):
    a = synthesize(tmp_path / "a", SynthConfig(tiles=1, acquisitions=1, s1=False, seed=1, content="gtiff"))
    b = synthesize(tmp_path / "b", SynthConfig(tiles=1, acquisitions=1, s1=False, seed=2, content="gtiff"))
    assert a["clc"] != b["clc"] or a["products"][0]["patches"] != b["products"][0]["patches"]


def test_gtiff_content_zip_and_more_tiles(tmp_path):
    m = synthesize(tmp_path / "z", SynthConfig(tiles=4, acquisitions=1, content="gtiff", zip=True, s1=False))
    assert [t["name"] for t in m["tiles"]] == ["T33UUP", "T33UVP", "T33UUN", "T33UVN"]
    assert m["tiles"][2]["uly"] < 5_400_000 and m["tiles"][2]["ulx"] == 300_000
    for doc in m["products"]:
        z = tmp_path / "z" / doc["path"]
        assert z.suffix == ".zip"
        p = read_product(z)
        assert p.problems == [] and p.safe_root == doc["product_uri"]
        with rasterio.open(p.gdal_path(p.band_file("B02"))) as ds:
            assert ds.driver == "GTiff" and ds.read(1).max() > 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with rasterio.open(f"/vsizip/{z}/{doc['product_uri']}/MTD_MSIL2A.xml") as ds:
                assert len(ds.subdatasets) == 4


def test_l1c_variant(tmp_path):
    m = synthesize(
        tmp_path / "l1c", SynthConfig(tiles=1, acquisitions=1, level="L1C", s1=False, content="gtiff")
    )
    doc = m["products"][0]
    safe = tmp_path / "l1c" / doc["path"]
    assert doc["product_uri"].startswith("S2A_MSIL1C_")
    p = read_product(safe)
    assert p.level == "L1C" and p.problems == []
    assert {b.band for b in p.bands} == set(SPECTRAL_BANDS)  # no SCL in L1C
    assert set(p.add_offsets.values()) == {-1000}
    # as many L1C downloads: the empty folders sen2cor needs are absent
    assert not list(safe.glob("GRANULE/*/AUX_DATA")) and not list(safe.glob("DATASTRIP/*/QI_DATA"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(safe / "MTD_MSIL1C.xml") as ds:
            subs = ds.subdatasets
        assert subs[0].startswith("SENTINEL2_L1C:")
        with rasterio.open(next(s for s in subs if ":10m:" in s)) as sd:
            assert [d.split(",")[0] for d in sd.descriptions] == ["B4", "B3", "B2", "B8"]
        with rasterio.open(next(s for s in subs if ":60m:" in s)) as sd:
            assert [d.split(",")[0] for d in sd.descriptions] == ["B1", "B9", "B10"]


def test_baseline_option(tmp_path):
    m = synthesize(
        tmp_path / "b", SynthConfig(tiles=1, acquisitions=1, baseline="02.14", s1=False, content="gtiff")
    )
    doc = m["products"][0]
    assert "_N0214_" in doc["product_uri"] and doc["boa_add_offset"] == 0
    p = read_product(tmp_path / "b" / doc["path"])
    assert not p.offsets_in_metadata
    b02 = _read(p.gdal_path(p.band_file("B02")))
    assert b02[b02 > 0].min() < 1000  # no +1000 offset in the old encoding


def test_refuses_existing_output(archive):
    with pytest.raises(OutputExistsError, match="--overwrite"):
        synthesize(archive, SynthConfig())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"content": "png"}, "band content"),
        ({"level": "L1B"}, "product level"),
        ({"baseline": "4"}, "NN.NN"),
        ({"patch_size": 1000}, "multiple of 60"),
        ({"tiles": 0}, "between 1 and 36"),
        ({"acquisitions": 20}, "between 1 and 12"),
        ({"patches_per_side": 0}, "at least 1"),
    ],
)
def test_bad_parameters(tmp_path, kwargs, message):
    with pytest.raises(InvalidParameterError, match=message):
        synthesize(tmp_path / "x", SynthConfig(**kwargs))
    assert not (tmp_path / "x").exists()


def test_interrupted_run_leaves_nothing(tmp_path):
    def boom(step: str) -> None:
        if step.startswith("S2A"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        synthesize(tmp_path / "x", SynthConfig(tiles=1, acquisitions=1, s1=False), progress=boom)
    assert list(tmp_path.iterdir()) == []
