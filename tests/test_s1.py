"""``rsprep s1``: pairing with synthetic scenes (known truth) and resampling the real dB GeoTIFF."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import rasterio

from rsprep.core.grid import TileGrid, s1_patch_name
from rsprep.errors import InvalidParameterError
from rsprep.inputs.s1 import find_scenes
from rsprep.stages.patch import patch_products
from rsprep.stages.s1 import (
    INVALID_S2,
    NO_SCENE_IN_TIME,
    NOT_COVERED,
    PAIRED,
    S1Options,
    pair_tile,
    s1_work,
)
from rsprep.store.workstore import TileStore, find_stores

REAL_S1 = "s1-db-geotiff/S1A__IW___A_20150309T173017_VV_grd_mli_geo_norm_db.tif"


@pytest.fixture(scope="module")
def work(archive, manifest, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("s1work")
    patch_products([archive / p["path"] for p in manifest["products"]], out=out)
    results, _ = s1_work(out, archive / "s1")
    assert all(r.status == "done" for r in results)
    return out


def test_synthetic_pairing_picks_closest_fully_covering_scene(work, manifest):
    scenes = {s["name"]: s for s in manifest["s1"]}
    first = manifest["products"][0]
    store = TileStore.open(work / first["patch_prefix"])
    t = store.table("s1.parquet").to_pandas()
    s2 = store.table("patches.parquet").to_pandas()
    assert list(t.patch_id) == list(s2.patch_id)
    partial = next(s for s in manifest["s1"] if not s["full_coverage"])
    complete = next(s for s in manifest["s1"] if s["full_coverage"] and s["crs"] == "EPSG:4326")
    used = set(t.s1_product.dropna())
    # the same-day scene wins wherever it covers; its nodata corner falls back to the complete one
    assert used == {partial["name"], complete["name"]}
    assert (t.s1_product == partial["name"]).sum() > (t.s1_product == complete["name"]).sum() > 0
    paired = t[t.s1_status == PAIRED]
    assert (paired.s1_index == np.arange(len(paired))).all()
    for row in paired.itertuples():
        x, y = (int(v) for v in row.patch_id.rsplit("_", 2)[1:])
        assert row.s1_name == s1_patch_name(row.s1_product, "T33UUP", x, y)
    assert paired.s1_name.iloc[0].startswith("S1") and "_33UUP_" in paired.s1_name.iloc[0]
    vv = store.zarr("s1.zarr")["VV"][:]
    vh = store.zarr("s1.zarr")["VH"][:]
    assert vv.shape == (len(paired), 120, 120) and vv.dtype == np.float32
    assert np.isfinite(vv).all() and np.isfinite(vh).all()
    assert vv.min() > -40 and vv.max() < 10  # -99 nodata never leaks into values
    assert (vh < vv).mean() > 0.9  # cross-pol is darker
    assert set(scenes) >= used


def test_invalid_and_uncovered_patches_are_recorded(work, manifest):
    edge = next(p for p in manifest["products"] if p["swath_edge"])
    t = TileStore.open(work / edge["patch_prefix"]).table("s1.parquet").to_pandas().set_index("patch_id")
    for pid, truth in edge["patches"].items():
        if not truth["valid"]:
            assert t.loc[pid].s1_status == INVALID_S2 and t.loc[pid].s1_name is None
    winter = next(p for p in manifest["products"] if p["season"] == "winter" and p["tile"] == "T33UUP")
    tw = TileStore.open(work / winter["patch_prefix"]).table("s1.parquet").to_pandas()
    assert (tw.s1_status == NOT_COVERED).any()  # its only scene has a nodata corner


def test_time_limit_and_rerun(work, archive):
    first = find_stores(work)[0]
    results, _ = s1_work(work, archive / "s1")
    assert {r.status for r in results} == {"skipped"}
    results, _ = s1_work(first.path, archive / "s1", S1Options(max_days=0.1), force=True)
    t = TileStore.open(first.path).table("s1.parquet").to_pandas()
    assert set(t.s1_status) <= {NO_SCENE_IN_TIME, INVALID_S2}
    s1_work(first.path, archive / "s1", force=True)


def test_find_scenes_reports_incomplete_scenes(archive, tmp_path):
    d = tmp_path / "s1"
    shutil.copytree(archive / "s1", d)
    vh = next(d.rglob("*_VH.tif"))
    vh.unlink()
    disc = find_scenes(d)
    assert len(disc.scenes) == 2 and [b.problem[:9] for b in disc.bad] == ["no VH fil"]
    assert len(find_scenes(d, polarisations=["VV"]).scenes) == 3
    with pytest.raises(InvalidParameterError, match="no usable Sentinel-1 scene"):
        find_scenes(tmp_path / "s1" / vh.parent.name, polarisations=["VH"])
    with pytest.raises(InvalidParameterError, match="polarisation"):
        find_scenes(d, polarisations=["XX"])


# -- the real dB GeoTIFF (20 m, EPSG:32631, nodata -99) ----------------------------------------------
def _real_grid() -> TileGrid:
    # A 6 × 5 patch grid over the scene (620048..625408 E, 4825775..4830115 N) and beyond it.
    return TileGrid("T31TDH", 32631, 618000.0, 4831200.0, 7200.0, 1200, 6, "S2A_MSIL2A_X_T31TDH")


def _real_scene_dir(shared_data, tmp_path, hole: bool) -> Path:
    src = shared_data(REAL_S1)
    d = tmp_path / "real"
    d.mkdir()
    dst = d / src.name
    shutil.copy(src, dst)
    if hole:
        with rasterio.open(dst, "r+") as ds:
            a = ds.read(1)
            a[100:130, 120:150] = -99  # a nodata hole in the middle of the scene
            ds.write(a, 1)
    return d


@pytest.mark.parametrize("hole", [False, True])
def test_real_s1_resampled_onto_the_10m_grid(shared_data, tmp_path, hole):
    d = _real_scene_dir(shared_data, tmp_path, hole)
    disc = find_scenes(d, polarisations=["VV"])
    (scene,) = disc.scenes
    assert scene.start == datetime(2015, 3, 9, 17, 30, 17, tzinfo=UTC)
    grid = _real_grid()
    valid = np.ones(grid.count, bool)
    pairing = pair_tile(grid, valid, datetime(2015, 3, 10, 11, tzinfo=UTC), disc.scenes, polarisations=["VV"])
    with rasterio.open(d / REAL_S1.split("/")[1]) as ds:
        src = ds.read(1)
        left, bottom, right, top = ds.bounds
    good = src[src != -99]
    for i in range(grid.count):
        x, y = grid.xy(i)
        pl, pb, pr, pt = grid.bounds(x, y)
        inside = pl >= left and pr <= right and pb >= bottom and pt <= top
        if not inside:
            assert pairing.status[i] == NOT_COVERED, (x, y)
        elif hole and (x, y) in {(3, 2), (4, 2), (3, 3), (4, 3)}:
            # the hole (scene pixels rows 100-130, cols 120-150) touches these four patches
            assert pairing.status[i] == NOT_COVERED, (x, y)
        else:
            assert pairing.status[i] == PAIRED, (x, y)
    paired = [i for i in range(grid.count) if pairing.status[i] == PAIRED]
    assert len(paired) == (8 if hole else 12)  # x 2..5, y 1..3 lie inside the scene
    vv = pairing.arrays["VV"]
    assert vv.shape == (len(paired), 120, 120)
    assert np.isfinite(vv).all()
    # bilinear values stay within the valid source range: -99 never leaks in
    assert vv.min() >= good.min() - 1e-4 and vv.max() <= good.max() + 1e-4
    # the resampled grid is the S2 patch grid: compare one pixel with a direct bilinear lookup
    i = paired[0]
    x, y = grid.xy(i)
    px_left, _, _, px_top = grid.bounds(x, y)
    cx, cy = px_left + 5 + 10 * 60, px_top - 5 - 10 * 60  # centre of output pixel (60, 60)
    col, row = (cx - left) / 20 - 0.5, (top - cy) / 20 - 0.5
    c0, r0 = int(np.floor(col)), int(np.floor(row))
    fc, fr = col - c0, row - r0
    w = src[r0 : r0 + 2, c0 : c0 + 2].astype(np.float64)
    expected = (w[0, 0] * (1 - fc) + w[0, 1] * fc) * (1 - fr) + (w[1, 0] * (1 - fc) + w[1, 1] * fc) * fr
    if not hole or (-99 not in w):
        assert vv[0, 60, 60] == pytest.approx(expected, abs=1e-3)
    assert pairing.s1_name[i] == f"S1A__IW___A_20150309T173017_31TDH_{x}_{y}"


def test_real_s1_outside_the_time_limit(shared_data, tmp_path):
    d = _real_scene_dir(shared_data, tmp_path, hole=False)
    disc = find_scenes(d, polarisations=["VV"])
    grid = _real_grid()
    pairing = pair_tile(
        grid, np.ones(grid.count, bool), datetime(2015, 6, 1, tzinfo=UTC), disc.scenes, polarisations=["VV"]
    )
    assert set(pairing.status) == {NO_SCENE_IN_TIME} and pairing.arrays["VV"].shape == (0, 120, 120)
