"""The Zarr store as xarray users expect it (docs/formats.md#zarr): the patch dimension indexed by
patch id, ``class`` and ``band`` coordinates, the metadata columns as coordinates, and every selection
equal to what ZarrReader and zarr-python read."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import zarr

from rsprep.core.bands import BANDS_BY_NAME, SPECTRAL_BANDS
from rsprep.core.kernels import to_side
from rsprep.core.nomenclature import BEN19
from rsprep.formats.readers import ZarrReader
from rsprep.formats.resumable import ConvertOptions
from rsprep.formats.zarr import BOOL_COLUMNS, STRING_COLUMNS
from rsprep.stages.convert import convert
from rsprep.store import dataset as ds

xr = pytest.importorskip("xarray")

COLUMNS = (*STRING_COLUMNS, *BOOL_COLUMNS)


@pytest.fixture(scope="module")
def store(dataset, tmp_path_factory) -> Path:
    """A fresh copy of the demo dataset converted to Zarr with ``--stack``, shards of 8 patches."""
    out = Path(shutil.copytree(dataset, tmp_path_factory.mktemp("zarr-xarray") / "ds"))
    convert("zarr", out, None, ConvertOptions(stack=True, shard_patches=8))
    return out / "zarr" / "dataset.zarr"


@pytest.fixture(scope="module")
def table(store):
    folder = store.parent.parent
    rows = [pq.read_table(folder / name) for name in (ds.METADATA, ds.FLAGGED)]
    return sorted((r for t in rows for r in t.to_pylist()), key=lambda r: r["patch_id"])


def _open(store: Path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # opening warns about nothing
        return xr.open_zarr(store, **kw)


def test_root_coordinates_and_data_variables(store, table):
    root = _open(store)
    assert set(root.data_vars) == {"labels", "reference_map", "s2_stacked"}
    assert set(COLUMNS) <= set(root.coords)
    assert set(root.indexes) == {"patch", "class", "band"}
    ids = [r["patch_id"] for r in table]
    assert root.indexes["patch"].tolist() == ids == ZarrReader(store).patch_ids
    assert root["patch_id"].values.tolist() == ids and root["patch_id"].dims == ("patch",)
    assert root.indexes["class"].tolist() == list(BEN19.alphabetical)
    assert root.indexes["band"].tolist() == list(SPECTRAL_BANDS)
    for name in STRING_COLUMNS:
        assert root[name].values.tolist() == ["" if r[name] is None else r[name] for r in table], name
    for name in BOOL_COLUMNS:
        assert root[name].values.tolist() == [r[name] for r in table], name


def test_select_a_patch_by_id_equals_zarr_reader(store, table):
    root, reader = _open(store), ZarrReader(store)
    for r in table[::5]:
        pid = r["patch_id"]
        one, arrays = root.sel(patch=pid), reader.patch(pid)
        np.testing.assert_array_equal(one["labels"].values, arrays["labels"])
        np.testing.assert_array_equal(one["reference_map"].values, arrays["reference_map"])
        np.testing.assert_array_equal(root.labels.sel(patch=pid).values, arrays["labels"])
        assert one["split"].values.item() == r["split"] and one["s1_name"].values.item() == r["s1_name"]
        assert one["contains_seasonal_snow"].values.item() == r["contains_seasonal_snow"]
        names = [c for c in BEN19.alphabetical if one["labels"].sel({"class": c}).values.item() == 1]
        assert names == sorted(r["labels"])


def test_select_a_band_of_the_stack(store, table):
    root, reader, raw = _open(store), ZarrReader(store), zarr.open_group(store, mode="r")
    for band in ("B04", "B05", "B01"):
        j = SPECTRAL_BANDS.index(band)
        stacked = root.s2_stacked.sel(band=band)
        assert stacked.dims == ("patch", "y_10m", "x_10m")
        np.testing.assert_array_equal(stacked.values, raw["s2_stacked"][:, j])
        pid = table[3]["patch_id"]
        native = reader.patch(pid, s1=False, reference_map=False)[band]
        native10 = BANDS_BY_NAME[band].resolution == 10
        want = native if native10 else to_side(native[None], 120, "bilinear", 0)[0]
        np.testing.assert_array_equal(root.s2_stacked.sel(patch=pid, band=band).values, want)


@pytest.mark.parametrize(("group", "band"), [("s2", "B05"), ("s2", "B01"), ("s1", "VV"), ("s1", "VH")])
def test_band_groups_are_indexed_by_patch_and_join(store, table, group, band):
    root, part, reader = _open(store), _open(store, group=group), ZarrReader(store)
    assert list(part.indexes) == ["patch"]
    assert part.indexes["patch"].tolist() == root.indexes["patch"].tolist()
    for r in table[::7]:
        pid = r["patch_id"]
        np.testing.assert_array_equal(part[band].sel(patch=pid).values, reader.patch(pid)[band])
    merged = xr.merge([root, part], join="exact", compat="no_conflicts")
    pid = table[-1]["patch_id"]
    np.testing.assert_array_equal(merged[band].sel(patch=pid).values, reader.patch(pid)[band])
    assert merged["split"].sel(patch=pid).values.item() == table[-1]["split"]


def test_coordinate_arrays_and_attributes(store):
    raw = zarr.open_group(store, mode="r")
    for name in ("patch", "s2/patch", "s1/patch"):
        assert raw[name].metadata.dimension_names == ("patch",)
        assert raw[name][:].tolist() == raw["patch_id"][:].tolist()
    assert raw["class"].metadata.dimension_names == ("class",)
    assert raw["class"][:].tolist() == raw["labels"].attrs["classes"]
    assert raw["band"][:].tolist() == raw["s2_stacked"].attrs["bands"]
    for name in ("labels", "reference_map", "s2_stacked"):
        assert sorted(raw[name].attrs["coordinates"].split()) == sorted(COLUMNS), name


def test_without_stack_there_is_no_band_coordinate(dataset, tmp_path):
    out = Path(shutil.copytree(dataset, tmp_path / "ds"))
    path = tmp_path / "plain.zarr"
    convert("zarr", out, path, ConvertOptions(shard_patches=8))
    root = _open(path)
    assert set(root.indexes) == {"patch", "class"} and "s2_stacked" not in root
    assert set(root.data_vars) == {"labels", "reference_map"}
