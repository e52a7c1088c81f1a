"""Pure pieces of the synthetic generator: tile layout, roles, hashed noise and texture."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rsprep.synth.layout import acquisitions, product_specs, tile_layout, tile_size_m
from rsprep.synth.spectra import SURFACES, hash_uniform, smooth_field, surface_of_code


def test_full_size_layout_matches_the_real_mgrs_grid():
    tiles = tile_layout(4, tile_size_m(0, 1200, True))
    assert [t.name for t in tiles] == ["T33UUP", "T33UVP", "T33UUN", "T33UVN"]
    assert [(t.ulx, t.uly) for t in tiles] == [
        (300000, 5400000),
        (399960, 5400000),
        (300000, 5300040),
        (399960, 5300040),
    ]
    assert tiles[0].size_m - (tiles[1].ulx - tiles[0].ulx) == 9840  # ~9.8 km overlap


def test_small_tiles_keep_a_partial_strip_and_60m_alignment():
    for p in (60, 120, 600, 1200, 2400):
        size = tile_size_m(3, p, False)
        assert size % 60 == 0 and 3 * p <= size < 4 * p
        assert (size > 3 * p) == (p >= 120)  # a partial strip wherever half a patch is whole 60 m pixels
        for t in tile_layout(9, size):
            assert t.ulx % 60 == 0 and t.uly % 60 == 0


@pytest.mark.parametrize(
    ("tiles", "dates", "roles"),
    [
        (1, 1, [()]),
        (1, 2, [(), ("failed-quality",)]),
        (3, 1, [(), ("old-baseline",), ("failed-quality",)]),
        (2, 2, [(), (), ("old-baseline",), ("failed-quality",)]),
    ],
)
def test_product_roles(tiles, dates, roles):
    specs = product_specs(tile_layout(tiles, 5400), acquisitions(dates), level="L2A", baseline="05.09")
    assert [s.roles for s in specs] == roles
    for s in specs:
        assert s.has_offset == ("old-baseline" not in s.roles)
        assert s.product_uri.endswith(".SAFE") and s.tile.name in s.product_uri


def test_acquisitions_cycle_through_seasons():
    acqs = acquisitions(6)
    assert [a.season for a in acqs] == ["summer", "winter", "autumn", "spring", "summer", "winter"]
    assert (acqs[4].datatake - acqs[0].datatake).days == 10


def test_smooth_field_equals_direct_evaluation():
    rng = np.random.default_rng(0)
    waves = np.column_stack([rng.uniform(-0.02, 0.02, 3), rng.uniform(-0.02, 0.02, 3), rng.uniform(0, 6, 3)])
    x = np.linspace(300000, 301000, 37)
    y = np.linspace(5400000, 5399000, 23)
    got = smooth_field(x, y, waves)
    X, Y = np.meshgrid(x, y)
    ref = sum(np.sin(kx * X + ky * Y + ph) for kx, ky, ph in waves) / len(waves)
    np.testing.assert_allclose(got, ref, atol=2e-5)


@settings(max_examples=30, deadline=None)
@given(x0=st.integers(0, 10_000), y0=st.integers(0, 10_000), salt=st.integers(0, 2**40))
def test_hash_noise_depends_only_on_world_pixel(x0, y0, salt):
    ix, iy = np.arange(x0, x0 + 20), np.arange(y0, y0 + 10)
    full = hash_uniform(ix, iy, salt)
    part = hash_uniform(ix[5:12], iy[3:8], salt)
    np.testing.assert_array_equal(full[3:8, 5:12], part)
    assert full.min() >= -1 and full.max() < 1


def test_hash_noise_is_uniform_and_salted():
    v = hash_uniform(np.arange(500), np.arange(400), 7)
    assert abs(v.mean()) < 0.01 and abs(v.std() - 1 / np.sqrt(3)) < 0.01
    assert not np.array_equal(v, hash_uniform(np.arange(500), np.arange(400), 8))


def test_every_clc_code_has_a_surface():
    assert SURFACES[surface_of_code(523)] == "water"
    assert SURFACES[surface_of_code(312)] == "conifer"
    assert SURFACES[surface_of_code(0)] == "crop"
