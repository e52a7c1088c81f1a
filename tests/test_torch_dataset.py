"""rsprep.torch.BENDataset against the readers, the metadata tables and stats.json (docs/torch.md)."""

from __future__ import annotations

import importlib
import json
import shutil
import sys

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import torch

from rsprep.core import kernels
from rsprep.core.bands import SPECTRAL_BANDS
from rsprep.core.nomenclature import BEN19
from rsprep.errors import InvalidParameterError, RsprepError
from rsprep.formats.readers import LmdbReader, TiffReader, ZarrReader
from rsprep.formats.sources import read_metadata
from rsprep.store import dataset as dsfiles
from rsprep.torch import BENDataset

NOISE = "mixed_sub0.2_add0.1_seed0"
ALL = (*SPECTRAL_BANDS, "VV", "VH")


def _table(root):
    return read_metadata(root, required=True)


def _expected_image(arrays, s1_name, bands, resampling="bilinear"):
    out = []
    for b in bands:
        if b in ("VV", "VH"):
            out.append(arrays[b] if s1_name else np.zeros((120, 120), np.float32))
        else:
            out.append(kernels.to_side(arrays[b][None], 120, resampling, nodata=0)[0])
    return np.stack(out).astype(np.float32)


def _readers(root):
    return {
        "lmdb": lambda p, s: LmdbReader(root / "lmdb").patch(p, s),
        "zarr": lambda p, s: ZarrReader(root / "zarr" / "dataset.zarr").patch(p, s1=s is not None),
        "tiff": lambda p, s: TiffReader(root).patch(p, s),
    }


@pytest.mark.parametrize("fmt", ["lmdb", "zarr", "tiff"])
def test_images_equal_reader_arrays_upsampled(full_dataset, fmt):
    data = BENDataset(full_dataset, format=fmt, split=None, normalize=False, return_map=True, return_id=True)
    assert data.band_names == ALL
    table = _table(full_dataset)
    assert data.patch_ids == table.column("patch_id").to_pylist() and len(data) == 31
    read = _readers(full_dataset)[fmt]
    s1_names = dict(zip(data.patch_ids, table.column("s1_name").to_pylist(), strict=True))
    for i in range(len(data)):
        sample = data[i]
        pid = sample["patch_id"]
        arrays = read(pid, s1_names[pid])
        assert sample["image"].dtype == torch.float32 and sample["image"].shape == (14, 120, 120)
        np.testing.assert_array_equal(sample["image"].numpy(), _expected_image(arrays, s1_names[pid], ALL))
        assert sample["reference_map"].dtype == torch.int64
        np.testing.assert_array_equal(sample["reference_map"].numpy(), arrays["reference_map"])


def test_band_order_subsets_and_nearest(full_dataset):
    order = ["VH", "B04", "B12", "B01"]
    data = BENDataset(full_dataset, split="test", band_order=order, resampling="nearest", normalize=False)
    assert data.band_names == tuple(order)
    table = _table(full_dataset).filter(pc.equal(_table(full_dataset).column("split"), "test"))
    reader = LmdbReader(full_dataset / "lmdb")
    for i, (pid, s1) in enumerate(zip(data.patch_ids, table.column("s1_name").to_pylist(), strict=True)):
        expected = _expected_image(reader.patch(pid, s1), s1, order, "nearest")
        np.testing.assert_array_equal(data[i]["image"].numpy(), expected)
    assert BENDataset(full_dataset, bands="s2", normalize=False).band_names == tuple(SPECTRAL_BANDS)
    assert BENDataset(full_dataset, bands="s1", normalize=False)[0]["image"].shape == (2, 120, 120)
    with pytest.raises(InvalidParameterError, match="band_order"):
        BENDataset(full_dataset, bands="s2", band_order=["VV"], normalize=False)
    with pytest.raises(InvalidParameterError, match="format"):
        BENDataset(full_dataset, format="hdf5", normalize=False)


@pytest.mark.parametrize("class_order", ["alphabetical", "paper"])
def test_labels_multi_hot_in_class_order(full_dataset, class_order):
    data = BENDataset(full_dataset, split=None, class_order=class_order, normalize=False, bands="s1")
    classes = BEN19.alphabetical if class_order == "alphabetical" else BEN19.classes
    assert data.classes == classes
    labels = _table(full_dataset).column("labels").to_pylist()
    for i, names in enumerate(labels):
        got = data[i]["labels"]
        assert got.dtype == torch.float32 and got.shape == (19,)
        assert {classes[j] for j in torch.nonzero(got).flatten().tolist()} == set(names)


def test_split_and_flag_filters_match_parquet_counts(full_dataset):
    table = _table(full_dataset)
    split = table.column("split").to_pylist()
    snow = pc.fill_null(table.column("contains_seasonal_snow"), False).to_pylist()
    cloud = pc.fill_null(table.column("contains_cloud_or_shadow"), False).to_pylist()
    rows = list(zip(split, snow, cloud, strict=True))
    flagged = pq.read_table(full_dataset / dsfiles.FLAGGED).num_rows
    assert len(BENDataset(full_dataset, split=None, normalize=False)) == table.num_rows
    assert table.num_rows == pq.read_table(full_dataset / dsfiles.METADATA).num_rows + flagged
    for name in ("train", "validation", "test"):
        assert len(BENDataset(full_dataset, split=name, normalize=False)) == split.count(name)
    both = BENDataset(full_dataset, split=["train", "test"], normalize=False)
    assert len(both) == split.count("train") + split.count("test")
    for snowy, cloudy in ((False, True), (True, False), (False, False)):
        want = sum(1 for _, s, c in rows if (snowy or not s) and (cloudy or not c))
        got = BENDataset(
            full_dataset, split=None, include_snowy=snowy, include_cloudy=cloudy, normalize=False
        )
        assert len(got) == want
    clean = BENDataset(full_dataset, split=None, include_snowy=False, include_cloudy=False, normalize=False)
    assert len(clean) == table.num_rows - flagged


@pytest.mark.parametrize("variant", [NOISE, "uniform"])
def test_noise_variant_labels(full_dataset, tmp_path, variant):
    root = full_dataset
    if variant == "uniform":  # the demo variant changes few labels: a heavier one on a copy
        from rsprep.core.noise import NoiseOptions
        from rsprep.stages.noise import make_noise

        root = tmp_path / "ds"
        shutil.copytree(full_dataset, root)
        make_noise(root, NoiseOptions(mode="uniform", rate=0.3), name=variant)
    by_id = {r["patch_id"]: r for r in pq.read_table(root / "noise" / f"{variant}.parquet").to_pylist()}
    clean = dict(zip(*_table(root).select(["patch_id", "labels"]).to_pydict().values(), strict=True))
    data = BENDataset(root, split=None, noise=variant, normalize=False, bands="s1", return_id=True)
    changed = 0
    for i in range(len(data)):
        sample = data[i]
        row = by_id.get(sample["patch_id"], {"split": None, "labels": clean[sample["patch_id"]]})
        want = row["labels_noisy"] if row["split"] == "train" else row["labels"]
        changed += row["split"] == "train" and set(row["labels_noisy"]) != set(row["labels"])
        got = {data.classes[j] for j in torch.nonzero(sample["labels"]).flatten().tolist()}
        assert got == set(want)
    assert changed > 0 or variant == NOISE


def test_normalisation_recovers_raw_values(full_dataset, tmp_path):
    from rsprep.stages.stats import StatsOptions, compute_stats, write_stats

    root = tmp_path / "ds"
    shutil.copytree(full_dataset, root)
    path = write_stats(root, StatsOptions())
    for resampling in ("bilinear", "nearest"):
        raw = BENDataset(root, split=None, resampling=resampling, normalize=False)
        norm = BENDataset(root, split=None, resampling=resampling)
        explicit = BENDataset(root, split=None, resampling=resampling, stats=path)
        assert np.array_equal(norm.mean, explicit.mean) and np.array_equal(norm.std, explicit.std)
        for i in range(len(raw)):
            image = norm[i]["image"].numpy()
            back = image * norm.std[:, None, None] + norm.mean[:, None, None]
            np.testing.assert_allclose(back, raw[i]["image"].numpy(), rtol=1e-5, atol=1e-2)
        # S2 bands: the stacked figures of this resampling (= native for 10 m bands); S1: native
        doc = json.loads(path.read_text())
        for c, band in enumerate(norm.band_names):
            fig = doc["bands"][band] if band in ("VV", "VH") else doc["stacked"][resampling][band]
            assert norm.mean[c] == np.float32(fig["mean"]) and norm.std[c] == np.float32(fig["std"])
    # without stats.json the figures are computed on the fly: those of the file, to float32
    for fmt in ("lmdb", "zarr"):
        fly, bilinear = BENDataset(full_dataset, format=fmt, split="test"), BENDataset(root, split="test")
        np.testing.assert_allclose(fly.mean, bilinear.mean, rtol=1e-6)
        np.testing.assert_allclose(fly.std, bilinear.std, rtol=1e-5)
    given = BENDataset(full_dataset, split="test", stats=compute_stats(full_dataset, StatsOptions()))
    assert np.array_equal(given.mean, bilinear.mean) and np.array_equal(given.std, bilinear.std)


@pytest.mark.parametrize("context", ["fork", "spawn"])
@pytest.mark.parametrize("fmt", ["lmdb", "zarr"])
def test_dataloader_workers_give_same_batches(full_dataset, fmt, context):
    from torch.utils.data import DataLoader

    data = BENDataset(full_dataset, format=fmt, split=None, normalize=False, return_id=True, return_map=True)
    # the parent reads first: its numba kernels start GNU OpenMP and it opens the LMDB environment,
    # both of which a forked worker must cope with (fork is the DataLoader default on Linux)
    first = data[0]
    batches = {}
    for workers in (0, 2):
        ctx = context if workers else None
        loader = DataLoader(
            data, batch_size=4, shuffle=False, num_workers=workers, multiprocessing_context=ctx
        )
        batches[workers] = list(loader)
    assert len(batches[0]) == len(batches[2]) == 8
    assert torch.equal(batches[2][0]["image"][0], first["image"])
    for a, b in zip(batches[0], batches[2], strict=True):
        assert a["patch_id"] == b["patch_id"]
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["labels"], b["labels"])
        assert torch.equal(a["reference_map"], b["reference_map"])


def test_batched_getitems_equal_per_sample(full_dataset, tmp_path):
    from rsprep.stages.stats import StatsOptions, write_stats

    root = tmp_path / "ds"
    shutil.copytree(full_dataset, root)
    write_stats(root, StatsOptions())
    for fmt, resampling in (("lmdb", "bilinear"), ("zarr", "nearest"), ("lmdb", "nearest")):
        data = BENDataset(root, format=fmt, split=None, resampling=resampling, return_map=True)
        rows = [5, 0, 30, 7, 7, -1]
        batch = data.__getitems__(rows)
        for i, got in zip(rows, batch, strict=True):
            one = data[i]
            for key in ("image", "labels", "reference_map"):
                assert torch.equal(got[key], one[key])
        with pytest.raises(IndexError):
            data.__getitems__([0, len(data)])


def test_clear_error_without_torch(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    for name in ("rsprep.torch", "rsprep.torch.dataset"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    package = importlib.import_module("rsprep.torch")
    with pytest.raises(RsprepError, match=r"torch is not installed: pip install 'rsprep\[train\]'"):
        package.BENDataset  # noqa: B018 - the lazy attribute is the code under test
    with pytest.raises(RsprepError, match="torch is not installed"):
        exec("from rsprep.torch import BENDataset", {})
    dataset_module = importlib.import_module("rsprep.torch.dataset")
    with pytest.raises(RsprepError, match="torch is not installed"):
        dataset_module.BENDataset("unused")
