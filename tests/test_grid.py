from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rsprep.core.grid import (
    check_patch_size,
    parse_patch_id,
    parse_product_uri,
    patch_bounds,
    patch_name,
    patch_pixels,
    patches_per_side,
    s1_patch_name,
    season,
)
from rsprep.errors import InvalidParameterError


def test_reben_patch_grid_numbers():
    assert patches_per_side(109_800, 1200) == 91
    assert patches_per_side(109_800, 1200) ** 2 == 8281
    assert [patch_pixels(1200, r) for r in (10, 20, 60)] == [120, 60, 20]


def test_official_georeferencing_of_t33uup_75_43():
    # docs/grid.md and the sample data notes: ..._T33UUP_75_43 starts at (390000, 5348400)
    left, bottom, right, top = patch_bounds(300_000, 5_400_000, 75, 43)
    assert (left, top) == (390_000, 5_348_400)
    assert (right - left, top - bottom) == (1200, 1200)


def test_patch_name_from_product_uri():
    name = parse_product_uri("S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_20230406T150245.SAFE")
    assert name.patch_prefix == "S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP"
    assert name.tile == "33UUP" and name.relative_orbit == 22 and name.baseline == "9999"
    assert patch_name(name.patch_prefix, 75, 43, 91) == "S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_75_43"
    assert patch_name(name.patch_prefix, 5, 3, 91).endswith("_05_03")
    assert patch_name("P", 5, 3, 4).endswith("_5_3")  # digits of n - 1 = 3
    assert patch_name("P", 5, 3, 183).endswith("_005_003")


def test_s1_patch_name_is_not_padded():
    s1 = "S1A_IW_GRDH_1SDV_20170613T165043_20170613T165108_017014_01C6B7_9C51"
    assert s1_patch_name(s1, "T33UUP", 70, 48) == "S1A_IW_GRDH_1SDV_20170613T165043_33UUP_70_48"
    assert s1_patch_name(s1, "T33UUP", 7, 4) == "S1A_IW_GRDH_1SDV_20170613T165043_33UUP_7_4"
    with pytest.raises(InvalidParameterError, match="start time"):
        s1_patch_name("S1A_IW_GRDH_1SDV", "T33UUP", 1, 1)


def test_bad_names_and_sizes_are_clear_errors():
    with pytest.raises(InvalidParameterError, match="compact naming convention"):
        parse_product_uri("S2A_MSIL2A_bogus.SAFE")
    with pytest.raises(InvalidParameterError, match="multiple of 60"):
        check_patch_size(1000)
    with pytest.raises(InvalidParameterError, match="_<x>_<y>"):
        parse_patch_id("no-suffix")
    assert parse_patch_id("S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_75_43")[1:] == (75, 43)


@pytest.mark.parametrize(
    ("month", "expected"),
    [
        (12, "winter"),
        (1, "winter"),
        (2, "winter"),
        (3, "spring"),
        (5, "spring"),
        (6, "summer"),
        (8, "summer"),
        (9, "autumn"),
        (11, "autumn"),
    ],
)
def test_meteorological_season(month, expected):
    assert season(datetime(2018, month, 15)) == expected


@given(
    n=st.integers(1, 12),
    p=st.sampled_from([60, 120, 600, 1200, 2400]),
    ulx=st.integers(0, 10_000).map(lambda v: v * 60),
    uly=st.integers(100_000, 200_000).map(lambda v: v * 60),
)
def test_patch_grid_tiles_the_tile_without_gap_or_overlap(n, p, ulx, uly):
    side = n * p + p // 2
    count = patches_per_side(side, p)
    assert count == n
    boxes = [patch_bounds(ulx, uly, x, y, p) for y in range(count) for x in range(count)]
    area = sum((r - left) * (t - b) for left, b, r, t in boxes)
    assert area == (count * p) ** 2  # no overlap: areas add up exactly to the covered square
    # neighbours share edges exactly (no gaps)
    for y in range(count):
        for x in range(count - 1):
            assert boxes[y * count + x][2] == boxes[y * count + x + 1][0]
    assert boxes[0][0] == ulx and boxes[0][3] == uly
    assert boxes[-1][2] <= ulx + side and boxes[-1][1] >= uly - side


def test_patch_id_roundtrip():
    name = patch_name("S2B_MSIL2A_20180120T102329_N0205_R022_T33UVP", 12, 7, 91)
    assert parse_patch_id(name) == ("S2B_MSIL2A_20180120T102329_N0205_R022_T33UVP", 12, 7)
