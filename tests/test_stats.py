"""``rsprep stats`` (docs/stats.md): the streaming accumulators against numpy, every figure of the demo
dataset against a direct numpy computation, the sources, sampling, labels, refusal and the CLI."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from rsprep.cli.main import app
from rsprep.core.bands import SPECTRAL_BANDS
from rsprep.core.kernels import to_side
from rsprep.core.moments import FloatMoments, IntMoments, rank
from rsprep.core.nomenclature import BEN19
from rsprep.errors import InputNotFoundError, InvalidParameterError, OutputExistsError
from rsprep.formats.readers import LmdbReader, ZarrReader
from rsprep.stages.stats import STATS, StatsOptions, compute_stats, parse_sample, stats_text, write_stats
from rsprep.store import dataset as ds

runner = CliRunner()
S1 = ("VV", "VH")


# --------------------------------------------------------------------------------------------
# numpy references
# --------------------------------------------------------------------------------------------
def _expected(values: np.ndarray) -> dict:
    """Every figure of one band by plain numpy: S2 (uint16, nodata 0) or S1 (float, nodata non-finite)."""
    v = np.asarray(values).ravel()
    valid = v[v != 0] if v.dtype == np.uint16 else v[np.isfinite(v)]
    out = {"count": int(valid.size), "nodata": int(v.size - valid.size)}
    x = valid.astype(np.float64)
    out |= {"mean": float(np.mean(x)), "std": float(np.std(x)), "min": x.min(), "max": x.max()}
    for p in (1, 99):
        out[f"p{p}"] = float(np.percentile(valid, p, method="inverted_cdf"))
    return out


def _assert_band(got: dict, want: dict, *, s1: bool) -> None:
    assert got["count"] == want["count"] and got["nodata"] == want["nodata"]
    assert got["min"] == want["min"] and got["max"] == want["max"]
    np.testing.assert_allclose([got["mean"], got["std"]], [want["mean"], want["std"]], rtol=1e-12)
    for p in ("p1", "p99"):
        if s1:
            assert abs(got[p] - want[p]) <= 0.01, (p, got[p], want[p])
        else:
            assert got[p] == want[p] and isinstance(got[p], int)


def _tables(root) -> pa.Table:
    files = [root / ds.METADATA, root / ds.FLAGGED]
    return pa.concat_tables([ds.conform_metadata(pq.read_table(f), f) for f in files]).sort_by("patch_id")


def _train(root) -> list[tuple[str, str | None]]:
    t = _tables(root).to_pylist()
    return [(r["patch_id"], r["s1_name"]) for r in t if r["split"] == "train"]


def _read_lmdb(root, rows) -> dict[str, np.ndarray]:
    """The train patches read independently, one LMDB key at a time, stacked per band."""
    reader = LmdbReader(root / "lmdb")
    patches = [reader.patch(p, s, reference_map=False) for p, s in rows]
    out = {b: np.stack([d[b] for d in patches]) for b in SPECTRAL_BANDS}
    return out | {b: np.stack([d[b] for d in patches if b in d]) for b in S1}


def _check_all(result: dict, pixels: dict[str, np.ndarray]) -> None:
    for b in (*SPECTRAL_BANDS, *S1):
        _assert_band(result["bands"][b], _expected(pixels[b]), s1=b in S1)
    for method in ("bilinear", "nearest"):
        for b in SPECTRAL_BANDS:
            stacked = to_side(pixels[b], 120, method, nodata=0)
            assert stacked.shape[1:] == (120, 120) and stacked.dtype == np.uint16
            got = result["stacked"][method][b]
            _assert_band(got, _expected(stacked), s1=False)
            assert got["resolution_m"] == 10
        loader = result["loader"][method]
        assert loader["mean"] == [result["stacked"][method][b]["mean"] for b in SPECTRAL_BANDS]
        assert loader["std"] == [result["stacked"][method][b]["std"] for b in SPECTRAL_BANDS]
    native = result["order"]["native"]
    assert native == [*SPECTRAL_BANDS, *S1]
    assert result["loader"]["native"]["mean"] == [result["bands"][b]["mean"] for b in native]


# --------------------------------------------------------------------------------------------
# The accumulators
# --------------------------------------------------------------------------------------------
def _smooth(rng, n, side, zeros=0.0) -> np.ndarray:
    a = (
        1500
        + np.cumsum(rng.integers(-300, 301, (n, side, side)), axis=2)
        + rng.integers(0, 200, (n, side, side))
    )
    a = np.clip(a, 1, 65535).astype(np.uint16)
    a[rng.random(a.shape) < zeros] = 0
    return a


def test_rank_is_numpys_inverted_cdf():
    for n in [*range(1, 500), 10_000, 10**6 + 1]:
        data = np.arange(n)
        for p in (1, 99):
            assert rank(n, p) == int(np.percentile(data, p, method="inverted_cdf")), (n, p)
    assert rank(1, 1) == 0 and rank(100, 1) == 0 and rank(101, 1) == 1 and rank(100, 99) == 98


@pytest.mark.parametrize("zeros", [0.0, 0.03, 1.0])
def test_int_moments_match_numpy(zeros):
    a = _smooth(np.random.default_rng(1), 9, 60, zeros)
    m = IntMoments()
    m.add(a)
    assert np.array_equal(m.hist, np.bincount(a.ravel(), minlength=65536))
    got = m.summary()
    if zeros == 1.0:
        assert got["count"] == 0 and got["nodata"] == a.size and got["mean"] is None
    else:
        _assert_band(got, _expected(a), s1=False)


@pytest.mark.parametrize("scale", [1, 10**6])
def test_int_moments_are_correctly_rounded_beyond_int64_sums(scale):
    """reBEN-sized counts (Σ c·v² beyond int64) take exact Python integers: the same rounding."""
    from fractions import Fraction

    m = IntMoments()
    m.hist[[0, 1, 2, 4000, 65535]] = np.array([7, 3, 5, 11, 2]) * scale * 1000
    got = m.summary()
    vals, cnt = [1, 2, 4000, 65535], [3 * scale * 1000, 5 * scale * 1000, 11 * scale * 1000, 2 * scale * 1000]
    n = sum(cnt)
    mean = Fraction(sum(c * v for c, v in zip(cnt, vals, strict=True)), n)
    var = Fraction(sum(c * v * v for c, v in zip(cnt, vals, strict=True)), n) - mean**2
    assert got["count"] == n and got["nodata"] == 7 * scale * 1000
    assert got["mean"] == float(mean) and got["std"] == math.sqrt(float(var))
    assert (got["min"], got["max"], got["p1"], got["p99"]) == (1, 65535, 1, 65535)


@pytest.mark.parametrize("side", [60, 20, 40, 120])
@pytest.mark.parametrize("zeros", [0.0, 0.02, 0.5])
def test_bilinear_histogram_equals_to_side(side, zeros):
    """The fused kernel histograms exactly the values of the stack stage's bilinear upsampling."""
    a = _smooth(np.random.default_rng(side), 7, side, zeros)
    a[0] = a[0, 0, 0]  # a constant patch
    a[1, :, 0] = 65535  # the top of the range
    m = IntMoments()
    m.add_bilinear(a, 120 // side)
    ref = to_side(a, 120, "bilinear", nodata=0)
    assert np.array_equal(m.hist, np.bincount(ref.ravel(), minlength=65536))
    n = IntMoments()
    n.add(a)
    near = np.bincount(to_side(a, 120, "nearest", nodata=0).ravel(), minlength=65536)
    assert np.array_equal(n.repeated((120 // side) ** 2).hist, near)


def test_float_moments_match_numpy_with_nodata_and_out_of_range():
    rng = np.random.default_rng(3)
    a = rng.normal(-14, 5, (5, 120, 120)).astype(np.float32)
    a[0, :3] = np.nan
    a[1, 0, :4] = [np.inf, -np.inf, -150.0, 60.0]  # nodata, and values outside the histogram range
    m = FloatMoments()
    for part in np.array_split(a, 3):
        m.add(part)
    got = m.summary()
    _assert_band(got, _expected(a), s1=True)
    assert (got["nodata"], m.under, m.over) == (3 * 120 + 2, 1, 1)
    assert got["min"] == -150.0 and got["max"] == 60.0
    one = FloatMoments()
    one.add(np.array([-7.25], np.float32))
    assert one.summary() == {
        "count": 1,
        "nodata": 0,
        "mean": -7.25,
        "std": 0.0,
        "min": -7.25,
        "max": -7.25,
        "p1": -7.25,
        "p99": -7.25,
    }


def test_accumulators_refuse_other_dtypes():
    with pytest.raises(TypeError):
        IntMoments().add(np.zeros(3, np.int32))
    with pytest.raises(TypeError):
        FloatMoments().add(np.zeros(3, np.uint16))


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(st.integers(0, 65535), min_size=1, max_size=300),
    floats=st.lists(
        st.one_of(st.floats(-120, 60, width=32), st.just(float("nan"))), min_size=1, max_size=300
    ),
    cuts=st.lists(st.integers(0, 300), max_size=6),
)
def test_merging_batches_in_any_split_equals_one_pass(values, floats, cuts):
    ints = np.array(values, np.uint16)
    flts = np.array(floats, np.float32)
    whole_i, whole_f = IntMoments(), FloatMoments()
    whole_i.add(ints)
    whole_f.add(flts)
    parts_i, parts_f = IntMoments(), FloatMoments()
    for a in np.split(ints, sorted(c % (len(ints) + 1) for c in cuts)):
        p = IntMoments()
        p.add(a)
        parts_i = parts_i.merge(p)
    for a in np.split(flts, sorted(c % (len(flts) + 1) for c in cuts)):
        p = FloatMoments()
        p.add(a)
        parts_f = p.merge(parts_f) if len(a) % 2 else parts_f.merge(p)  # merged in either order
    assert parts_i.summary() == whole_i.summary() and np.array_equal(parts_i.hist, whole_i.hist)
    a, b = parts_f.summary(), whole_f.summary()
    for k in ("count", "nodata", "min", "max", "p1", "p99"):
        assert a[k] == b[k]
    assert np.array_equal(parts_f.hist, whole_f.hist) and (parts_f.under, parts_f.over) == (
        whole_f.under,
        whole_f.over,
    )
    if b["count"]:
        assert math.isclose(a["mean"], b["mean"], rel_tol=1e-9, abs_tol=1e-9)
        assert math.isclose(a["std"], b["std"], rel_tol=1e-9, abs_tol=1e-9)


# --------------------------------------------------------------------------------------------
# The demo dataset
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def zarr_stats(full_dataset) -> dict:
    return compute_stats(full_dataset, StatsOptions(source="zarr"))


def test_every_figure_equals_numpy_on_the_train_patches(full_dataset, zarr_stats):
    rows = _train(full_dataset)
    assert zarr_stats["patches"] == len(rows) > 0 and zarr_stats["split"] == "train"
    assert zarr_stats["sample"] is None and zarr_stats["source"] == "zarr"
    assert zarr_stats["format"] == "rsprep-stats" and zarr_stats["version"] == 1
    pixels = _read_lmdb(full_dataset, rows)
    assert len(pixels["VV"]) == sum(s is not None for _, s in rows)
    _check_all(zarr_stats, pixels)
    assert {b: zarr_stats["bands"][b]["resolution_m"] for b in ("B01", "B02", "B05", "VV")} == {
        "B01": 60,
        "B02": 10,
        "B05": 20,
        "VV": 10,
    }


@pytest.mark.parametrize("source", ["lmdb", "tiff", "workstore"])
def test_every_source_gives_the_same_file(full_dataset, zarr_stats, source):
    other = compute_stats(full_dataset, StatsOptions(source=source))
    assert other["source"] == source
    assert stats_text(other | {"source": "zarr"}) == stats_text(zarr_stats)


def test_auto_source_and_batch_size_do_not_change_the_result(full_dataset, zarr_stats):
    auto = compute_stats(full_dataset, StatsOptions())
    assert stats_text(auto) == stats_text(zarr_stats)
    small = compute_stats(full_dataset, StatsOptions(source="lmdb", batch_size=3))
    assert small["stacked"] == zarr_stats["stacked"]  # S2: exact whatever the batches
    for band in (*SPECTRAL_BANDS, *S1):
        got, want = small["bands"][band], zarr_stats["bands"][band]
        if band in SPECTRAL_BANDS:
            assert got == want
        else:  # S1: the same up to float rounding of the batch sums
            assert {k: got[k] for k in got if k not in ("mean", "std")} == {
                k: want[k] for k in want if k not in ("mean", "std")
            }
            np.testing.assert_allclose([got["mean"], got["std"]], [want["mean"], want["std"]], rtol=1e-13)


def test_nodata_is_excluded_and_counted(full_dataset, tmp_path):
    import zarr

    root = shutil.copytree(full_dataset, tmp_path / "ds")
    store = root / "zarr" / "dataset.zarr"
    reader = ZarrReader(store)
    rows = _train(root)
    r0, r1 = reader.row(rows[0][0]), reader.row(rows[1][0])
    group = zarr.open_group(store, mode="r+")
    group["s2/B05"][r0, :13, :7] = 0
    group["s2/B01"][r1, 5:, :] = 0
    group["s2/B02"][r1, 0, :50] = 0
    group["s1/VV"][r0, :2, :] = np.nan
    result = compute_stats(root, StatsOptions(source="zarr"))
    reader = ZarrReader(store)
    patches = [reader.patch(p, s1=True) for p, _ in rows]
    pixels = {b: np.stack([d[b] for d in patches]) for b in (*SPECTRAL_BANDS, *S1)}
    assert result["bands"]["B05"]["nodata"] == 13 * 7 and result["bands"]["VV"]["nodata"] == 240
    assert result["stacked"]["nearest"]["B01"]["nodata"] == 15 * 20 * 36
    _check_all(result, pixels)


def test_sampling_is_seeded_and_recorded(full_dataset):
    rows = _train(full_dataset)
    a = compute_stats(full_dataset, StatsOptions(sample=5, seed=3, source="lmdb"))
    assert a["sample"] == {"patches": 5, "of": len(rows), "seed": 3} and a["patches"] == 5
    pick = np.sort(np.random.default_rng(3).choice(len(rows), size=5, replace=False))  # docs/stats.md
    _check_all(a, _read_lmdb(full_dataset, [rows[i] for i in pick]))
    assert stats_text(compute_stats(full_dataset, StatsOptions(sample=5, seed=3))) == stats_text(
        a | {"source": "zarr"}
    )
    assert compute_stats(full_dataset, StatsOptions(sample=5, seed=4))["bands"] != a["bands"]
    half = compute_stats(full_dataset, StatsOptions(sample=0.5))
    assert half["sample"]["patches"] == math.floor(0.5 * len(rows) + 0.5)
    whole = compute_stats(full_dataset, StatsOptions(sample=len(rows) + 10))
    assert whole["sample"] is None and whole["patches"] == len(rows)


def test_label_frequencies_per_split_equal_the_tables(full_dataset, zarr_stats):
    labels = zarr_stats["labels"]
    assert labels["class_order"] == "alphabetical" and labels["classes"] == sorted(BEN19.classes)
    rows = _tables(full_dataset).to_pylist()
    for split in ("train", "validation", "test"):
        mine = [r for r in rows if r["split"] == split]
        assert labels["patches_per_split"][split] == len(mine)
        want = {c: sum(c in r["labels"] for r in mine) for c in labels["classes"]}
        assert labels["per_split"][split] == want
    assert sum(labels["patches_per_split"].values()) == len(rows) == 31


def test_write_refuses_to_replace_and_records_the_stage(full_dataset, tmp_path):
    root = shutil.copytree(full_dataset, tmp_path / "ds")
    out = write_stats(root, StatsOptions())
    assert out == root / STATS
    text = out.read_text()
    assert text == stats_text(json.loads(text)) and "NaN" not in text
    with pytest.raises(OutputExistsError, match=r"stats\.json"):
        write_stats(root, StatsOptions())
    assert out.read_text() == text
    write_stats(root, StatsOptions(sample=3), overwrite=True)
    assert json.loads(out.read_text())["sample"]["patches"] == 3
    record = ds.read_build(root)["stages"]["stats"]
    assert record["source"] == "zarr" and record["patches"] == 3 and record["options"]["sample"] == 3
    assert not list(root.glob(".stats.json*"))


def test_options_and_sources_are_validated(full_dataset, tmp_path):
    for bad in (
        StatsOptions(sample=0),
        StatsOptions(sample=1.5),
        StatsOptions(source="hdf5"),
        StatsOptions(seed=-1),
    ):
        with pytest.raises(InvalidParameterError):
            bad.validate()
    assert parse_sample("100") == 100 and parse_sample("0.25") == 0.25 and parse_sample(None) is None
    with pytest.raises(InvalidParameterError, match="--sample"):
        parse_sample("many")
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in (ds.METADATA, ds.FLAGGED):
        shutil.copy(full_dataset / name, bare / name)
    with pytest.raises(InputNotFoundError, match="rsprep convert zarr"):
        compute_stats(bare, StatsOptions())
    with pytest.raises(InputNotFoundError, match="lmdb"):
        compute_stats(bare, StatsOptions(source="lmdb"))
    with pytest.raises(ds.DatasetError, match="train"):
        table = pq.read_table(bare / ds.METADATA)
        ds.write_metadata(
            table.set_column(2, "split", pa.array(["test"] * table.num_rows)), bare / ds.METADATA
        )
        (bare / ds.FLAGGED).unlink()
        compute_stats(bare, StatsOptions())


def test_cli(full_dataset, tmp_path):
    root = shutil.copytree(full_dataset, tmp_path / "ds")
    r = runner.invoke(app, ["stats", str(root)])
    assert r.exit_code == 0, r.output
    assert "B02" in r.stdout and "VH" in r.stdout and f"wrote {root / STATS}" in r.stdout
    again = runner.invoke(app, ["stats", str(root)])
    assert again.exit_code == 1 and "exists; pass --overwrite" in again.output
    js = runner.invoke(app, ["stats", str(root), "--overwrite", "--json", "--sample", "4", "--seed", "1"])
    assert js.exit_code == 0, js.output
    doc = json.loads(js.stdout)
    assert doc == json.loads((root / STATS).read_text()) and doc["sample"]["seed"] == 1
    quiet = runner.invoke(app, ["-q", "stats", str(root), "--overwrite", "--source", "tiff"])
    assert quiet.exit_code == 0 and quiet.stdout == ""
    assert json.loads((root / STATS).read_text())["source"] == "tiff"
    assert runner.invoke(app, ["stats", str(root), "--overwrite", "--sample", "x"]).exit_code == 1
    assert runner.invoke(app, ["stats", str(root), "--overwrite", "--source", "nope"]).exit_code == 1
    assert runner.invoke(app, ["stats", str(tmp_path / "missing")]).exit_code == 1
