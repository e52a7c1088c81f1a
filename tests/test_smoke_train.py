"""rsprep smoke-train (docs/smoke-train.md): a learnable synthetic dataset learns from LMDB and Zarr;
shuffled labels fail the mAP verdict, a NaN input fails the non-finite verdict; the CLI's exit codes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from rsprep.torch.train import (
    SmokeOptions,
    average_precision,
    chance_map,
    macro_map,
    prior_map,
    smoke_train,
)

# Small and quick on 2 CPU cores; the fixed seed learns reliably (seeds 0, 1, 2 checked). The margin is
# wider than the default 0.02: on 37 validation patches a model of shuffled labels scores up to ~0.07
# above the prior by chance (a rare class's AP is noisy), while the learnable data beats it by > 0.3.
FAST = dict(
    steps=60, batch_size=16, width=8, lr=3e-3, num_workers=0, starve_threshold=1.0, load_batches=3,
    map_margin=0.15,
)  # fmt: skip


@pytest.fixture(scope="module")
def learnable(tmp_path_factory) -> Path:
    """2 tiles × 8 × 8 patches × 2 dates, GeoTIFF content, with S1; converted to LMDB and Zarr."""
    from rsprep.formats.resumable import ConvertOptions
    from rsprep.stages.convert import convert
    from rsprep.stages.metadata import MetadataOptions, build_metadata
    from rsprep.stages.patch import patch_products
    from rsprep.stages.reference import reference_work
    from rsprep.stages.s1 import s1_work
    from rsprep.synth import SynthConfig, load_manifest, synthesize

    root = tmp_path_factory.mktemp("smoke")
    arch = root / "archive"
    synthesize(arch, SynthConfig(tiles=2, patches_per_side=8, acquisitions=2, content="gtiff"))
    m = load_manifest(arch)
    work = root / "work"
    patch_products([arch / p["path"] for p in m["products"]], out=work)
    s1_results, _ = s1_work(work, arch / "s1")
    assert all(r.status == "done" for r in s1_results)
    results, _ = reference_work(work, arch / m["clc"]["path"])
    assert all(r.status == "done" for r in results)
    ds = root / "ds"
    build_metadata(work, ds, MetadataOptions(countries=arch / m["countries"]["path"]))
    convert("lmdb", ds, None, ConvertOptions())
    convert("zarr", ds, None, ConvertOptions(stack=True, shard_patches=16))
    return ds


def test_average_precision_by_hand():
    # ranks by score: 0.9 (pos), 0.8 (neg), 0.7 (pos), 0.1 (neg): precisions at positives 1/1, 2/3
    assert average_precision(np.array([0.1, 0.9, 0.7, 0.8]), np.array([0, 1, 1, 0])) == pytest.approx(
        (1 + 2 / 3) / 2
    )
    assert np.isnan(average_precision(np.array([0.5, 0.2]), np.array([0, 0])))
    scores = np.array([[0.9, 0.3, 0.5], [0.2, 0.8, 0.5], [0.4, 0.1, 0.5]])
    targets = np.array([[1, 0, 0], [0, 0, 0], [1, 1, 0]])
    value, aps = macro_map(scores, targets)
    # class 1's one positive ranks third (0.8, 0.3, 0.1): AP 1/3; class 2 has no positive
    assert aps[0] == 1.0 and aps[1] == pytest.approx(1 / 3) and np.isnan(aps[2])
    assert value == pytest.approx((1 + 1 / 3) / 2)
    # the class prior (a constant per class) scores each class's prevalence: 2/3 and 1/3
    assert prior_map(targets) == pytest.approx((2 / 3 + 1 / 3) / 2)
    # a random ranking's expected AP, by enumerating all 3! orders of 3 patches
    import itertools

    orders = list(itertools.permutations(range(3)))
    expected = np.mean(
        [[average_precision(-np.array(o, float), targets[:, c]) for o in orders] for c in (0, 1)], axis=1
    )
    assert chance_map(targets) == pytest.approx(expected.mean())


@pytest.mark.parametrize("fmt", ["lmdb", "zarr"])
def test_learns(learnable, tmp_path, fmt):
    workers = 1 if fmt == "zarr" else 0  # num_workers > 0 is supported (fork/spawn-safe readers)
    report = smoke_train(learnable, SmokeOptions(format=fmt, **{**FAST, "num_workers": workers}), tmp_path)
    assert report.ok, report.failures
    assert report.map > report.prior_map + FAST["map_margin"]
    assert report.map > report.chance_map > report.prior_map
    assert len(report.losses) == FAST["steps"] and all(np.isfinite(report.losses))
    assert report.loading_samples_per_s > 0 and report.training_samples_per_s > 0
    assert 0.0 <= report.wait_fraction <= 1.0
    saved = json.loads((tmp_path / "smoke-train.json").read_text())
    assert saved["ok"] and saved["losses"] == report.losses
    png = (tmp_path / "loss.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")


def _copy(learnable: Path, tmp_path: Path) -> Path:
    ds = tmp_path / "ds"
    shutil.copytree(learnable, ds, ignore=shutil.ignore_patterns("lmdb"))
    return ds


def test_shuffled_labels_fail_map(learnable, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from rsprep.store.dataset import FLAGGED, METADATA, write_metadata

    ds = _copy(learnable, tmp_path)
    for name in (METADATA, FLAGGED):
        if not (ds / name).exists():
            continue
        table = pq.read_table(ds / name)
        perm = np.random.default_rng(0).permutation(table.num_rows)
        labels = table.column("labels").take(pa.array(perm))
        write_metadata(table.set_column(table.schema.get_field_index("labels"), "labels", labels), ds / name)
    report = smoke_train(ds, SmokeOptions(format="zarr", **FAST), tmp_path / "out")
    assert not report.ok
    assert any("mAP" in f for f in report.failures), report.failures


def test_nan_input_fails_nonfinite(learnable, tmp_path):
    import pyarrow.parquet as pq
    import zarr

    from rsprep.store.dataset import METADATA

    ds = _copy(learnable, tmp_path)
    meta = pq.read_table(ds / METADATA).to_pandas()
    victim = meta[(meta.split == "train") & meta.s1_name.notna()].patch_id.iloc[0]
    root = zarr.open_group(ds / "zarr" / "dataset.zarr", mode="r+")
    row = list(root["patch_id"][:]).index(victim)
    vv = root["s1/VV"]
    patch = vv[row]
    patch[10, 10] = np.nan
    vv[row] = patch
    report = smoke_train(ds, SmokeOptions(format="zarr", **FAST), tmp_path / "out")
    assert not report.ok and report.nonfinite
    assert victim in report.failures[0]
    assert report.map is None and len(report.losses) < FAST["steps"]


def test_cli_exit_codes_and_json(learnable, tmp_path):
    from typer.testing import CliRunner

    from rsprep.cli.main import app

    args = ["smoke-train", str(learnable), "--format", "lmdb", "--device", "cpu", "--steps", "60"]
    args += ["--batch-size", "16", "--width", "8", "--lr", "3e-3", "--workers", "0"]
    args += ["--starve-threshold", "1.0", "--map-margin", "0.15", "--json", "--out", str(tmp_path / "a")]
    ok = CliRunner().invoke(app, args)
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["ok"] is True
    assert (tmp_path / "a" / "loss.png").read_bytes()[:4] == b"\x89PNG"
    # a margin nothing can beat makes the mAP verdict fire: exit 1 with the reason
    bad = CliRunner().invoke(
        app, [*args[:-5], "--map-margin", "0.99", "--steps", "10", "--json", "--out", str(tmp_path / "b")]
    )
    assert bad.exit_code == 1
    assert "mAP" in bad.stderr
