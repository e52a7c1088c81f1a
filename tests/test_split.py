"""Splits (docs/splits.md): reBEN's tile-border formula on real names, partitions, invariants, leakage."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rsprep.core.grid import parse_patch_ids
from rsprep.core.splits import (
    SplitOptions,
    block_split,
    parse_fractions,
    random_split,
    ring_bounds,
    split_table,
    tile_border,
)
from rsprep.errors import InvalidParameterError, OutputExistsError
from rsprep.stages.metadata import MetadataOptions, build_metadata
from rsprep.stages.split import split_target

SAMPLE = "reben-v2-metadata-sample"
FILES = ("metadata.parquet", "metadata_for_patches_with_snow_cloud_or_shadow.parquet")


def _sample(shared_data) -> pa.Table:
    folder = shared_data(SAMPLE)
    return pa.concat_tables([pq.read_table(folder / f).select(["patch_id", "split"]) for f in FILES])


def test_tile_border_keeps_the_official_split_of_the_real_sample(shared_data):
    table = _sample(shared_data)
    assert table.num_rows == 24
    out = split_table(table.select(["patch_id"]), SplitOptions())
    assert np.array(["train", "validation", "test"])[out.codes].tolist() == table.column("split").to_pylist()
    # T33UUP_26_57: centroid (31800, 69000) from the corner → d = 31800 ≥ s/4 = 27450 → test
    a1, a12 = ring_bounds(109_800.0, (0.5, 0.25, 0.25))
    assert math.isclose(a1, 109_800 * (2 - math.sqrt(2)) / 4) and math.isclose(a12, 27_450.0)


@pytest.mark.parametrize("fractions", [(0.5, 0.25, 0.25), (0.7, 0.1, 0.2), (0.6, 0.4, 0.0), (1.0, 0.0, 0.0)])
def test_ring_areas_equal_the_requested_fractions(fractions):
    s = 109_800.0
    a1, a12 = ring_bounds(s, fractions)
    inner = lambda a: (s - 2 * a) ** 2  # noqa: E731 - area at distance ≥ a from the border
    areas = (s * s - inner(a1), inner(a1) - inner(a12), inner(a12))
    assert np.allclose(np.array(areas) / (s * s), fractions, atol=1e-12)
    # and on a fine grid of patch centroids (10 m patches, 1000 × 1000), within 0.5 %
    x, y = np.meshgrid(np.arange(1000), np.arange(1000))
    codes = tile_border(x.ravel(), y.ravel(), patch_size=10.0, tile_size=10_000.0, fractions=fractions)
    measured = np.bincount(codes, minlength=3) / codes.size
    assert np.allclose(measured, fractions, atol=0.005)


def _table(n_tiles=3, n=12, dates=2) -> pa.Table:
    ids = [
        f"S2A_MSIL2A_2017061{d}T101031_N9999_R022_T33U{'UVW'[t]}P_{x:02d}_{y:02d}"
        for t in range(n_tiles)
        for d in range(dates)
        for x in range(n)
        for y in range(n)
    ]
    return pa.table({"patch_id": ids})


@pytest.mark.parametrize("method", ["tile-border", "tile", "random"])
def test_every_method_is_a_partition_close_to_the_fractions(method):
    table = _table()
    out = split_table(table, SplitOptions(method=method, tile_size=14_400.0, seed=3))
    assert set(np.unique(out.codes)) <= {0, 1, 2} and len(out.codes) == table.num_rows
    counts = np.bincount(out.codes, minlength=3)
    assert counts.sum() == table.num_rows
    if method == "random":  # exact: ⌊f·N⌉ per split
        assert counts.tolist() == [432, 216, 216]
    if method == "tile":  # whole tiles, every date of a tile together
        names = parse_patch_ids(table.column("patch_id"))
        for tile in set(names.tile):
            assert len(set(out.codes[names.tile == tile])) == 1


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    perm_seed=st.integers(0, 2**31),
    method=st.sampled_from(["tile-border", "tile", "random", "block"]),
)
def test_splits_are_stable_under_seed_and_independent_of_row_order(seed, perm_seed, method):
    n = 300
    rng = np.random.default_rng(7)
    ids = [
        f"S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_{x:02d}_{y:02d}" for x in range(20) for y in range(15)
    ]
    lon = 12.0 + rng.random(n)
    lat = 47.0 + rng.random(n)
    table = pa.table({"patch_id": ids, "centroid_lon": lon, "centroid_lat": lat})
    opts = SplitOptions(method=method, seed=seed, block_km=20.0)
    a = split_table(table, opts).codes
    assert np.array_equal(a, split_table(table, opts).codes)
    perm = np.random.default_rng(perm_seed).permutation(n)
    b = split_table(table.take(pa.array(perm)), opts).codes
    assert np.array_equal(a[perm], b)


def test_block_buffer_keeps_lower_splits_away_from_higher_ones():
    x, y = np.meshgrid(np.arange(60) * 1200.0 + 600, np.arange(60) * 1200.0 + 600)
    codes, blocks = block_split(
        x.ravel(), y.ravel(), block_m=6000.0, seed=1, fractions=(0.5, 0.25, 0.25), buffer=1
    )
    assert (codes == -1).any() and {0, 1, 2} <= set(np.unique(codes))
    kept = {tuple(b): c for b, c in zip(blocks.tolist(), codes.tolist(), strict=True) if c >= 0}
    for (bx, by), c in kept.items():
        for dx in (-1, 0, 1):
            for dy in (-1, 0, 1):
                other = kept.get((bx + dx, by + dy))
                assert other is None or other == c or other < c  # a higher split never borders a lower one
    no_buffer, _ = block_split(x.ravel(), y.ravel(), block_m=6000.0, seed=1, fractions=(0.5, 0.25, 0.25))
    assert np.bincount(no_buffer, minlength=3).tolist() == pytest.approx([1800, 900, 900], abs=36 * 2)


def test_random_split_counts_are_exact_and_seeded():
    ids = [f"P_{i}_{i}" for i in range(1001)]
    a = random_split(ids, 0, (0.5, 0.25, 0.25))
    assert np.bincount(a).tolist() == [500, 251, 250]
    assert not np.array_equal(a, random_split(ids, 1, (0.5, 0.25, 0.25)))


def test_bad_inputs_fail_clearly(tmp_path):
    assert parse_fractions("2:1:1") == (0.5, 0.25, 0.25)
    with pytest.raises(InvalidParameterError, match="sum to 1"):
        parse_fractions("0.5,0.5,0.5")
    with pytest.raises(InvalidParameterError, match=r"lie in \[0, 1\]"):
        parse_fractions("1.5,-0.25,-0.25")
    with pytest.raises(InvalidParameterError, match="not one of"):
        SplitOptions(method="kfold").validate()
    with pytest.raises(InvalidParameterError, match=r"not of the form .*'no-indices'"):
        split_table(pa.table({"patch_id": ["a_1_2", "no-indices"]}), SplitOptions())
    with pytest.raises(InvalidParameterError, match="needs them"):
        split_table(pa.table({"patch_id": ["T_1_2"]}), SplitOptions(method="block"))
    with pytest.raises(InvalidParameterError, match="not unique"):
        split_table(pa.table({"patch_id": ["T_1_2", "T_1_2"]}), SplitOptions())


def test_split_of_a_single_official_file_keeps_the_official_schema(shared_data, tmp_path):
    src = shared_data(SAMPLE) / FILES[0]
    out = tmp_path / "meta.parquet"
    _outcome, _files, report = split_target(src, SplitOptions(method="random", seed=5), out=out)
    t = pq.read_table(out)
    assert t.column_names == [
        "patch_id", "labels", "split", "country", "s1_name", "s2v1_name",
        "contains_seasonal_snow", "contains_cloud_or_shadow",
    ]  # fmt: skip
    assert str(t.schema.field("labels").type) == "list<element: string>"
    assert pq.ParquetFile(out).metadata.row_group(0).column(0).compression == "ZSTD"
    assert t.column("patch_id").to_pylist() == sorted(t.column("patch_id").to_pylist())
    assert sorted(t.column("split").to_pylist()) == sorted(["train"] * 9 + ["validation"] * 5 + ["test"] * 4)
    doc = json.loads(report.read_text())
    assert doc["method"] == "random" and report.with_suffix(".txt").is_file()
    assert doc["frame"] == "tile-local" and "note" in doc
    with pytest.raises(OutputExistsError):
        split_target(src, SplitOptions(), out=out)


def test_leakage_random_leaks_and_tile_border_does_not(overlap_work, tmp_path):
    ds = tmp_path / "ds"
    build_metadata(overlap_work, ds, MetadataOptions(keep_unpaired=True))
    side = pq.read_table(ds / "patches.parquet")
    report = json.loads((ds / "split_report.json").read_text())
    assert report["method"] == "tile-border" and report["frame"] == "EPSG:3035"
    # the two tiles' complete patches overlap, and each tile has two dates: both kinds of shared ground
    from rsprep.core.leakage import overlapping_pairs
    from rsprep.core.positions import positions

    names = parse_patch_ids(side.column("patch_id"))
    pos = positions(side, names, patch_size=1200.0)
    i, j = overlapping_pairs(np.zeros(side.num_rows, dtype=np.int8), pos)
    tiles = side.column("tile").to_numpy(zero_copy_only=False)
    assert (tiles[i] != tiles[j]).any() and (tiles[i] == tiles[j]).any()
    assert report["overlapping_pairs"] == len(i) > 0
    assert all(p["overlapping_pairs"] == 0 for p in report["pairs"])
    assert report["overlapping_pairs_same_split"] == report["overlapping_pairs"]

    outcome, _, _ = split_target(ds, SplitOptions(method="random", seed=0))
    leaked = {tuple(p["splits"]): p["overlapping_pairs"] for p in outcome.report["pairs"]}
    assert leaked[("train", "test")] > 0 and sum(leaked.values()) > 0
    near = {tuple(p["splits"]): p["neighbours"]["1.2 km"]["patches"] for p in outcome.report["pairs"]}
    assert near[("train", "test")] > 0
    # every dataset file carries the new split, and the same one
    meta = pq.read_table(ds / "metadata.parquet").select(["patch_id", "split"]).to_pylist()
    side = dict(
        zip(
            *pq.read_table(ds / "patches.parquet").select(["patch_id", "split"]).to_pydict().values(),
            strict=True,
        )
    )
    assert meta and all(side[r["patch_id"]] == r["split"] for r in meta)
    build = json.loads((ds / "build.json").read_text())
    assert build["stages"]["split"]["options"]["method"] == "random"


def test_neighbour_counts_use_exact_grid_distances():
    ids = [f"S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_{x:02d}_00" for x in range(4)]
    table = pa.table(
        {
            "patch_id": ids,
            "epsg": [32633] * 4,
            "left": [300000.0 + 1200 * x for x in range(4)],
            "right": [301200.0 + 1200 * x for x in range(4)],
            "top": [5400000.0] * 4,
            "bottom": [5398800.0] * 4,
        }
    )
    from rsprep.core.leakage import leakage_report
    from rsprep.core.positions import positions

    pos = positions(table, parse_patch_ids(table.column("patch_id")), patch_size=1200.0)
    codes = np.array([0, 2, 0, 0], dtype=np.int8)  # train test train train
    r = leakage_report(codes, pos)
    pair = next(p for p in r["pairs"] if p["splits"] == ["train", "test"])
    assert pair["neighbours"]["1.2 km"] == {
        "train_with_test_neighbour": 2,
        "test_with_train_neighbour": 1,
        "patches": 3,
    }
    assert pair["neighbours"]["5 km"]["train_with_test_neighbour"] == 3
    assert r["overlapping_pairs"] == 0
