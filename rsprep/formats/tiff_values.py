"""Work-store values for the GeoTIFF writer, read in its worker processes (docs/formats.md#geotiff-layout).

A task's values lie in a few chunk rows of one store (a row of 91 patches per chunk, read in row order,
:meth:`rsprep.formats.sources.Source.units`). Each chunk a task touches is read once per band with
:class:`rsprep.formats.store_values.RowChunks` (one ``read``, one Blosc decompression; a missing or
undecodable chunk is refused naming it, as the LMDB writer does) and every patch's band is handed on as
a view of it, with the georeferencing :func:`rsprep.formats.sources.read_items` gives (``_crs``,
``_transform``): the same values without zarr-python's per-call overhead or a copy per patch.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from rsprep.core.values import resolution
from rsprep.formats.store_values import ARRAYS, RowChunks
from rsprep.store.workstore import MANIFEST, TileStore


def work_values(work: str, group: str, items: list) -> Iterator[tuple[object, dict]]:
    """``(item, {band: array, "_crs": …, "_transform": {band: 6 coefficients}})`` for ``items`` (all of
    ``group``), store by store in row order; at most one chunk per band is held at a time. The stores
    are opened anew for each call (a task), so nothing read is kept from one conversion to the next."""
    gname, bands = ARRAYS[group]
    by_store: dict[str, list] = {}
    for it in items:
        by_store.setdefault(it.store, []).append(it)
    single = (Path(work) / MANIFEST).is_file()  # the work store is one store itself
    for name in sorted(by_store):
        store = TileStore.open(Path(work) if single else Path(work) / name)
        grid = store.grid
        crs = f"EPSG:{grid.epsg}"
        arrays = {b: RowChunks(store, gname, a) for b, a in bands.items()}
        res = {b: resolution(b) for b in bands}
        held: dict[str, tuple[int, np.ndarray]] = {}
        for it in sorted(by_store[name], key=lambda it: it.row):
            x, y = grid.xy(it.grid_row if group == "s1" else it.row)
            transforms = {r: grid.transform(x, y, r) for r in set(res.values())}
            values: dict = {"_crs": crs, "_transform": {b: transforms[r] for b, r in res.items()}}
            for b, arr in arrays.items():
                k = it.row // arr.per
                if b not in held or held[b][0] != k:
                    held[b] = (k, arr.read(k))
                values[b] = held[b][1][it.row - k * arr.per]
            yield it, values
