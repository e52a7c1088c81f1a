"""A real-size tile (10980 × 10980 px): what synth writes, and patch's grid against the official patches.

Both tests share one synthesized tile (about 2 minutes), so they live in one file: pytest-xdist's
``--dist loadfile`` (make test) then builds it once.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import rasterio

from rsprep.core.bands import BANDS_BY_NAME
from rsprep.inputs.safe import read_product
from rsprep.stages.patch import patch_product
from rsprep.store.workstore import TileStore
from rsprep.synth import SynthConfig, load_manifest, synthesize


@pytest.fixture(scope="module")
def full_archive(tmp_path_factory) -> Path:
    """One real-size (10980 × 10980 px) tile, T33UUP, one date, GeoTIFF content, no S1 (slow: ~2 min).

    One tile: what the tests read of it is that tile; where its neighbours sit at full size is the
    pure layout's business (tests/test_synth_layout.py).
    """
    out = tmp_path_factory.mktemp("synth-full") / "full"
    synthesize(out, SynthConfig(tiles=1, acquisitions=1, full_size=True, s1=False, content="gtiff"))
    return out


@pytest.mark.slow
def test_full_size_tile(full_archive):
    m = load_manifest(full_archive)
    assert m["tile_size_m"] == 109_800
    (uup,) = m["tiles"]
    # the real T33UUP corner; its neighbours at full size: tests/test_synth_layout.py
    assert uup["patches_per_side"] == 91 and (uup["ulx"], uup["uly"]) == (300_000, 5_400_000)
    assert len(m["products"][0]["patches"]) == 8281
    p = read_product(full_archive / m["products"][0]["path"])
    assert p.problems == [] and p.band_file("B02").actual_shape == (10980, 10980)
    assert m["clc"]["n_polygons"] > 2000  # realistic CLC density: thousands per tile


# -- georeferencing of the official patches (full-size tile) ------------------------------------------
@pytest.mark.slow
def test_full_size_patch_matches_official_georeferencing(full_archive, shared_data, tmp_path):
    official = shared_data("reben-v2-patches/BigEarthNet-S2")
    prod = next((full_archive / "s2").glob("*T33UUP*.SAFE"))
    res = patch_product(prod, out=tmp_path / "w")
    store = TileStore.open(res.store)
    grid = store.grid
    assert grid.count == 8281
    s2 = store.zarr("s2.zarr")
    for patch_dir in sorted(official.glob("*/*T33UUP_*")):
        _, x, y = patch_dir.name.rsplit("_", 2)
        x, y = int(x), int(y)
        assert grid.patch_id(x, y) == patch_dir.name
        for tif in sorted(patch_dir.glob("*.tif")):
            band = tif.stem.rsplit("_", 1)[1]
            res_m = BANDS_BY_NAME[band].resolution
            with rasterio.open(tif) as ds:
                assert ds.crs.to_epsg() == grid.epsg == 32633
                assert tuple(ds.transform)[:6] == grid.transform(x, y, res_m), tif.name
                assert ds.shape == s2[band].shape[1:], tif.name
    assert grid.transform(75, 43, 10)[2::3] == (390000.0, 5348400.0)
