"""The Zarr v3 store (docs/formats.md#zarr): ``dataset.zarr``, one row per patch in patch_id order.

```
s2/<band>        (N, h, w) uint16 at native resolution (h = 120, 60, 20), nodata 0
s1/VV, s1/VH     (N, 120, 120) float32 dB, NaN where a patch has no S1 partner
reference_map    (N, 120, 120) uint16 CLC codes
labels           (N, 19) uint8 multi-hot, class order in the attributes
patch_id, s1_name, s2v1_name, split, country   (N,) strings ("" for null)
contains_seasonal_snow, contains_cloud_or_shadow (N,) bool
s2_stacked       (N, 12, 120, 120) uint16 resampled to 10 m (only with --stack)
patch, s2/patch, s1/patch   (N,) the patch ids; class (19,) and band (12,) the names (band: --stack)
```

Image arrays have one chunk per patch inside shards of ``--shard-patches`` patches, so a full reBEN
store is a few thousand files; every array has dimension names (``patch``, ``y_10m`` …) so xarray
aligns them, and the metadata is consolidated at the end. This module lays the store out
(:func:`create_store`: attributes, every array's metadata, the (N,)-row columns, with zarr-python)
and reads it (:class:`ZarrReader`); the image arrays' shards are written by
:mod:`rsprep.formats.zarr_write`, each task its own shard files. For xarray, ``patch``, ``class``
and ``band`` are the dimension coordinates (``ds.sel(patch=...)``), and the data arrays'
``coordinates`` attribute (the CF convention xarray decodes) makes the metadata columns coordinates
rather than data variables.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa

from rsprep import __version__
from rsprep.core.bands import BANDS_BY_NAME, SPECTRAL_BANDS
from rsprep.core.values import GROUP_BANDS, REFERENCE_MAP, map_key, native_pixels
from rsprep.errors import InputNotFoundError, InvalidParameterError, ReaderError
from rsprep.formats.resumable import ConvertOptions, ConvertResult, Progress, say_log
from rsprep.formats.sources import Item, Source, SourceError
from rsprep.formats.zarr_shards import ShardedPatchArray
from rsprep.store import dataset as ds
from rsprep.store.workstore import compressors

STORE_NAME = "dataset.zarr"
FORMAT = "rsprep-reben-zarr"
VERSION = 1
#: The official metadata columns stored as (N,) arrays beside the pixels (labels become the multi-hot array).
STRING_COLUMNS = tuple(f.name for f in ds.METADATA_SCHEMA if f.type == pa.string())
BOOL_COLUMNS = tuple(f.name for f in ds.METADATA_SCHEMA if f.type == pa.bool_())
#: The ``coordinates`` attribute of the root data arrays: xarray opens these columns as coordinates.
COORDINATES = " ".join(sorted(STRING_COLUMNS + BOOL_COLUMNS))
#: The dimension coordinates (1-D string arrays named as their dimension) xarray indexes by.
PATCH_DIM, CLASS_DIM, BAND_DIM = "patch", "class", "band"


def _dims(pixels: int, patch_size: int) -> tuple[str, str, str]:
    res = patch_size // pixels
    return ("patch", f"y_{res}m", f"x_{res}m")


def rows_of(source: Source) -> tuple[list[Item], list[Item | None], list[Item]]:
    """The S2, S1 (None when unpaired) and map item of every metadata row."""
    table = source.table
    s2 = {it.key: it for it in source.items["s2"]}
    s1 = {it.key: it for it in source.items["s1"]}
    maps = {it.key: it for it in source.items["map"]}
    ids = table.column("patch_id").to_pylist()
    s1_names = table.column("s1_name").to_pylist()
    missing = [p for p in ids if p not in s2 or map_key(p) not in maps]
    missing_s1 = [n for n in s1_names if n is not None and n not in s1]
    if missing or missing_s1:
        example = (missing or missing_s1)[:3]
        raise SourceError(
            f"{source.root}: {len(missing)} metadata patch(es) lack S2 bands or a reference map and "
            f"{len(missing_s1)} lack their S1 patch (e.g. {example}); Zarr holds complete patches only"
        )
    return [s2[p] for p in ids], [s1[n] if n else None for n in s1_names], [maps[map_key(p)] for p in ids]


def multi_hot(labels: pa.ChunkedArray | pa.Array, classes: tuple[str, ...], source: str) -> np.ndarray:
    """(N, len(classes)) uint8 multi-hot of a ``list<string>`` column."""
    index = {c: i for i, c in enumerate(classes)}
    out = np.zeros((len(labels), len(classes)), dtype=np.uint8)
    for r, names in enumerate(labels.to_pylist()):
        for name in names or ():
            j = index.get(name)
            if j is None:
                raise InvalidParameterError(f"{source}: row {r} has label {name!r}, not a BEN-19 class")
            out[r, j] = 1
    return out


def image_compressors(name: str):
    """None (the default: a chunk is read straight into its array), or Blosc with byte shuffle."""
    from zarr.codecs import BloscCodec

    if name == "none":
        return None
    return [BloscCodec(cname=name, clevel=5 if name == "lz4" else 3, shuffle="shuffle")]


def create_store(path: Path, source: Source, n: int, options: ConvertOptions, shard: int, classes) -> None:
    """Create the store at ``path``: its attributes, every array, and the metadata columns' values."""
    import zarr

    root = zarr.open_group(
        path, mode="w", zarr_format=3, attributes=_root_attributes(source, n, options, classes, path)
    )
    _create_images(root, n, source.patch_size, options, shard)
    _write_columns(root, source, n, options, classes)


def _root_attributes(source: Source, n: int, options: ConvertOptions, classes, path: Path) -> dict:
    """The root group's attributes (format, patch count, bands, classes, source)."""
    p = source.patch_size
    return {
        "format": FORMAT,
        "version": VERSION,
        "rsprep_version": __version__,
        "description": "reBEN (BigEarthNet v2.0) patches; row i of every array is patch_id[i]",
        "patches": n,
        "patch_size_m": p,
        "bands": list(SPECTRAL_BANDS),
        "band_resolutions_m": {b: BANDS_BY_NAME[b].resolution for b in SPECTRAL_BANDS},
        "s1_bands": list(GROUP_BANDS["s1"]),
        "classes": list(classes),
        "class_order": options.class_order,
        "nomenclature": "BEN-19",
        "compressor": options.compressor,
        "source": _source_attributes(source, path),
    }


def _source_attributes(source: Source, path: Path) -> dict:
    """``source.describe()``; for a store inside the dataset folder (``DATASET/zarr/dataset.zarr``) its
    paths are relative to that folder (``.``, ``../work``: :func:`rsprep.store.dataset.recorded_path`),
    so the store's bytes do not depend on where the dataset was built or moved."""
    described = source.describe()
    root = Path(source.root)
    if Path(path).resolve().is_relative_to(root.resolve()):
        described["path"] = ds.recorded_path(root, root)
        if described.get("work"):
            described["work"] = ds.recorded_path(described["work"], root)
    return described


def _create_images(root, n: int, p: int, options: ConvertOptions, shard: int) -> None:
    """Create the (empty) sharded image arrays: S2 bands, S1 bands, the map, and the stack if asked."""

    def image(group, name, pixels, dtype, fill, attrs, extra_dims=()):
        shape = (n, *extra_dims, pixels, pixels)
        dims = _dims(pixels, p)
        group.create_array(
            name,
            shape=shape,
            chunks=(1, *extra_dims, pixels, pixels),
            shards=(shard, *extra_dims, pixels, pixels),
            dtype=dtype,
            fill_value=fill,
            compressors=image_compressors(options.compressor),
            dimension_names=(dims[0], *(["band"] if extra_dims else []), *dims[1:]),
            attributes=attrs,
        )

    s2 = root.create_group("s2", attributes={"description": "Sentinel-2 L2A bands at native resolution"})
    for b in SPECTRAL_BANDS:
        res = BANDS_BY_NAME[b].resolution
        attrs = {"band": b, "resolution_m": res, "units": "DN", "nodata": 0}
        image(s2, b, native_pixels(b, p), "uint16", 0, attrs)
    s1 = root.create_group("s1", attributes={"description": "Sentinel-1 GRD backscatter on the S2 10 m grid"})
    for b in GROUP_BANDS["s1"]:
        image(
            s1, b, p // 10, "float32", np.nan, {"band": b, "resolution_m": 10, "units": "dB", "nodata": "NaN"}
        )
    attrs = {"resolution_m": 10, "units": "CLC code", "nodata": 0, "coordinates": COORDINATES}
    image(root, "reference_map", p // 10, "uint16", 0, attrs)
    if options.stack:
        attrs = _stacked_attributes(options.stack_method) | {"coordinates": COORDINATES}
        image(root, "s2_stacked", p // 10, "uint16", 0, attrs, extra_dims=(len(SPECTRAL_BANDS),))


def _stacked_attributes(method: str) -> dict:
    """The attributes of ``s2_stacked`` (band order, resampling method and convention)."""
    return {
        "bands": list(SPECTRAL_BANDS),
        "resolution_m": 10,
        "resampling": method,
        "resampling_convention": "pixel centres aligned (half-pixel), clamped at the patch border; "
        "nodata neighbours get no weight",
        "native_resolution_m": {b: BANDS_BY_NAME[b].resolution for b in SPECTRAL_BANDS},
        "nodata": 0,
    }


def _write_columns(root, source: Source, n: int, options: ConvertOptions, classes) -> None:
    """Create and fill the (N,)-row arrays: multi-hot labels, then the string and bool columns."""
    table = source.table
    rows = max(1, min(n, 65536))
    labels = root.create_array(
        "labels",
        shape=(n, len(classes)),
        chunks=(rows, len(classes)),
        dtype="uint8",
        fill_value=0,
        compressors=compressors(),
        dimension_names=("patch", "class"),
        attributes={
            "classes": list(classes),
            "class_order": options.class_order,
            "encoding": "multi-hot",
            "coordinates": COORDINATES,
        },
    )
    labels[:] = multi_hot(table.column("labels"), classes, str(source.root))
    for name in STRING_COLUMNS:
        values = table.column(name).to_pylist() if name in table.column_names else [None] * n
        _strings(root, name, values, PATCH_DIM, rows)
    for name in BOOL_COLUMNS:
        arr = root.create_array(
            name, shape=(n,), chunks=(rows,), dtype=bool, fill_value=False, dimension_names=("patch",)
        )
        arr[:] = table.column(name).to_numpy(zero_copy_only=False).astype(bool)
    _write_coordinates(root, table.column("patch_id").to_pylist(), rows, classes, options.stack)


def _strings(group, name: str, values: list, dim: str, rows: int, attrs: dict | None = None) -> None:
    """Create and fill a 1-D string array along ``dim`` (``""`` for None)."""
    arr = group.create_array(
        name,
        shape=(len(values),),
        chunks=(rows,),
        dtype=str,
        fill_value="",
        dimension_names=(dim,),
        attributes=attrs,
    )
    arr[:] = np.array(["" if v is None else v for v in values], dtype=object)


def _write_coordinates(root, ids: list[str], rows: int, classes, stack: bool) -> None:
    """The dimension coordinates: ``patch`` (in the root, ``s2`` and ``s1``), ``class`` and ``band``."""
    about = {"description": "patch_id of each row: the index of the patch dimension"}
    for group in (root, root["s2"], root["s1"]):
        _strings(group, PATCH_DIM, ids, PATCH_DIM, rows, about)
    about = {"description": "the label columns of labels, in order"}
    _strings(root, CLASS_DIM, list(classes), CLASS_DIM, len(classes), about)
    if stack:
        about = {"description": "the bands of s2_stacked, in order"}
        _strings(root, BAND_DIM, list(SPECTRAL_BANDS), BAND_DIM, len(SPECTRAL_BANDS), about)


def write_zarr(
    source: Source, dest: Path, options: ConvertOptions, say=say_log, progress: Progress | None = None
) -> ConvertResult:
    """Convert ``source`` to the store ``dest`` (:func:`rsprep.formats.zarr_write.write_zarr`).

    Raises:
        ConvertError: writing failed (a full disk), naming the file; finished tasks are kept.
    """
    from rsprep.formats.zarr_write import write_zarr as write

    return write(source, dest, options, say, progress)


# --------------------------------------------------------------------------------------------
# Reader
# --------------------------------------------------------------------------------------------
class ZarrReader:
    """Patches of an rsprep Zarr v3 store (``dataset.zarr``), looked up by patch_id."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not (self.path / "zarr.json").is_file():
            raise InputNotFoundError(
                f"{self.path} is not a Zarr store (no zarr.json); "
                "create it with `rsprep convert zarr DATASET`"
            )
        self._group = None
        self._pid: int | None = None
        self._index: dict[str, int] | None = None
        self._labels_cache: np.ndarray | None = None

    def __getstate__(self) -> dict:
        return {"path": self.path, "_group": None, "_pid": None, "_index": self._index, "_labels_cache": None}

    @property
    def group(self):
        """The store's root group, opened on first use in each process (with its image arrays)."""
        if self._group is None or self._pid != os.getpid():
            import zarr

            self._group = zarr.open_group(self.path, mode="r")
            self._pid = os.getpid()
            self._arrays = self._open_arrays()
            self._labels_cache = self._group["labels"][:]
        return self._group

    def _open_arrays(self) -> dict:
        meta = (
            json.loads((self.path / "zarr.json").read_text())
            .get("consolidated_metadata", {})
            .get("metadata", {})
        )
        names = [f"s2/{b}" for b in GROUP_BANDS["s2"]]
        if "s1" in self._group:
            names += [f"s1/{b}" for b in GROUP_BANDS["s1"]]
        names.append(REFERENCE_MAP)
        arrays = {}
        for name in names:
            key = name.split("/")[-1]
            fast = ShardedPatchArray.open(self.path / name, meta.get(name))
            arrays[key] = fast if fast is not None else self._group[name]
        return arrays

    @property
    def patch_ids(self) -> list[str]:
        return [str(p) for p in self.group["patch_id"][:]]

    @property
    def index(self) -> dict[str, int]:
        if self._index is None:
            self._index = {p: i for i, p in enumerate(self.patch_ids)}
        return self._index

    def __len__(self) -> int:
        return self.group["patch_id"].shape[0]

    def __contains__(self, patch_id: str) -> bool:
        return patch_id in self.index

    def row(self, patch_id: str) -> int:
        try:
            return self.index[patch_id]
        except KeyError:
            raise ReaderError(f"{patch_id!r} is not a patch of {self.path}") from None

    def patch(self, patch_id: str, *, s1: bool = True, reference_map: bool = True) -> dict[str, np.ndarray]:
        """All arrays of one patch (S2 bands, S1 bands, map) and its multi-hot ``labels``."""
        return self.read_row(self.row(patch_id), s1=s1, reference_map=reference_map)

    def read_row(self, i: int, *, s1: bool = True, reference_map: bool = True) -> dict[str, np.ndarray]:
        _ = self.group  # opens the arrays in this process
        out = {}
        for name, arr in self._arrays.items():
            if (not s1 and name in GROUP_BANDS["s1"]) or (not reference_map and name == REFERENCE_MAP):
                continue
            out[name] = arr[i]
        out["labels"] = self._labels_cache[i]
        return out
