"""Label noise (docs/noise.md): invariants of every mode, exact counts, determinism, files vs report."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st

from rsprep.core.labels import label_patches
from rsprep.core.noise import label_matrix
from rsprep.core.nomenclature import BEN19
from rsprep.errors import InvalidParameterError, OutputExistsError
from rsprep.stages.noise import NoiseOptions, make_noise

CLASSES = list(BEN19.classes)
ALPHA = sorted(CLASSES)


def _labels_table(n=3000, seed=0) -> pa.Table:
    rng = np.random.default_rng(seed)
    prevalence = np.linspace(0.02, 0.6, len(CLASSES))
    y = rng.random((n, len(CLASSES))) < prevalence
    y[:, 0] |= ~y.any(axis=1)  # at least one label
    labels = [[c for c in ALPHA if y[i, CLASSES.index(c)]] for i in range(n)]
    split = np.array(["train", "validation", "test"])[rng.integers(0, 3, n)]
    ids = [f"S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_{i % 91:02d}_{i // 91:02d}" for i in range(n)]
    return pa.table({"patch_id": ids, "labels": labels, "split": split})


@pytest.fixture(scope="module")
def table_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("noise") / "meta.parquet"
    pq.write_table(_labels_table(), path)
    return path


def _run(path, tmp_path, **kw):
    out = tmp_path / "noise"
    report = make_noise(path, NoiseOptions(**kw), out_dir=out, overwrite=True, name="v")
    t = pq.read_table(out / "v.parquet")
    clean = label_matrix(t.column("labels"), CLASSES)
    noisy = label_matrix(t.column("labels_noisy"), CLASSES)
    split = np.asarray(t.column("split").to_numpy(zero_copy_only=False), dtype=object)
    return report, clean, noisy, split, out


def test_subtractive_never_adds_and_removes_exactly_floor_rate_pc(table_file, tmp_path):
    report, clean, noisy, split, _ = _run(table_file, tmp_path, mode="subtractive", rate=0.3)
    assert not (noisy & ~clean).any()
    train = split == "train"
    removed = (clean & ~noisy)[train].sum(axis=0)
    assert removed.tolist() == [math.floor(0.3 * p) for p in clean[train].sum(axis=0)]
    assert (clean[~train] == noisy[~train]).all()  # validation and test untouched
    assert [c["removed"] for c in report["classes"]] == removed.tolist()


def test_additive_never_removes_and_respects_the_cap(table_file, tmp_path):
    report, clean, noisy, split, _ = _run(table_file, tmp_path, mode="additive", rate=1.0, cap=0.9)
    assert not (clean & ~noisy).any()
    train = split == "train"
    n = train.sum()
    pc_ = clean[train].sum(axis=0)
    added = (noisy & ~clean)[train].sum(axis=0)
    expected = [min(math.floor(1.0 * p), math.floor(0.9 * n) - p) for p in pc_]
    assert added.tolist() == expected
    assert (noisy[train].mean(axis=0) <= 0.9 + 1e-12).all()
    hit = [c["cap_hit"] for c in report["classes"]]
    assert hit == [math.floor(p) > math.floor(0.9 * n) - p for p in pc_] and any(hit)


def test_mixed_removals_and_additions_never_touch_the_same_entry(table_file, tmp_path):
    _report, clean, noisy, split, out = _run(
        table_file, tmp_path, mode="mixed", sub_rate=0.2, add_rate=0.1, splits=("train", "validation")
    )
    rows = np.isin(split, ["train", "validation"])
    pc_ = clean[rows].sum(axis=0)
    assert (clean & ~noisy)[rows].sum(axis=0).tolist() == [math.floor(0.2 * p) for p in pc_]
    assert (noisy & ~clean)[rows].sum(axis=0).tolist() == [math.floor(0.1 * p) for p in pc_]
    assert (clean[split == "test"] == noisy[split == "test"]).all()
    flips = pq.read_table(out / "v_flips.parquet").to_pylist()
    keys = [(f["patch_id"], f["class"]) for f in flips]
    assert len(keys) == len(set(keys))  # an entry is either removed or added, once


def test_bernoulli_is_within_four_sigma(table_file, tmp_path):
    rate = 0.3
    _, clean, noisy, split, _ = _run(
        table_file, tmp_path, mode="subtractive", rate=rate, sampling="bernoulli"
    )
    train = split == "train"
    for c in range(len(CLASSES)):
        p = clean[train, c].sum()
        removed = (clean & ~noisy)[train, c].sum()
        assert abs(removed - rate * p) <= 4 * math.sqrt(p * rate * (1 - rate)) + 1e-9


def test_uniform_exact_flips_floor_p_n_per_class(table_file, tmp_path):
    _, clean, noisy, split, _ = _run(table_file, tmp_path, mode="uniform", rate=0.05)
    train = split == "train"
    flips = (clean != noisy)[train].sum(axis=0)
    assert flips.tolist() == [math.floor(0.05 * train.sum())] * len(CLASSES)


def test_sample_flips_a_fraction_of_classes_in_a_fraction_of_patches(table_file, tmp_path):
    _, clean, noisy, split, _ = _run(
        table_file, tmp_path, mode="sample", patch_rate=0.2, class_rate=0.1, splits=("train",)
    )
    train = split == "train"
    per_patch = (clean != noisy)[train].sum(axis=1)
    assert (per_patch[per_patch > 0] == math.floor(0.1 * len(CLASSES))).all()
    assert (per_patch > 0).sum() == math.floor(0.2 * train.sum())


def test_min_labels_never_empties_a_patch(table_file, tmp_path):
    noisy = _run(table_file, tmp_path, mode="subtractive", rate=0.9, min_labels=1)[2]
    assert noisy.any(axis=1).all()
    noisy = _run(table_file, tmp_path, mode="subtractive", rate=0.9)[2]
    assert not noisy.any(axis=1).all()  # without it, some patches lose every label


@pytest.mark.parametrize(
    "kw",
    [
        {"mode": "mixed", "sub_rate": 0.3, "add_rate": 0.2},
        {"mode": "uniform", "rate": 0.1, "sampling": "bernoulli"},
        {"mode": "sample", "patch_rate": 0.3, "class_rate": 0.2},
    ],
)
def test_deterministic_and_independent_of_row_order(table_file, tmp_path, kw):
    _, _, _, _, out = _run(table_file, tmp_path / "a", **kw, seed=11)
    first = (out / "v.parquet").read_bytes(), (out / "v_flips.parquet").read_bytes()
    _, _, _, _, out = _run(table_file, tmp_path / "b", **kw, seed=11)
    assert ((out / "v.parquet").read_bytes(), (out / "v_flips.parquet").read_bytes()) == first
    shuffled = tmp_path / "shuffled.parquet"
    t = pq.read_table(table_file)
    pq.write_table(t.take(pa.array(np.random.default_rng(5).permutation(t.num_rows))), shuffled)
    _, _, _, _, out = _run(shuffled, tmp_path / "c", **kw, seed=11)
    assert ((out / "v.parquet").read_bytes(), (out / "v_flips.parquet").read_bytes()) == first
    _, _, _, _, out = _run(table_file, tmp_path / "d", **kw, seed=12)
    assert (out / "v.parquet").read_bytes() != first[0]


def test_statistics_recomputed_from_files_equal_the_report(table_file, tmp_path):
    matrix = tmp_path / "m.json"
    matrix.write_text(json.dumps({"Arable land": [0.3, 0.05], "Pastures": {"p10": 0.1, "p01": 0.2}}))
    report, clean, noisy, split, out = _run(table_file, tmp_path, mode="matrix", matrix=matrix)
    flips = pq.read_table(out / "v_flips.parquet").to_pandas()
    for c in report["classes"]:
        mine = flips[flips["class"] == c["name"]]
        assert (mine.action == "remove").sum() == c["removed"] and (mine.action == "add").sum() == c["added"]
        i = CLASSES.index(c["name"])
        train = split == "train"
        assert c["positives"] == clean[train, i].sum() and c["positives_noisy"] == noisy[train, i].sum()
    arable = next(c for c in report["classes"] if c["name"] == "Arable land")
    assert arable["removed"] == math.floor(0.3 * arable["positives"])
    assert arable["added"] == math.floor(0.05 * arable["negatives"])
    assert report["totals"]["removed"] == len(flips[flips.action == "remove"])
    assert report["input"]["sha256"] and report["configuration"]["mode"] == "matrix"
    assert report["rsprep_version"] and report["seed"] == 0


@settings(max_examples=25, deadline=None)
@given(rate=st.floats(0, 1), seed=st.integers(0, 1000), mode=st.sampled_from(["subtractive", "additive"]))
def test_noise_direction_property(rate, seed, mode, tmp_path_factory):
    path = tmp_path_factory.mktemp("prop") / "t.parquet"
    pq.write_table(_labels_table(200, seed=seed), path)
    _, clean, noisy, _, _ = _run(path, path.parent, mode=mode, rate=rate, seed=seed)
    if mode == "subtractive":
        assert not (noisy & ~clean).any()
    else:
        assert not (clean & ~noisy).any()


def test_invalid_requests_fail_clearly(table_file, tmp_path):
    with pytest.raises(InvalidParameterError, match=r"--rate must lie in \[0, 1\], got 1.5"):
        make_noise(table_file, NoiseOptions(mode="subtractive", rate=1.5), out_dir=tmp_path)
    with pytest.raises(InvalidParameterError, match=r"unknown class.*'Glaciers'"):
        make_noise(
            table_file, NoiseOptions(mode="subtractive", rate=0.1, classes=("Glaciers",)), out_dir=tmp_path
        )
    with pytest.raises(InvalidParameterError, match="--mode mixed needs --add-rate"):
        make_noise(table_file, NoiseOptions(mode="mixed", sub_rate=0.1), out_dir=tmp_path)
    with pytest.raises(InvalidParameterError, match=r"prevalence already above the cap .*'Marine waters'"):
        make_noise(table_file, NoiseOptions(mode="additive", rate=0.1, cap=0.5), out_dir=tmp_path)
    bad = tmp_path / "m.csv"
    bad.write_text("class,p10,p01\nArable land,0.1,1.5\n")
    with pytest.raises(InvalidParameterError, match="outside"):
        make_noise(table_file, NoiseOptions(mode="matrix", matrix=bad), out_dir=tmp_path)
    make_noise(table_file, NoiseOptions(mode="subtractive", rate=0.1), out_dir=tmp_path, name="x")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        make_noise(table_file, NoiseOptions(mode="subtractive", rate=0.1), out_dir=tmp_path, name="x")


def test_default_name_from_mode_rates_and_seed():
    assert NoiseOptions(mode="subtractive", rate=0.3, seed=2).default_name() == "subtractive_0.3_seed2"
    assert (
        NoiseOptions(mode="mixed", sub_rate=0.2, add_rate=0.1, sampling="bernoulli").default_name()
        == "mixed_sub0.2_add0.1_seed0_bernoulli"
    )


def test_swap_labels_equal_the_classes_of_the_noisy_maps(dataset, tmp_path):
    dataset = Path(shutil.copytree(dataset, tmp_path / "ds"))  # the session fixture stays as built
    report = make_noise(
        dataset, NoiseOptions(mode="swap", rate=1.0, splits=("train", "validation", "test")), overwrite=True
    )
    assert report["totals"]["swaps"] > 0
    name = report["name"]
    t = pq.read_table(dataset / "noise" / f"{name}.parquet")
    noisy = dict(zip(t.column("patch_id").to_pylist(), t.column("labels_noisy").to_pylist(), strict=True))
    clean = dict(zip(t.column("patch_id").to_pylist(), t.column("labels").to_pylist(), strict=True))
    g = zarr.open_group(dataset / "noise" / f"{name}_reference_maps.zarr", mode="r")
    arr = g["reference_map"]
    ids = arr.attrs["patch_id"]
    derived = label_patches(arr[:], BEN19)
    for i, pid in enumerate(ids):
        assert noisy[pid] == derived.labels(i)
        frm, to = arr.attrs["swap_from"][i], arr.attrs["swap_to"][i]
        assert frm in clean[pid] and frm not in noisy[pid] and to in noisy[pid] and to not in clean[pid]
    untouched = set(noisy) - set(ids)
    assert all(noisy[p] == clean[p] for p in untouched)
