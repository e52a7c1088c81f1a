"""Random access to converted datasets: one patch by id, as numpy arrays per band (no torch).

- :class:`LmdbReader` reads the rico-hdl LMDB (docs/formats.md#lmdb). The environment is opened once
  per process, read-only, without the lock file and with ``buffers=True`` transactions, as ConfigILM
  does; a reader handed to a forked or spawned data-loader worker reopens it there.
- :class:`ZarrReader` reads the Zarr v3 store (docs/formats.md#zarr).
- :class:`TiffReader` reads the official GeoTIFF layout (docs/formats.md#geotiff-layout), one file per band.

All three return ``{band: array}`` with the same names: ``B01 … B12, B8A`` (uint16, native size),
``VV``, ``VH`` (float32) and ``reference_map`` (uint16). :func:`iter_patches` iterates over ids.
Each reader lives in its format's module; this module gathers them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from rsprep.errors import ReaderError
from rsprep.formats.geotiff import TiffReader
from rsprep.formats.lmdb import LmdbReader
from rsprep.formats.zarr import ZarrReader
from rsprep.formats.zarr_shards import ShardedPatchArray

__all__ = ["LmdbReader", "ReaderError", "ShardedPatchArray", "TiffReader", "ZarrReader", "iter_patches"]


def iter_patches(reader, patch_ids: Iterable[str], s1_names: Iterable[str | None] | None = None) -> Iterator:
    """``(patch_id, arrays)`` for each id, in the given order (a torch-free data loader)."""
    ids = list(patch_ids)
    pairs = zip(ids, s1_names if s1_names is not None else [None] * len(ids), strict=True)
    for patch_id, s1_name in pairs:
        if isinstance(reader, ZarrReader):
            yield patch_id, reader.patch(patch_id, s1=True)
        else:
            yield patch_id, reader.patch(patch_id, s1_name)
