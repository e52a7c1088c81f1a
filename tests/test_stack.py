"""``rsprep stack``: 20 m / 60 m bands on the 10 m grid, in the documented order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rsprep.core import kernels
from rsprep.core.bands import BANDS_BY_NAME, SPECTRAL_BANDS
from rsprep.errors import InvalidParameterError
from rsprep.stages.patch import PatchOptions, patch_product
from rsprep.stages.stack import StackOptions, stack_store, stack_work
from rsprep.store.workstore import TileStore, WorkStoreError


@pytest.fixture(scope="module")
def store(archive, manifest, tmp_path_factory) -> TileStore:
    out = tmp_path_factory.mktemp("stackwork")
    # the swath-edge product has invalid patches: nodata must not leak through bilinear weights
    prod = next(p for p in manifest["products"] if p["swath_edge"])
    return TileStore.open(patch_product(archive / prod["path"], out=out).store)


@pytest.mark.parametrize("method", ["bilinear", "nearest"])
def test_stack_shape_order_and_values(store, method):
    r = stack_store(store, StackOptions(resampling=method), force=True)
    assert r.status == "done"
    arr = store.zarr("stack.zarr")["s2_stacked"]
    n = store.grid.count
    assert arr.shape == (n, 12, 120, 120) and arr.dtype == np.uint16
    assert arr.attrs["bands"] == list(SPECTRAL_BANDS) and arr.attrs["resampling"] == method
    assert arr.metadata.dimension_names == ("patch", "band", "y", "x")
    stacked = arr[:]
    s2 = store.zarr("s2.zarr")
    for bi, name in enumerate(SPECTRAL_BANDS):
        native = s2[name][:]
        f = 120 // native.shape[1]
        if f == 1:
            expected = native
        elif method == "nearest":
            expected = native.repeat(f, axis=1).repeat(f, axis=2)
        else:
            expected = kernels.upsample_bilinear(native, f, nodata=0)
        np.testing.assert_array_equal(stacked[:, bi], expected, err_msg=name)
        # nodata stays exactly where the nearest native pixel is nodata
        np.testing.assert_array_equal(stacked[:, bi] == 0, native.repeat(f, 1).repeat(f, 2) == 0)
    assert BANDS_BY_NAME[SPECTRAL_BANDS[0]].resolution == 60


def test_stack_skips_current_and_refuses_band_subsets(store, archive, manifest, tmp_path):
    stack_store(store, force=True)
    assert stack_store(store).status == "skipped"
    assert stack_store(store, StackOptions(resampling="nearest")).status == "done"
    with pytest.raises(InvalidParameterError, match="bicubic"):
        stack_store(store, StackOptions(resampling="bicubic"))
    sub = TileStore.open(
        patch_product(
            archive / manifest["products"][0]["path"],
            out=tmp_path / "w",
            options=PatchOptions(bands=("B02",)),
        ).store
    )
    with pytest.raises(WorkStoreError, match=r"all 12 spectral bands.*missing B01"):
        stack_store(sub)
    results = stack_work(tmp_path / "w")
    assert results[0].status == "failed" and "B01" in results[0].error
    assert not (Path(sub.path) / "stack.zarr").exists()


def test_stack_needs_a_work_store(tmp_path):
    with pytest.raises(WorkStoreError, match="holds no work store"):
        stack_work(tmp_path)
