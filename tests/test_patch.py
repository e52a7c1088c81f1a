"""``rsprep patch`` on synthetic archives (against their truth) and on the real T29UNU product."""

from __future__ import annotations

import os
import shutil
import stat
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import rasterio
from rasterio.windows import Window

from rsprep.core import kernels
from rsprep.core.bands import BANDS_BY_NAME, SPECTRAL_BANDS, parse_bands
from rsprep.errors import InvalidParameterError, InvalidProductError, MissingBandFilesError
from rsprep.inputs.safe import read_product
from rsprep.inputs.sen2cor import Sen2corError
from rsprep.stages.patch import PatchOptions, patch_product, patch_products
from rsprep.store.workstore import TileStore, find_stores
from rsprep.synth import SynthConfig, synthesize


@pytest.fixture(scope="module")
def work(archive, manifest, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("work")
    results = patch_products([archive / p["path"] for p in manifest["products"]], out=out, workers=2)
    assert [r.status for r in results] == ["done"] * len(results), [r.error for r in results]
    return out


def _store(work: Path, product: dict) -> TileStore:
    return TileStore.open(work / product["patch_prefix"])


def test_patch_table_matches_synth_truth(work, manifest):
    for prod in manifest["products"]:
        store = _store(work, prod)
        t = store.table("patches.parquet").to_pandas().set_index("patch_id")
        assert sorted(t.index) == sorted(prod["patches"])
        for pid, truth in prod["patches"].items():
            row = t.loc[pid]
            assert bool(row.valid) == truth["valid"], pid
            assert (row.nodata_fraction == 0) == row.valid  # the union of every band's nodata
            assert row.nodata_fraction == pytest.approx(truth["nodata_fraction"], abs=0.05)
            for k in ("cloud_fraction", "shadow_fraction", "snow_fraction"):
                assert row[k] == pytest.approx(truth[k], abs=1e-6), (pid, k)
        assert set(t.season) == {prod["season"]}
        assert bool(t.quality_passed.iloc[0]) == prod["quality_passed"]
        assert store.product["quality_passed"] == prod["quality_passed"]
        assert store.product["processing_baseline"] == prod["baseline"]
        assert list(t["index"]) == list(range(len(t)))


def test_patch_pixels_equal_windowed_reads(work, archive, manifest):
    prod = manifest["products"][0]
    store = _store(work, prod)
    grid = store.grid
    pr = read_product(archive / prod["path"])
    s2 = store.zarr("s2.zarr")
    for name in (*SPECTRAL_BANDS, "SCL"):
        res = 20 if name == "SCL" else BANDS_BY_NAME[name].resolution
        px = grid.pixels(res)
        assert s2[name].shape == (grid.count, px, px)
        assert s2[name].metadata.dimension_names == ("patch", "y", "x")
        with rasterio.open(pr.gdal_path(pr.band_file(name))) as ds:
            for i in (0, 5, grid.count - 1):
                x, y = grid.xy(i)
                expected = ds.read(1, window=Window(x * px, y * px, px, px))
                np.testing.assert_array_equal(s2[name][i], expected, err_msg=f"{name} patch {i}")
    assert s2["B02"].attrs["units"] == "DN" and s2.attrs["bands"] == list(SPECTRAL_BANDS)


def test_patch_names_and_bounds_follow_the_grid(work, manifest):
    prod = manifest["products"][0]
    t = pq.read_table(work / prod["patch_prefix"] / "patches.parquet").to_pandas()
    row = t[(t.x == 2) & (t.y == 1)].iloc[0]
    assert row.patch_id == f"{prod['patch_prefix']}_2_1"
    tile = next(tl for tl in manifest["tiles"] if tl["name"] == prod["tile"])
    assert (row.left, row.top) == (tile["ulx"] + 2400, tile["uly"] - 1200)
    assert (row.right - row.left, row.top - row.bottom) == (1200, 1200)


def _copy_first_product(archive, manifest, tmp_path):
    """A private copy of the demo archive's first product, to modify."""
    src = archive / manifest["products"][0]["path"]
    prod = tmp_path / src.name
    shutil.copytree(src, prod)
    return prod


def test_rerun_skips_unchanged_and_redoes_changed(work, archive, manifest, tmp_path):
    prod = _copy_first_product(archive, manifest, tmp_path)
    out = tmp_path / "w"
    assert patch_product(prod, out=out).status == "done"
    assert patch_product(prod, out=out).status == "skipped"
    assert patch_product(prod, out=out, force=True).status == "done"
    assert patch_product(prod, out=out, options=PatchOptions(bands=("B02",))).status == "done"
    b02 = next(prod.rglob("*_B02_10m.jp2"))
    os.utime(b02, ns=(b02.stat().st_atime_ns, b02.stat().st_mtime_ns + 10**9))
    assert patch_product(prod, out=out, options=PatchOptions(bands=("B02",))).status == "done"
    assert [p.name for p in out.iterdir()] == [manifest["products"][0]["patch_prefix"]]  # no temp left


def test_interrupted_run_keeps_the_previous_store(archive, manifest, tmp_path, monkeypatch):
    prod = archive / manifest["products"][0]["path"]
    out = tmp_path / "w"
    patch_product(prod, out=out, options=PatchOptions(bands=("B01",)))
    before = (out / manifest["products"][0]["patch_prefix"] / "manifest.json").read_text()
    calls = []

    def boom(tile, p, n):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return np.ascontiguousarray(tile[: n * p, : n * p].reshape(n, p, n, p).swapaxes(1, 2)).reshape(
            -1, p, p
        )

    monkeypatch.setattr(kernels, "cut_patches", boom)
    with pytest.raises(KeyboardInterrupt):
        patch_product(prod, out=out, force=True)
    assert [p.name for p in out.iterdir()] == [manifest["products"][0]["patch_prefix"]]
    assert (out / manifest["products"][0]["patch_prefix"] / "manifest.json").read_text() == before


def test_multi_product_run_lists_failures_and_finishes_the_rest(archive, manifest, t29unu, tmp_path):
    good = archive / manifest["products"][0]["path"]
    results = patch_products([t29unu, good, good], out=tmp_path / "w", workers=1)
    assert [r.status for r in results] == ["failed", "done", "failed"]
    assert "B02 (10 m)" in results[0].error and "--bands" in results[0].error
    assert "same patch names" in results[2].error
    assert len(find_stores(tmp_path / "w")) == 1


def test_harmonize_modes(archive, manifest, tmp_path):
    prod = next(p for p in manifest["products"] if p["boa_add_offset"])
    path = archive / prod["path"]
    raw = TileStore.open(
        patch_product(path, out=tmp_path / "raw", options=PatchOptions(bands=("B02",))).store
    )
    old = TileStore.open(
        patch_product(
            path, out=tmp_path / "old", options=PatchOptions(bands=("B02",), harmonize="to-old")
        ).store
    )
    refl = TileStore.open(
        patch_product(
            path, out=tmp_path / "refl", options=PatchOptions(bands=("B02",), harmonize="reflectance")
        ).store
    )
    dn = raw.zarr("s2.zarr")["B02"][:]
    assert (dn[dn > 0] >= 1000).all()  # offset products store reflectance·10000 + 1000
    np.testing.assert_array_equal(
        old.zarr("s2.zarr")["B02"][:], np.where(dn == 0, 0, np.maximum(dn, 1000) - 1000)
    )
    r = refl.zarr("s2.zarr")["B02"][:]
    assert r.dtype == np.float32 and refl.zarr("s2.zarr")["B02"].attrs["units"] == "reflectance"
    np.testing.assert_allclose(r[dn > 0], (dn[dn > 0].astype(np.float32) - 1000) / 10000, rtol=1e-6)
    assert np.isnan(r[dn == 0]).all()
    # the table is measured on raw digital numbers in every mode
    assert raw.table("patches.parquet")["valid"] == refl.table("patches.parquet")["valid"]


def test_parse_bands_and_options():
    assert parse_bands("b9, B01,B1") == ("B01", "B09")
    with pytest.raises(InvalidParameterError, match="not one of the 12"):
        parse_bands("B10")
    with pytest.raises(InvalidParameterError, match="not a Sentinel-2 band"):
        parse_bands("B99")
    with pytest.raises(InvalidParameterError, match="multiple of 60"):
        PatchOptions(patch_size=1000)
    with pytest.raises(InvalidParameterError, match="--harmonize"):
        PatchOptions(harmonize="dos")


def test_non_utm_product_is_refused(archive, manifest, tmp_path):
    prod = _copy_first_product(archive, manifest, tmp_path)
    tl = next(prod.rglob("MTD_TL.xml"))
    text = tl.read_text()
    tl.write_text(text.replace("EPSG:32633", "EPSG:3035").replace("WGS84 / UTM zone 33N", "ETRS89 / LAEA"))
    with pytest.raises(InvalidProductError, match="not UTM"):
        patch_product(prod, out=tmp_path / "w")


def test_undecodable_band_names_the_file(archive, manifest, tmp_path):
    prod = _copy_first_product(archive, manifest, tmp_path)
    b03 = next(prod.rglob("*_B03_10m.jp2"))
    data = b03.read_bytes()
    b03.write_bytes(data[: len(data) // 2])  # header intact, code stream cut
    with pytest.raises((InvalidProductError, MissingBandFilesError), match="B03"):
        patch_product(prod, out=tmp_path / "w")
    assert not (tmp_path / "w" / manifest["products"][0]["patch_prefix"]).exists()


# -- real data --------------------------------------------------------------------------------------
def test_real_t29unu_full_run_lists_the_missing_files(t29unu, tmp_path):
    with pytest.raises(MissingBandFilesError) as err:
        patch_product(t29unu, out=tmp_path / "w")
    assert len(err.value.problems) == 10
    for band in ("B02", "B03", "B04", "B08", "B05", "B06", "B07", "B8A", "B11", "B12"):
        assert f"{band}_" in str(err.value)
    assert not (tmp_path / "w").exists() or not any((tmp_path / "w").iterdir())


def test_real_t29unu_bands_that_exist(t29unu, tmp_path):
    res = patch_product(t29unu, out=tmp_path / "w", options=PatchOptions(bands=("B01", "B09")))
    store = TileStore.open(res.store)
    grid = store.grid
    assert (grid.n, grid.epsg, grid.tile_id) == (91, 32629, "T29UNU")
    assert store.product["processing_baseline"] == "04.00"
    assert store.product["add_offsets"] == {"B01": -1000, "B09": -1000}
    pr = read_product(t29unu)
    s2 = store.zarr("s2.zarr")
    for name in ("B01", "B09"):
        with rasterio.open(pr.gdal_path(pr.band_file(name))) as ds:
            full = ds.read(1)
        np.testing.assert_array_equal(s2[name][:], kernels.cut_patches(full, 20, 91))
        for i in (0, 4000, 8280):  # and against direct windowed reads
            x, y = grid.xy(i)
            with rasterio.open(pr.gdal_path(pr.band_file(name))) as ds:
                np.testing.assert_array_equal(s2[name][i], ds.read(1, window=Window(20 * x, 20 * y, 20, 20)))
    with rasterio.open(pr.gdal_path(pr.band_file("SCL"))) as ds:
        scl = ds.read(1)[: 91 * 60, : 91 * 60].reshape(91, 60, 91, 60).transpose(0, 2, 1, 3).reshape(8281, -1)
    t = store.table("patches.parquet").to_pandas()
    np.testing.assert_allclose(t.cloud_fraction, np.isin(scl, (8, 9, 10)).mean(axis=1))
    np.testing.assert_allclose(t.snow_fraction, (scl == 11).mean(axis=1))
    np.testing.assert_allclose(t.shadow_fraction, (scl == 3).mean(axis=1))
    assert t.cloud_fraction.max() > 0.5  # the real scene is cloudy: the measurement is not vacuous
    b01 = s2["B01"][:]
    np.testing.assert_array_equal(
        t.valid, ((b01 != 0).all(axis=(1, 2))) & ((s2["B09"][:] != 0).all(axis=(1, 2)))
    )


# -- L1C through sen2cor ----------------------------------------------------------------------------
STAND_IN = """#!{python}
import os, shutil, sys, pathlib
args = sys.argv[1:]
out = pathlib.Path(args[args.index("--output_dir") + 1])
safe = pathlib.Path(args[-1])
for parent, sub in (("DATASTRIP", "QI_DATA"), ("GRANULE", "AUX_DATA")):
    for d in (safe / parent).iterdir() if (safe / parent).is_dir() else ():
        if not (d / sub).is_dir():
            print(f"missing {{d / sub}}", file=sys.stderr)
            sys.exit(3)
for src in pathlib.Path(os.environ["STANDIN_L2A"]).glob("*.SAFE"):
    shutil.copytree(src, out / src.name)
print("done", file=sys.stderr)
"""


@pytest.fixture(scope="module")
def l1c_pair(tmp_path_factory):
    base = tmp_path_factory.mktemp("l1c")
    cfg = dict(tiles=1, acquisitions=1, s1=False, content="gtiff")
    synthesize(base / "l1c", SynthConfig(level="L1C", **cfg))
    synthesize(base / "l2a", SynthConfig(**cfg))
    return base


def _stand_in(tmp_path: Path, body: str = STAND_IN) -> Path:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "L2A_Process"
    exe.write_text(body.format(python=sys.executable))
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return bindir


def _l1c_with_stand_in(l1c_pair, tmp_path: Path, monkeypatch) -> Path:
    """A copy of the L1C product, with the sen2cor stand-in on PATH."""
    bindir = _stand_in(tmp_path)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("STANDIN_L2A", str(l1c_pair / "l2a" / "s2"))
    l1c = next((l1c_pair / "l1c" / "s2").glob("*.SAFE"))
    copy = tmp_path / l1c.name
    shutil.copytree(l1c, copy)
    return copy


def test_l1c_runs_sen2cor_and_patches_its_output(l1c_pair, tmp_path, monkeypatch):
    copy = _l1c_with_stand_in(l1c_pair, tmp_path, monkeypatch)
    res = patch_product(copy, out=tmp_path / "w")
    assert res.status == "done" and "sen2cor" in res.notes[0]
    store = TileStore.open(res.store)
    assert "_MSIL2A_" in store.name and store.product["level"] == "L2A"
    assert all((d / "AUX_DATA").is_dir() for d in (copy / "GRANULE").iterdir())
    assert patch_product(copy, out=tmp_path / "w").status == "skipped"  # sen2cor output reused


def test_l1c_without_sen2cor_says_how_to_install(l1c_pair, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("RSPREP_SEN2COR", raising=False)
    l1c = next((l1c_pair / "l1c" / "s2").glob("*.SAFE"))
    with pytest.raises(Sen2corError, match=r"L2A_Process.*not found.*install sen2cor"):
        patch_product(l1c, out=tmp_path / "w")


def test_failing_sen2cor_reports_its_output(l1c_pair, tmp_path):
    bindir = _stand_in(tmp_path, "#!/bin/sh\necho 'GIPP file not found' >&2\nexit 2\n")
    l1c = next((l1c_pair / "l1c" / "s2").glob("*.SAFE"))
    copy = tmp_path / l1c.name
    shutil.copytree(l1c, copy)
    with pytest.raises(Sen2corError, match=r"failed .*exit 2.*GIPP file not found"):
        patch_product(copy, out=tmp_path / "w", sen2cor=str(bindir / "L2A_Process"))
    assert not list((tmp_path / "w" / ".sen2cor").rglob("*.SAFE"))


def test_corrupt_l1c_is_refused_before_sen2cor_runs(l1c_pair, tmp_path, monkeypatch):
    """The downloaded L1C is verified against its manifest.safe; sen2cor never sees a corrupt input."""
    from rsprep.inputs.safe_manifest import IntegrityError

    copy = _l1c_with_stand_in(l1c_pair, tmp_path, monkeypatch)
    band = sorted(copy.rglob("*_B04.*"))[0]
    data = bytearray(band.read_bytes())
    data[len(data) // 2] ^= 0xFF
    band.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=band.name):
        patch_product(copy, out=tmp_path / "w")
    sen2cor_out = tmp_path / "w" / ".sen2cor"
    assert not sen2cor_out.exists() or not list(sen2cor_out.rglob("*.SAFE"))
    res = patch_product(copy, out=tmp_path / "w", options=PatchOptions(verify=False))
    assert res.status == "done"  # --no-verify: the corrupt pixels pass, as the user asked


def test_same_input_gives_byte_identical_stores(archive, manifest, tmp_path):
    import hashlib

    prod = archive / manifest["products"][0]["path"]

    def digests(out: Path) -> dict[str, str]:
        store = Path(patch_product(prod, out=out, options=PatchOptions(bands=("B02", "B8A", "B09"))).store)
        return {
            str(f.relative_to(store)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(store.rglob("*"))
            if f.is_file()
        }

    a, b = digests(tmp_path / "a"), digests(tmp_path / "b")
    assert a == b and len(a) > 10
