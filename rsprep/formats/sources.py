"""Where `rsprep convert` reads patches from: a dataset folder built by `rsprep metadata` (its work
store holds the arrays), or an official reBEN download (the GeoTIFF layout of docs/formats.md#geotiff-layout).

A :class:`Source` is opened once in the main process: it lists the values to convert per group
(``s1``, ``s2``, ``map``: sorted keys with where each one lives) and the metadata table. Reading is
done in worker processes by :func:`read_items` from a picklable :class:`SourceSpec`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rsprep.core.bands import SPECTRAL_BANDS
from rsprep.core.grid import parse_patch_id, parse_patch_ids
from rsprep.core.values import GROUP_BANDS, GROUP_DTYPES, GROUPS, MAP_BAND, MAP_SUFFIX, map_key, resolution
from rsprep.errors import InputNotFoundError, InvalidParameterError, ReaderError
from rsprep.formats.geotiff import TiffReader, band_files, is_layout, scan
from rsprep.formats.resumable import chunks
from rsprep.store import dataset as ds
from rsprep.store.atomic import digest, fingerprint_files
from rsprep.store.workstore import (
    REFERENCE_ARRAYS,
    REFERENCE_MAP,
    S1_ARRAYS,
    S1_TABLE,
    S2_ARRAYS,
    TileStore,
    WorkStoreError,
    find_stores,
)

#: Keys per write unit (one LMDB transaction) of an official folder.
OFFICIAL_UNIT = 128


class SourceError(InvalidParameterError):
    """A conversion source is incomplete or inconsistent."""


@dataclass(frozen=True)
class SourceSpec:
    """What a worker needs to open a source: its kind, folder and (for datasets) work store."""

    kind: str  # "dataset" | "official"
    root: str
    work: str | None = None


@dataclass
class Item:
    """One value to convert: an LMDB key and where its data lives (store name and array row)."""

    key: str
    store: str | None = None
    row: int = -1  # S2/map: grid row; S1: row of s1.zarr
    grid_row: int = -1  # S1: grid row of its S2 patch (for georeferencing)


@dataclass
class Source:
    spec: SourceSpec
    items: dict[str, list[Item]]
    table: pa.Table | None  # both metadata files, sorted by patch_id (None: an official folder without them)
    patch_size: int = 1200
    notes: list[str] = field(default_factory=list)
    inputs: dict[str, Any] = field(default_factory=dict)  # what a resumed conversion must find unchanged

    @property
    def root(self) -> Path:
        return Path(self.spec.root)

    def units(self, group: str, size: int) -> list[list[list[Item]]]:
        """The values of ``group`` as write units in sorted key order, each a list of read tasks.

        Official folders: units of :data:`OFFICIAL_UNIT` consecutive keys, read in tasks of at most
        ``size`` (every file is read once whatever the grouping; the units, and so an LMDB's file,
        do not depend on ``size``). Work stores keep a row of 91 patches per Zarr chunk while sorted keys
        run down the columns, so a unit is all values of one store (S2, maps) or of one S1 scene and
        tile, read in tasks of ``size`` values in row order: every chunk is decompressed once.
        """
        items = self.items[group]
        if self.spec.kind == "official":
            units = [items[a:b] for a, b in chunks(items, OFFICIAL_UNIT)]
            return [[unit[c:d] for c, d in chunks(unit, size)] for unit in units]
        by_unit: dict[str, list[Item]] = defaultdict(list)
        for it in items:
            by_unit[parse_patch_id(it.key.removesuffix(MAP_SUFFIX))[0]].append(it)
        units = []
        for name in sorted(by_unit):
            members = sorted(by_unit[name], key=lambda it: (it.store, it.row))
            units.append([members[a:b] for a, b in chunks(members, size)])
        # each unit's keys must follow the previous unit's in byte order (true for reBEN names)
        bounds = [(min(it.key for t in u for it in t), max(it.key for t in u for it in t)) for u in units]
        if any(prev[1] >= nxt[0] for prev, nxt in pairwise(bounds)):
            return [[t for u in units for t in u]]  # one unit: sorted as a whole before writing
        return units

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.spec.kind,
            "path": str(self.root.resolve()),
            "work": self.spec.work,
            "values": {g: len(v) for g, v in self.items.items()},
            "metadata_rows": None if self.table is None else self.table.num_rows,
        }


def open_source(src: str | Path) -> Source:
    """Open a dataset folder (``build.json`` naming its work store) or an official reBEN folder."""
    root = Path(src)
    if not root.is_dir():
        raise InputNotFoundError(f"source folder {root} does not exist")
    work = ds.work_store(root)
    if work is not None:
        return _dataset_source(root, work)
    if is_layout(root):
        return _official_source(root)
    raise SourceError(
        f"{root} is neither a dataset folder built by `rsprep metadata` (no {ds.BUILD} naming a work store) "
        f"nor an official reBEN folder (no BigEarthNet-S2/); pass one of those"
    )


def read_metadata(root: Path, *, required: bool) -> pa.Table | None:
    """Both metadata files of a folder as one table sorted by patch_id (the flagged file may be absent)."""
    if not (root / ds.METADATA).is_file():
        if required:
            raise ds.DatasetError(f"{root} holds no {ds.METADATA}")
        return None
    tables = [ds.conform_metadata(ds.read_table(root / ds.METADATA, "metadata"), root / ds.METADATA)]
    if (root / ds.FLAGGED).is_file():
        flagged = root / ds.FLAGGED
        tables.append(ds.conform_metadata(ds.read_table(flagged, "metadata"), flagged))
    table = pa.concat_tables(tables)
    table = table.take(pc.sort_indices(table, [("patch_id", "ascending")]))
    ids = table.column("patch_id")
    if pc.count_distinct(ids).as_py() != table.num_rows:
        raise ds.DatasetError(f"{root}: a patch_id appears twice across {ds.METADATA} and {ds.FLAGGED}")
    return table


# --------------------------------------------------------------------------------------------
# Dataset folder + work store
# --------------------------------------------------------------------------------------------
def _dataset_source(root: Path, work: Path) -> Source:
    if not work.is_dir():
        raise SourceError(
            f"{root / ds.BUILD} names the work store {work}, which does not exist; "
            "convert needs the work store that `rsprep metadata` read (or an official GeoTIFF folder)"
        )
    table = read_metadata(root, required=True)
    stores = {s.name: s for s in find_stores(work)}
    ids = table.column("patch_id").to_pylist()
    s1_names = table.column("s1_name").to_pylist()
    names = parse_patch_ids(table.column("patch_id"), str(root / ds.METADATA))
    s2: list[Item] = []
    s1: dict[str, Item] = {}
    s1_tables: dict[str, dict[int, tuple[str, int]]] = {}
    grids: dict[str, Any] = {}
    patch_size = None
    for i, patch_id in enumerate(ids):
        prefix = names.prefix[i]
        store = stores.get(prefix)
        if store is None:
            raise SourceError(f"patch {patch_id}: the work store {work} has no store {prefix}")
        grid = grids.get(prefix) or grids.setdefault(prefix, store.grid)
        if patch_size is None:
            patch_size = grid.patch_size
        elif grid.patch_size != patch_size:
            raise SourceError(
                f"{work}: stores have different patch sizes ({patch_size}, {grid.patch_size} m)"
            )
        x, y = int(names.x[i]), int(names.y[i])
        if not (0 <= x < grid.n and 0 <= y < grid.n):
            raise SourceError(f"patch {patch_id} lies outside the grid of {store.path} ({grid.n}² patches)")
        row = grid.index(x, y)
        s2.append(Item(patch_id, prefix, row))
        if s1_names[i] is None:
            continue
        if prefix not in s1_tables:
            s1_tables[prefix] = _s1_rows(store)
        name, s1_row = s1_tables[prefix].get(row, (None, -1))
        if name != s1_names[i]:
            raise SourceError(
                f"patch {patch_id}: {ds.METADATA} pairs it with {s1_names[i]}, the work store {store.path} "
                f"with {name}; re-run `rsprep metadata --overwrite` after changing the work store"
            )
        s1.setdefault(name, Item(name, prefix, s1_row, row))
    maps = sorted((Item(map_key(it.key), it.store, it.row) for it in s2), key=lambda it: it.key)
    for prefix in sorted({it.store for it in s2}):
        _check_store(stores[prefix])
    items = {"s1": sorted(s1.values(), key=lambda it: it.key), "s2": s2, "map": maps}
    spec = SourceSpec("dataset", str(root.resolve()), str(work.resolve()))
    inputs = {
        "metadata_stage": digest(ds.read_build(root)["stages"]["metadata"]),
        "tables": fingerprint_files([p for p in (root / ds.METADATA, root / ds.FLAGGED) if p.is_file()]),
    }
    return Source(spec, items, table, patch_size or 1200, inputs=inputs)


def _s1_rows(store: TileStore) -> dict[int, tuple[str, int]]:
    store.require_stage("s1", "run `rsprep s1` on this work store, then `rsprep metadata` again")
    t = store.table(S1_TABLE)
    rows = t.column("index").to_numpy()
    idx = t.column("s1_index").to_numpy()
    names = t.column("s1_name").to_pylist()
    return {int(r): (n, int(k)) for r, n, k in zip(rows, names, idx, strict=True) if n is not None and k >= 0}


def _check_store(store: TileStore) -> None:
    """Refuse a store that lacks a stage, or whose arrays are damaged (chunks against the manifest)."""
    store.require_stage("reference", "run `rsprep reference` on this work store")
    store.zarr(REFERENCE_ARRAYS)
    if store.stage("s1") is not None:
        store.zarr(S1_ARRAYS)
    s2 = store.zarr(S2_ARRAYS)
    missing = [b for b in SPECTRAL_BANDS if b not in s2]
    if missing:
        raise SourceError(
            f"{store.path / 's2.zarr'} lacks bands {missing}; reBEN needs all 12, re-run `rsprep patch` "
            "without --bands"
        )
    dtype = s2[SPECTRAL_BANDS[0]].dtype
    if dtype != np.uint16:
        raise SourceError(
            f"{store.path / 's2.zarr'} holds {dtype} bands (--harmonize reflectance); the reBEN formats "
            "store uint16 digital numbers: re-run `rsprep patch --harmonize none`"
        )


# --------------------------------------------------------------------------------------------
# Official GeoTIFF folder
# --------------------------------------------------------------------------------------------
def _official_source(root: Path) -> Source:
    table = read_metadata(root, required=False)
    found = {g: scan(root, g) for g in GROUPS}
    items = {
        "s2": [Item(k) for k in found["s2"]],
        "s1": [Item(k) for k in found["s1"]],
        "map": sorted((Item(map_key(k)) for k in found["map"]), key=lambda it: it.key),
    }
    notes = []
    if table is not None:
        _check_official(root, table, found)
    else:
        notes.append(f"{root} holds no {ds.METADATA}: LMDB only (Zarr needs labels and splits)")
    tables = [p for p in (root / ds.METADATA, root / ds.FLAGGED) if p.is_file()]
    inputs = {"tables": fingerprint_files(tables)}
    return Source(SourceSpec("official", str(root.resolve())), items, table, 1200, notes, inputs)


def _check_official(root: Path, table: pa.Table, found: dict[str, list[str]]) -> None:
    checks = [
        ("s2", table.column("patch_id"), "BigEarthNet-S2"),
        ("map", table.column("patch_id"), "Reference_Maps"),
    ]
    if found["s1"] or (root / "BigEarthNet-S1").is_dir():
        checks.append(("s1", pc.drop_null(table.column("s1_name")), "BigEarthNet-S1"))
    for group, wanted, folder in checks:
        if not found[group] and group == "map":
            continue  # a download without reference maps: values of the other groups only
        missing = pc.filter(wanted, pc.invert(pc.is_in(wanted, pa.array(found[group], pa.string()))))
        if len(missing):
            raise SourceError(
                f"{root / folder} lacks {len(missing)} patch folder(s) that {ds.METADATA} lists, "
                f"e.g. {missing.slice(0, 3).to_pylist()}; complete the download or remove those rows"
            )


# --------------------------------------------------------------------------------------------
# Reading (in workers)
# --------------------------------------------------------------------------------------------
_OPEN: dict[SourceSpec, Any] = {}


def read_items(spec: SourceSpec, group: str, items: list[Item], *, georef: bool = False) -> list[dict]:
    """The arrays of ``items`` (all of one group), as ``{band: array}`` in item order.

    With ``georef`` each dict also holds ``"_crs"`` and ``"_transform"`` (per band, the six affine
    coefficients a, b, c, d, e, f of ``affine.Affine``).
    """
    if spec.kind == "official":
        return _read_official(Path(spec.root), group, items, georef)
    stores = _OPEN.get(spec)
    if stores is None:
        stores = _OPEN[spec] = {s.name: s for s in find_stores(spec.work)}
    return _read_work(stores, group, items, georef)


def _read_official(root: Path, group: str, items: list[Item], georef: bool) -> list[dict]:
    reader = TiffReader(root)
    out = []
    for it in items:
        key = it.key.removesuffix(MAP_SUFFIX) if group == "map" else it.key
        values = _read_georef(root, group, key) if georef else reader.get(group, key)
        for name, arr in values.items():
            if name.startswith("_"):
                continue
            want = np.dtype(GROUP_DTYPES[group])
            if arr.dtype != want or arr.ndim != 2:
                raise ReaderError(
                    f"{root / band_files(group, key)[name]}: {arr.dtype} {arr.shape}, expected a single "
                    f"{want} band; this is not a reBEN file"
                )
        out.append(values)
    return out


def _read_georef(root: Path, group: str, key: str) -> dict:
    import rasterio

    values: dict[str, Any] = {"_transform": {}}
    for name, rel in band_files(group, key).items():
        path = root / rel
        try:
            with rasterio.open(path) as src:
                values[name] = src.read(1)
                values["_crs"] = src.crs.to_wkt()
                values["_transform"][name] = tuple(src.transform)[:6]
        except rasterio.errors.RasterioIOError as exc:
            raise ReaderError(f"{path} is missing or unreadable ({exc})") from None
    return values


def _read_work(stores: dict[str, TileStore], group: str, items: list[Item], georef: bool) -> list[dict]:
    by_store: dict[str, list[int]] = defaultdict(list)
    for k, it in enumerate(items):
        by_store[it.store].append(k)
    out: list[dict] = [{} for _ in items]
    for name, ks in by_store.items():
        store = stores.get(name)
        if store is None:
            raise WorkStoreError(f"the work store has no store {name} any more; re-run `rsprep metadata`")
        if group == "s2":
            arrays, names = store.zarr(S2_ARRAYS), SPECTRAL_BANDS
        elif group == "s1":
            arrays, names = store.zarr(S1_ARRAYS), GROUP_BANDS["s1"]
        else:
            arrays, names = {MAP_BAND: store.zarr(REFERENCE_ARRAYS)[REFERENCE_MAP]}, (MAP_BAND,)
        rows = np.array([items[k].row for k in ks])
        order = np.argsort(rows, kind="stable")
        for b in names:
            block = arrays[b].get_orthogonal_selection((rows[order],))
            for j, k in enumerate(np.asarray(ks)[order]):
                out[k][b] = block[j]
        if georef:
            grid = store.grid
            for k in ks:
                it = items[k]
                x, y = grid.xy(it.grid_row if group == "s1" else it.row)
                out[k]["_crs"] = f"EPSG:{grid.epsg}"
                out[k]["_transform"] = {b: grid.transform(x, y, resolution(b)) for b in names}
    return out
