"""The Zarr writer's tasks, run in worker processes (docs/convert.md, "The Zarr writer").

Each task writes only its own shard files and returns a count; shards are encoded by
:class:`rsprep.formats.zarr_shards.ShardEncoder` (zarr-python's bytes, without zarr-python):

- ``run``: one image array for a run of shards from a work store: each needed work-store chunk is
  read and decompressed once (:class:`RowChunks`: one ``read``, one Blosc decode, the work store's
  checks of damaged and missing chunks), its rows copied to their shards, and a shard written as soon
  as its last row is in (rsprep.formats.zarr_plan bounds what is held);
- ``official``: one shard of a value group from an official GeoTIFF folder (:func:`read_items`);
- ``stacked``: one shard of ``s2_stacked`` from the 12 native band shards already written, in blocks
  of :data:`STACK_ROWS` patches, resampled by :func:`rsprep.core.kernels.to_side`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rsprep.core.bands import SPECTRAL_BANDS
from rsprep.core.values import GROUP_BANDS, MAP_BAND
from rsprep.errors import WriteError
from rsprep.formats.store_values import RowChunks
from rsprep.formats.zarr_shards import ShardEncoder, ShardFile, read_layout
from rsprep.store.workstore import TileStore

#: Patches of ``s2_stacked`` resampled and written at a time (≈ 65 MB with their native bands).
STACK_ROWS = 128


def write_task(payload) -> int:
    """Run one task (``(kind, *arguments)``); returns the values (patch arrays) it wrote."""
    kind, *args = payload
    return {"run": write_run, "official": write_official, "stacked": write_stacked}[kind](*args)


def _write(enc: ShardEncoder, s: int, rows: int, block) -> None:
    """Write shard ``s`` (``rows`` rows), an ``OSError`` (a full disk) naming the array and the rows."""
    try:
        if callable(block):
            block()
        else:
            enc.write(s, block)
    except OSError as exc:
        first = s * enc.layout.per_shard
        raise WriteError(
            exc.errno, f"writing {enc.array} rows {first}-{first + rows - 1} failed ({exc.strerror or exc})"
        ) from exc


def write_run(
    out: str, name: str, group: str, array: str, stores: list[str], a: int, b: int, store, src
) -> int:
    """Array ``name`` for rows ``a`` to ``b - 1`` (whole shards) from work-store array ``group/array``.

    ``stores`` are the store folders, ``store[i]`` the number of row ``a + i``'s store (-1: no value,
    the fill), ``src[i]`` its row in that store's array.
    """
    enc = ShardEncoder(Path(out) / name)
    per = enc.layout.per_shard
    base = a // per
    store, src = np.asarray(store), np.asarray(src)
    local = np.arange(b - a)  # rows of the run
    shard_of = local // per  # shards of the run
    sizes = [min(per, b - a - j * per) for j in range(-(-(b - a) // per))]
    left = np.bincount(shard_of[store >= 0], minlength=len(sizes))
    for j in np.flatnonzero(left == 0):  # no value at all: all fill, no file (as zarr)
        _write(enc, base + int(j), sizes[j], enc.writer(base + int(j)).close)
    held: dict[int, np.ndarray] = {}
    free: list[np.ndarray] = []  # the buffers of written shards, reused: no fresh pages per shard

    def buffer(j: int) -> np.ndarray:
        buf = free.pop() if free else np.empty((per, *enc.layout.inner), enc.layout.dtype)
        none = np.flatnonzero(store[j * per : j * per + sizes[j]] < 0)
        buf[none] = enc.layout.fill
        return buf

    names, first = np.unique(store[store >= 0], return_index=True)
    for st in names[np.argsort(first)]:  # the stores in the order of their first row (zarr_plan)
        chunks = RowChunks(TileStore.open(stores[st]), group, array)
        mine = np.flatnonzero(store == st)
        k_of = src[mine] // chunks.per
        for k in np.unique(k_of):
            chunk = chunks.read(int(k))
            at = mine[k_of == k]
            offset = src[at] - int(k) * chunks.per
            for j in np.unique(shard_of[at]):
                here = shard_of[at] == j
                buf = held.get(j)
                if buf is None:
                    buf = held[j] = buffer(j)
                buf[local[at[here]] - j * per] = chunk[offset[here]]
                left[j] -= int(here.sum())
        for j in [j for j in held if left[j] == 0]:
            buf = held.pop(j)
            _write(enc, base + int(j), sizes[j], buf[: sizes[j]])
            free.append(buf)
    return b - a


def write_official(spec, out: str, group: str, a: int, b: int, items: list) -> int:
    """Every array of ``group`` for the shard of rows ``a`` to ``b - 1``, read from an official folder."""
    from rsprep.formats.sources import read_items  # GDAL, imported by the workers that read GeoTIFFs only

    root = Path(out)
    if group == "s2":
        values = read_items(spec, "s2", items)
        blocks = {f"s2/{band}": np.stack([d[band] for d in values]) for band in SPECTRAL_BANDS}
    elif group == "s1":
        paired = [i for i, it in enumerate(items) if it is not None]
        values = read_items(spec, "s1", [items[i] for i in paired])
        blocks = {}
        for band in GROUP_BANDS["s1"]:
            enc = ShardEncoder(root / "s1" / band)
            block = blocks[f"s1/{band}"] = np.full((b - a, *enc.layout.inner), np.nan, np.float32)
            for i, d in zip(paired, values, strict=True):
                block[i] = d[band]
    else:
        values = read_items(spec, "map", items)
        blocks = {"reference_map": np.stack([d[MAP_BAND] for d in values])}
    for name, block in blocks.items():
        enc = ShardEncoder(root / name)
        _write(enc, a // enc.layout.per_shard, b - a, block)
    return (b - a) * len(blocks)


def write_stacked(out: str, a: int, b: int, method: str) -> int:
    """The ``s2_stacked`` shard of rows ``a`` to ``b - 1`` from the native band shards in ``out``."""
    from rsprep.core.kernels import to_side  # numba, imported by the workers that resample only

    root = Path(out)
    enc = ShardEncoder(root / "s2_stacked")
    s, side = a // enc.layout.per_shard, enc.layout.inner[-1]
    bands = [ShardFile(root / "s2" / band, read_layout(root / "s2" / band), s) for band in SPECTRAL_BANDS]

    def write() -> None:
        with enc.writer(s) as w:
            for r0 in range(0, b - a, STACK_ROWS):
                r1 = min(b - a, r0 + STACK_ROWS)
                block = np.empty((r1 - r0, len(SPECTRAL_BANDS), side, side), dtype=np.uint16)
                for j, band in enumerate(bands):
                    block[:, j] = to_side(band.read(r0, r1), side, method, 0)
                w.add(block)

    try:
        _write(enc, s, b - a, write)
    finally:
        for band in bands:
            band.close()
    return b - a
