"""Every numba kernel against a plain-numpy reference, on ordinary and edge-case inputs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rsprep.core import kernels


# -- plain-numpy references -------------------------------------------------------------------
def ref_count(tile, value, p, n):
    blocks = tile[: n * p, : n * p].reshape(n, p, n, p)
    return (blocks == value).sum(axis=(1, 3)).reshape(-1).astype(np.int64)


def ref_mark(mask, tile, value, factor):
    up = np.kron((tile == value).astype(np.uint8), np.ones((factor, factor), np.uint8)).astype(bool)
    r = min(up.shape[0], mask.shape[0])
    c = min(up.shape[1], mask.shape[1])
    out = mask.copy()
    out[:r, :c] |= up[:r, :c]
    return out


def ref_class_counts(tile, p, n, nclasses):
    blocks = tile[: n * p, : n * p].reshape(n, p, n, p).transpose(0, 2, 1, 3).reshape(n * n, -1)
    out = np.zeros((n * n, nclasses + 1), np.int64)
    for i, b in enumerate(blocks):
        v = np.minimum(b.astype(np.int64), nclasses)
        out[i] = np.bincount(v, minlength=nclasses + 1)
    return out


def ref_nearest(patches, f):
    return patches.repeat(f, axis=1).repeat(f, axis=2)


def ref_bilinear(patches, f, nodata=None):
    n, h, w = patches.shape
    out = np.empty((n, h * f, w * f), patches.dtype)
    ys = (np.arange(h * f) + 0.5) / f - 0.5
    xs = (np.arange(w * f) + 0.5) / f - 0.5
    for k in range(n):
        src = patches[k].astype(np.float64)
        bad = np.zeros(src.shape, bool)
        if nodata is not None:
            bad = np.isnan(src) if np.isnan(nodata) else src == nodata
        for r, y in enumerate(ys):
            y0 = int(np.floor(y))
            fy = y - y0
            if y0 < 0:
                y0, fy = 0, 0.0
            y1 = min(y0 + 1, h - 1)
            for c, x in enumerate(xs):
                if bad[r // f, c // f]:
                    out[k, r, c] = nodata
                    continue
                x0 = int(np.floor(x))
                fx = x - x0
                if x0 < 0:
                    x0, fx = 0, 0.0
                x1 = min(x0 + 1, w - 1)
                acc = wsum = 0.0
                for yy, xx, wt in (
                    (y0, x0, (1 - fy) * (1 - fx)),
                    (y0, x1, (1 - fy) * fx),
                    (y1, x0, fy * (1 - fx)),
                    (y1, x1, fy * fx),
                ):
                    if wt > 0 and not bad[yy, xx]:
                        acc += wt * src[yy, xx]
                        wsum += wt
                v = acc / wsum
                out[k, r, c] = np.floor(v + 0.5) if patches.dtype.kind in "iu" else v
    return out


# -- cut ------------------------------------------------------------------------------------
def test_cut_patches_row_major_and_drops_partial_strip():
    tile = np.arange(7 * 7, dtype=np.uint16).reshape(7, 7)
    out = kernels.cut_patches(tile, 3, 2)
    assert out.shape == (4, 3, 3) and out.flags.c_contiguous
    np.testing.assert_array_equal(out[1], tile[0:3, 3:6])  # x=1, y=0
    np.testing.assert_array_equal(out[2], tile[3:6, 0:3])  # x=0, y=1


def test_cut_patches_rejects_too_small_array():
    with pytest.raises(ValueError, match="no 3 x 3 grid"):
        kernels.cut_patches(np.zeros((5, 5)), 2, 3)


# -- nodata counts ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "tile",
    [
        np.zeros((20, 20), np.uint16),  # all nodata
        np.ones((20, 20), np.uint16),  # none
        np.random.default_rng(1).integers(0, 3, (23, 21)).astype(np.uint16),  # odd size, partial strip
    ],
)
def test_count_value_per_patch_matches_numpy(tile):
    np.testing.assert_array_equal(kernels.count_value_per_patch(tile, 0, 5, 4), ref_count(tile, 0, 5, 4))


def test_count_value_one_pixel_and_empty_grid():
    assert kernels.count_value_per_patch(np.zeros((1, 1), np.uint16), 0, 1, 1).tolist() == [1]
    assert kernels.count_value_per_patch(np.zeros((3, 3), np.uint16), 0, 2, 0).size == 0


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 4),
    st.integers(1, 3),
    st.integers(0, 2**32 - 1),
)
def test_mark_value_upsampled_matches_numpy(factor, extra, seed):
    rng = np.random.default_rng(seed)
    tile = rng.integers(0, 3, (5, 6)).astype(np.uint16)
    mask = rng.random((5 * factor + extra, 6 * factor - 1)) < 0.1
    expected = ref_mark(mask, tile, 0, factor)
    kernels.mark_value_upsampled(mask, tile, 0, factor)
    np.testing.assert_array_equal(mask, expected)


def test_union_mask_fraction_zero_iff_every_band_valid():
    rng = np.random.default_rng(3)
    b10 = rng.integers(1, 5, (12, 12)).astype(np.uint16)
    b60 = rng.integers(1, 5, (2, 2)).astype(np.uint16)
    b60[1, 0] = 0  # one coarse pixel of the patch (x=0, y=1) lacks data
    mask = np.zeros((12, 12), bool)
    kernels.mark_value_upsampled(mask, b10, 0, 1)
    kernels.mark_value_upsampled(mask, b60, 0, 6)
    counts = kernels.count_value_per_patch(mask, True, 6, 2)
    assert counts.tolist() == [0, 0, 36, 0]


# -- class counts ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "tile",
    [
        np.full((12, 12), 9, np.uint8),
        np.random.default_rng(2).integers(0, 15, (13, 17)).astype(np.uint8),  # values above the classes
        np.zeros((4, 4), np.uint16),
    ],
)
def test_class_counts_match_numpy(tile):
    got = kernels.class_counts_per_patch(tile, 4, 3 if tile.shape[0] >= 12 else 1, 12)
    n = 3 if tile.shape[0] >= 12 else 1
    np.testing.assert_array_equal(got, ref_class_counts(tile, 4, n, 12))
    assert (got.sum(axis=1) == 16).all()


def test_class_counts_refuses_signed_rasters():
    with pytest.raises(TypeError, match="unsigned"):
        kernels.class_counts_per_patch(np.zeros((4, 4), np.int16), 2, 2, 12)


# -- upsampling -----------------------------------------------------------------------------------
@pytest.mark.parametrize("factor", [1, 2, 6])
@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_upsample_nearest_matches_numpy(factor, dtype):
    patches = np.random.default_rng(factor).integers(0, 1000, (3, 5, 4)).astype(dtype)
    np.testing.assert_array_equal(kernels.upsample_nearest(patches, factor), ref_nearest(patches, factor))


@pytest.mark.parametrize("factor", [1, 2, 6])
@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
@pytest.mark.parametrize("with_nodata", [False, True])
def test_upsample_bilinear_matches_numpy(factor, dtype, with_nodata):
    patches = np.random.default_rng(factor).integers(1, 5000, (2, 5, 3)).astype(dtype)
    nodata = None
    if with_nodata:
        nodata = 0
        patches[0, 1, 1] = 0
        patches[1, :, 0] = 0
    got = kernels.upsample_bilinear(patches, factor, nodata=nodata)
    np.testing.assert_allclose(got, ref_bilinear(patches, factor, nodata), rtol=1e-6)


def test_upsample_bilinear_nan_nodata_and_edge_cases():
    patches = np.full((1, 2, 2), 0.5, np.float32)
    patches[0, 0, 0] = np.nan
    got = kernels.upsample_bilinear(patches, 2, nodata=np.nan)
    assert np.isnan(got[0, :2, :2]).all() and not np.isnan(got[0, 2:, :]).any()
    np.testing.assert_allclose(got[0, 2:, 2:], 0.5)
    one = kernels.upsample_bilinear(np.array([[[7]]], np.uint16), 6)
    assert one.shape == (1, 6, 6) and (one == 7).all()
    assert kernels.upsample_bilinear(np.zeros((0, 3, 3), np.uint16), 2).shape == (0, 6, 6)
    all_nodata = kernels.upsample_bilinear(np.zeros((1, 3, 3), np.uint16), 2, nodata=0)
    assert (all_nodata == 0).all()


def test_upsample_bilinear_preserves_constant_and_stays_in_range():
    rng = np.random.default_rng(0)
    patches = rng.integers(100, 200, (4, 20, 20)).astype(np.uint16)
    up = kernels.upsample_bilinear(patches, 6)
    assert up.min() >= 100 and up.max() <= 199
    assert (kernels.upsample_bilinear(np.full((1, 3, 3), 42, np.uint16), 2) == 42).all()


# -- polygon rasterization: the reference is GDAL itself (rasterio.features.rasterize) ---------
def ref_burn(geoms, values, p, n, res=10.0):
    from rasterio.features import rasterize
    from rasterio.transform import from_origin

    side = n * p
    if not len(geoms):
        return np.zeros((n * n, p, p), np.uint16)
    tile = rasterize(
        zip(geoms, values, strict=True),
        out_shape=(side, side),
        transform=from_origin(0.0, side * res, res, res),
        fill=0,
        dtype="uint16",
    )
    return kernels.cut_patches(tile, p, n)


def our_burn(geoms, values, p, n, res=10.0):
    from rsprep.core.rasterize import rasterize_patches

    return rasterize_patches(
        np.array(geoms, dtype=object), np.array(values), ulx=0.0, uly=n * p * res, res=res, p=p, n=n
    )


def _ring(draw, side_m, k):
    # vertices on a 5 m lattice: many lie exactly on pixel centres, edges, and row-centre lines
    pts = draw(
        st.lists(
            st.tuples(st.integers(-3, 2 * side_m // 10 + 3), st.integers(-3, 2 * side_m // 10 + 3)),
            min_size=k,
            max_size=k + 6,
        )
    )
    return [(x * 5.0, y * 5.0) for x, y in pts]


@st.composite
def polygon_sets(draw):
    import shapely

    p = draw(st.sampled_from([3, 4, 6]))
    n = draw(st.integers(1, 3))
    side_m = n * p * 10
    geoms, values = [], []
    for _ in range(draw(st.integers(1, 5))):
        shell = _ring(draw, side_m, 3)
        kind = draw(st.sampled_from(["polygon", "holed", "multi", "float"]))
        if kind == "float":  # arbitrary coordinates, also far outside the grid
            shell = [(x + draw(st.floats(-7, 7)), y + draw(st.floats(-7, 7))) for x, y in shell]
            g = shapely.Polygon(shell)
        elif kind == "holed":
            g = shapely.Polygon(shell, [_ring(draw, side_m, 3)])
        elif kind == "multi":
            g = shapely.MultiPolygon([shapely.Polygon(shell), shapely.Polygon(_ring(draw, side_m, 3))])
        else:
            g = shapely.Polygon(shell)
        geoms.append(g)
        values.append(draw(st.integers(1, 999)))
    return geoms, values, p, n


@settings(max_examples=300, deadline=None)
@given(polygon_sets())
def test_burn_polygons_equals_gdal(case):
    geoms, values, p, n = case
    np.testing.assert_array_equal(our_burn(geoms, values, p, n), ref_burn(geoms, values, p, n))


def test_burn_polygons_edge_cases():
    import shapely

    p, n = 4, 2
    cases = [
        [shapely.box(-100, -100, 1000, 1000)],  # covers everything, far beyond the grid
        [shapely.box(20, 20, 60, 60)],  # edges on pixel borders
        [shapely.box(25, 25, 55, 55)],  # edges through pixel centres (ties)
        [shapely.box(0, 0, 80, 80), shapely.box(15, 15, 45, 45)],  # later geometry overwrites
        [shapely.Polygon([(0, 0), (80, 80), (80, 0), (0, 80)])],  # self-intersecting bow tie
        [shapely.box(200, 200, 300, 300)],  # entirely outside
        [shapely.Polygon([(35, 35), (45, 35), (45, 35), (35, 35)])],  # degenerate, no area
    ]
    for geoms in cases:
        values = list(range(1, len(geoms) + 1))
        np.testing.assert_array_equal(our_burn(geoms, values, p, n), ref_burn(geoms, values, p, n))
    assert not our_burn([], [], p, n).any()


def test_burn_polygons_rejects_mismatched_values():
    with pytest.raises(ValueError, match="values"):
        kernels.burn_polygons(
            np.zeros(4), np.zeros(4), np.array([0, 4]), np.array([0, 1]), np.array([1, 2]), 2, 1
        )


def ref_lut_counts(patches, lut, nbins):
    out = np.zeros((patches.shape[0], nbins), np.int64)
    for i, pch in enumerate(patches):
        out[i] = np.bincount(lut[pch.reshape(-1)], minlength=nbins)
    return out


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 5), st.integers(1, 7), st.integers(2, 9), st.integers(0, 2**31 - 1))
def test_lut_counts_equals_numpy(npatch, side, nbins, seed):
    rng = np.random.default_rng(seed)
    patches = rng.integers(0, 65536, (npatch, side, side)).astype(np.uint16)
    patches[:, 0, 0] = 65535  # the largest value is mapped too
    lut = rng.integers(0, nbins, 65536)
    np.testing.assert_array_equal(
        kernels.lut_counts_per_patch(patches, lut, nbins), ref_lut_counts(patches, lut, nbins)
    )


def test_lut_counts_validates_its_table():
    patches = np.zeros((1, 2, 2), np.uint16)
    with pytest.raises(ValueError, match="entries"):
        kernels.lut_counts_per_patch(patches, np.zeros(10, np.int64), 2)
    with pytest.raises(ValueError, match="lut values"):
        kernels.lut_counts_per_patch(patches, np.full(65536, 5), 2)
    with pytest.raises(TypeError):
        kernels.lut_counts_per_patch(patches.astype(np.int16), np.zeros(65536, np.int64), 2)


@pytest.mark.parametrize("size", [0, 1, 14400, 100_003])
def test_count_not_in_matches_numpy(size):
    rng = np.random.default_rng(size)
    allowed = rng.random(1 << 16) < 0.3
    values = rng.integers(0, 1 << 16, size, dtype=np.uint16)
    assert kernels.count_not_in(values, allowed) == int((~allowed[values]).sum())
    assert kernels.count_not_in(np.zeros(size, np.uint16), np.ones(1 << 16, bool)) == 0
    with pytest.raises(ValueError, match="unsigned"):
        kernels.count_not_in(values.astype(np.int32), allowed)


@pytest.mark.parametrize("resampling", ["bilinear", "nearest"])
@pytest.mark.parametrize("parallel", [True, False])
@pytest.mark.parametrize(
    ("side", "dtype"), [(20, np.uint16), (60, np.uint16), (120, np.uint16), (60, np.float32)]
)
def test_to_side_into_equals_to_side_in_slots(resampling, parallel, side, dtype):
    from rsprep.core.kernels.resample import to_side_into

    rng = np.random.default_rng(side)
    patches = rng.integers(0, 4, (10, side, side)).astype(dtype)  # zeros: nodata pixels
    patches[::2] = rng.integers(1, 60000, (5, side, side))  # patches without nodata (a faster path)
    out = np.full((4, 5, 120, 120), -7, np.float32)
    b, ch = np.array([0, 0, 1, 1, 2, 2, 3, 3, 0, 3]), np.array([0, 1, 0, 4, 2, 3, 1, 0, 4, 4])
    to_side_into(patches, out, (b, ch), resampling, 0, parallel=parallel)
    want = kernels.to_side(patches, 120, resampling, nodata=0).astype(np.float32)
    np.testing.assert_array_equal(out[b, ch], want)
    if resampling == "bilinear":
        ref = ref_bilinear(patches, 120 // side, 0) if side < 120 else patches
        np.testing.assert_allclose(out[b, ch], np.asarray(ref, np.float32), rtol=1e-6)
    untouched = np.ones(out.shape[:2], bool)
    untouched[b, ch] = False
    assert (out[untouched] == -7).all()
    with pytest.raises(ValueError, match="upsample"):
        to_side_into(patches[:, :7, :7], out, (b, ch), resampling, 0)
