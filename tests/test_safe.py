"""The SAFE reader on the real products in ../shared/data and on broken inputs."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest

from rsprep.errors import InputNotFoundError, InvalidProductError, MissingBandFilesError
from rsprep.inputs.safe import read_product

T29UNU_URI = "S2A_MSIL2A_20221005T115411_N0400_R023_T29UNU_20221005T164454.SAFE"
MISSING_T29UNU = {"B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12"}


def _copy_safe(src: Path, dst: Path) -> Path:
    """Copy a SAFE tree without its large band files (XML only), to break it on purpose."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.jp2"))
    dst.chmod(0o755)
    for p in dst.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    return dst


def test_t29unu_metadata(t29unu):
    p = read_product(t29unu)
    assert p.product_uri == T29UNU_URI
    assert p.patch_prefix == "S2A_MSIL2A_20221005T115411_N0400_R023_T29UNU"
    assert p.level == "L2A" and p.tile_id == "T29UNU" and p.relative_orbit == 23
    assert p.processing_baseline == "04.00"
    assert p.quantification_value == 10000
    assert p.offsets_in_metadata and set(p.add_offsets.values()) == {-1000}
    assert p.special_values == {"NODATA": 0, "SATURATED": 65535}
    assert p.epsg == 32629 and p.is_utm
    g10, g60 = p.geocoding[10], p.geocoding[60]
    assert (g10.ulx, g10.uly, g10.nrows, g10.ncols) == (499980, 5900040, 10980, 10980)
    assert (g60.nrows, g60.ncols, g60.xdim) == (1830, 1830, 60)
    assert p.tile_size_m == 109_800
    assert p.quality_passed and p.quality_checks["GEOMETRIC_QUALITY"] == "PASSED"
    assert p.cloud_cover_percent == pytest.approx(59.769726)
    assert p.snow_ice_percent == pytest.approx(6.46e-4)
    assert p.datatake_time.isoformat().startswith("2022-10-05T11:54:11")
    assert p.sensing_time.isoformat().startswith("2022-10-05T11:56:49")


def test_t29unu_reports_exactly_the_missing_band_files(t29unu):
    p = read_product(t29unu)
    missing = {b.band for b in p.bands if not b.exists}
    assert missing == MISSING_T29UNU
    ok = {b.band for b in p.bands if b.ok}
    assert ok == {"B01", "B09", "SCL"}
    assert p.band_file("B01").path.endswith("R60m/T29UNU_20221005T115411_B01_60m.jp2")
    assert p.band_file("B01").actual_shape == (1830, 1830)
    assert p.band_file("SCL").actual_shape == (5490, 5490)
    assert len(p.problems) == 10 and all("is missing" in x for x in p.problems)
    assert any("T29UNU_20221005T115411_B8A_20m.jp2" in x for x in p.problems)

    with pytest.raises(MissingBandFilesError) as info:
        p.require_bands(["B01", "B02", "B09"])
    assert "B02_10m.jp2 is missing" in str(info.value) and "--bands" in str(info.value)
    assert len(info.value.problems) == 1
    assert [f.band for f in p.require_bands(["B01", "B09", "SCL"])] == ["B01", "B09", "SCL"]


def test_t22hbd_reports_size_mismatch_for_every_band(t22hbd):
    p = read_product(t22hbd)
    assert p.product_uri.startswith("S2B_MSIL2A_20210122T133229_N0214_R081_T22HBD")  # folder is named esa_...
    assert p.processing_baseline == "02.14"
    assert not p.offsets_in_metadata and set(p.add_offsets.values()) == {0}
    assert all(b.exists for b in p.bands)
    assert all(b.actual_shape == (100, 100) for b in p.bands)
    assert not any(b.ok for b in p.bands)
    b02 = p.band_file("B02")
    assert b02.declared_shape == (10980, 10980)
    assert "is 100 × 100 px but MTD_TL.xml declares 10980 × 10980 px" in b02.problem


def test_zip_reads_like_the_folder(t29unu, tmp_path):
    safe = t29unu / T29UNU_URI
    z = tmp_path / "product.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for f in sorted(safe.rglob("*")):
            if f.is_file() and ("R60m" in f.parts or f.suffix == ".xml" or "SCL_20m" in f.name):
                zf.write(f, f"{T29UNU_URI}/{f.relative_to(safe).as_posix()}")
    zipped, folder = read_product(z), read_product(safe)
    assert zipped.safe_root == T29UNU_URI
    assert zipped.product_uri == folder.product_uri
    assert {b.band: b.ok for b in zipped.bands} == {b.band: b.ok for b in folder.bands}
    assert zipped.gdal_path(zipped.band_file("B01")).startswith("/vsizip/")
    assert zipped.band_file("B09").actual_shape == (1830, 1830)


def test_missing_path_is_named(tmp_path):
    with pytest.raises(InputNotFoundError, match=r"nope\.SAFE does not exist"):
        read_product(tmp_path / "nope.SAFE")


def test_folder_without_metadata(tmp_path):
    (tmp_path / "empty.SAFE").mkdir()
    with pytest.raises(InvalidProductError, match=r"no MTD_MSIL2A.xml or MTD_MSIL1C.xml"):
        read_product(tmp_path / "empty.SAFE")


def test_malformed_xml_names_the_file(t29unu, tmp_path):
    safe = _copy_safe(t29unu / T29UNU_URI, tmp_path / T29UNU_URI)
    mtd = safe / "MTD_MSIL2A.xml"
    mtd.write_text(mtd.read_text()[:5000])
    with pytest.raises(InvalidProductError, match=r"MTD_MSIL2A.xml is not well-formed XML"):
        read_product(safe)


def test_missing_tile_metadata(t29unu, tmp_path):
    safe = _copy_safe(t29unu / T29UNU_URI, tmp_path / T29UNU_URI)
    next(safe.glob("GRANULE/*/MTD_TL.xml")).unlink()
    with pytest.raises(InvalidProductError, match=r"MTD_TL.xml is missing"):
        read_product(safe)


def test_band_files_without_jp2_are_missing_not_zero(t29unu, tmp_path):
    safe = _copy_safe(t29unu / T29UNU_URI, tmp_path / T29UNU_URI)
    p = read_product(safe)
    assert not any(b.exists for b in p.bands)
    assert len(p.problems) == 13


def test_unreadable_band_file_is_reported(t29unu, tmp_path):
    safe = _copy_safe(t29unu / T29UNU_URI, tmp_path / T29UNU_URI)
    bad = safe / read_product(t29unu).band_file("B01").path
    bad.write_bytes(b"\x00\x00\x00\x0cjP  \r\n\x87\n" + b"garbage" * 10)
    b01 = read_product(safe).band_file("B01")
    assert b01.exists and b01.error is not None and "cannot be read" in b01.problem


def test_corrupt_zip(tmp_path):
    z = tmp_path / "broken.zip"
    z.write_bytes(b"PK\x03\x04 this is not really a zip")
    with pytest.raises(InvalidProductError, match=r"broken.zip"):
        read_product(z)


def test_two_products_in_one_folder_is_ambiguous(t29unu, tmp_path):
    _copy_safe(t29unu / T29UNU_URI, tmp_path / "a" / T29UNU_URI)
    _copy_safe(t29unu / T29UNU_URI, tmp_path / "a" / ("X" + T29UNU_URI))
    with pytest.raises(InvalidProductError, match=r"holds 2 Sentinel-2 products"):
        read_product(tmp_path / "a")


def test_metadata_xml_path_is_accepted(t29unu):
    assert read_product(t29unu / T29UNU_URI / "MTD_MSIL2A.xml").product_uri == T29UNU_URI


def test_json_description_is_serialisable(t29unu):
    import json

    d = read_product(t29unu).to_dict()
    json.dumps(d)
    assert d["datatake_time"].endswith("Z")
    assert d["geocoding"]["10"]["nrows"] == 10980
    assert sum(not b["exists"] for b in d["bands"]) == 10
