"""Our outputs in the tools people already use: TorchGeo's BigEarthNetV2 on the GeoTIFF layout and
ConfigILM's BENv2DataSet on the LMDB + parquet files.

Both run in their own virtual environment (`make interop-venv`: torchgeo, configilm, torch 2.14.1,
torchvision 0.29.1), named by RSPREP_INTEROP_PYTHON; `make test` creates it and sets the variable.
The scripts in tests/interop/ load every sample of every split and print what they read; here it is
compared with the arrays we wrote.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from rsprep.core.nomenclature import BEN19
from rsprep.formats.readers import LmdbReader
from rsprep.formats.resumable import ConvertOptions
from rsprep.formats.sources import read_metadata
from rsprep.stages.convert import convert
from rsprep.store import dataset as ds

pytestmark = pytest.mark.interop
HERE = Path(__file__).parent / "interop"
TORCHGEO_ORDER = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12")


@pytest.fixture(scope="module")
def interop_python() -> str:
    python = os.environ.get("RSPREP_INTEROP_PYTHON")
    if not python:
        if os.environ.get("RSPREP_REQUIRE_INTEROP"):
            pytest.fail("RSPREP_INTEROP_PYTHON is not set; run the tests with `make test`")
        pytest.skip("RSPREP_INTEROP_PYTHON is not set (`make test` creates the interop environment)")
    return python


@pytest.fixture(scope="module")
def built(dataset, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("interop") / "ds"
    shutil.copytree(
        dataset, root, ignore=shutil.ignore_patterns("lmdb", "zarr", "BigEarthNet-*", "Reference_Maps")
    )
    convert("tiff", root, None, ConvertOptions(workers=2))
    convert("lmdb", root, None, ConvertOptions(workers=2))
    return root


def _run(python: str, script: str, *args: Path) -> dict:
    proc = subprocess.run(
        [python, str(HERE / script), *map(str, args)], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def _labels(table: pa.Table) -> dict[str, list[str]]:
    return dict(zip(table.column("patch_id").to_pylist(), table.column("labels").to_pylist(), strict=True))


def test_torchgeo_reads_our_geotiffs(interop_python, built):
    out = _run(interop_python, "torchgeo_check.py", built)
    table = read_metadata(built, required=True)
    unflagged = ds.read_table(built / ds.METADATA)
    counts = Counter(unflagged.column("split").to_pylist())
    labels = _labels(table)
    s1_of = dict(zip(table.column("patch_id").to_pylist(), table.column("s1_name").to_pylist(), strict=True))
    lm = LmdbReader(built / "lmdb")
    assert {k: len(v) for k, v in out.items()} == {
        "train": counts["train"],
        "val": counts["validation"],
        "test": counts["test"],
    }
    assert all(len(v) > 0 for v in out.values())
    for rows in out.values():
        for row in rows:
            pid = row["patch_id"]
            assert row["s1_name"] == s1_of[pid]
            assert (row["s2_shape"], row["s1_shape"], row["mask_shape"]) == (
                [12, 120, 120],
                [2, 120, 120],
                [1, 120, 120],
            )
            arrays = lm.patch(pid, s1_of[pid])
            for j, band in enumerate(TORCHGEO_ORDER):
                if arrays[band].shape == (120, 120):  # 10 m bands are read without resampling
                    assert row["s2_sums"][j] == float(arrays[band].astype(np.int64).sum()), (pid, band)
            # S1 files sorted by name (VH, VV), read as int32 (GDAL rounds to the nearest integer)
            for j, band in enumerate(("VH", "VV")):
                assert row["s1_sums"][j] == float(np.round(arrays[band]).astype(np.int64).sum()), (pid, band)
            assert sorted(row["labels"]) == sorted(labels[pid])
            codes = np.unique(arrays["reference_map"])
            ordinals = {
                BEN19.classes.index(BEN19.class_of(c)) if BEN19.class_of(c) else int(c) for c in codes
            }
            assert set(row["mask_values"]) == ordinals


def test_configilm_reads_our_lmdb(interop_python, built):
    out = _run(interop_python, "configilm_check.py", built / "lmdb", built / ds.METADATA, built / ds.FLAGGED)
    table = read_metadata(built, required=True)
    counts = Counter(table.column("split").to_pylist())
    labels = _labels(table)
    s1_of = dict(zip(table.column("patch_id").to_pylist(), table.column("s1_name").to_pylist(), strict=True))
    assert {k: len(v) for k, v in out.items()} == dict(counts)
    lm = LmdbReader(built / "lmdb")
    for rows in out.values():
        for row in rows:
            pid = row["patch_id"]
            arrays = lm.patch(pid, s1_of[pid])
            assert row["shape"] == [14, 120, 120]
            for j, band in enumerate(row["channels"]):
                native = arrays[band].astype(np.float64)
                factor = (120 // native.shape[0]) ** 2  # nearest upsampling repeats each pixel
                assert row["sums"][j] == pytest.approx(native.sum() * factor, rel=1e-6), (pid, band)
            names = [BEN19.alphabetical[j] for j, v in enumerate(row["labels"]) if v]
            assert names == sorted(labels[pid])
