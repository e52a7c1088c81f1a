"""The values a dataset stores per patch: three groups (S1, S2, reference map), their bands, dtypes
and keys, as the LMDB, the Zarr store and the GeoTIFF layout name them (docs/formats.md)."""

from __future__ import annotations

from rsprep.core.bands import SPECTRAL_BANDS, band
from rsprep.core.grid import patch_pixels

S1_BANDS = ("VV", "VH")
MAP_BAND = "Data"  # the safetensors key of a reference map (rico-hdl)
MAP_SUFFIX = "_reference_map"
#: What the readers call a patch's reference map.
REFERENCE_MAP = "reference_map"
#: The three kinds of value a dataset holds, in the order the LMDB is written (docs/formats.md#lmdb).
GROUPS = ("s1", "s2", "map")
#: Bands per group, in the order the files are read and the arrays are named.
GROUP_BANDS: dict[str, tuple[str, ...]] = {"s1": S1_BANDS, "s2": SPECTRAL_BANDS, "map": (MAP_BAND,)}
GROUP_DTYPES = {"s1": "float32", "s2": "uint16", "map": "uint16"}


def native_pixels(name: str, patch_size: int = 1200) -> int:
    """Pixels per side of band ``name`` (an S2 band, VV/VH or Data) for a patch of ``patch_size`` m."""
    return patch_pixels(patch_size, resolution(name))


def resolution(name: str) -> int:
    """Ground resolution (m) of band ``name``: 10 for VV/VH and the map, else the S2 band's."""
    return 10 if name in S1_BANDS or name == MAP_BAND else band(name).resolution


def map_key(patch_id: str) -> str:
    """The LMDB key of a patch's reference map."""
    return f"{patch_id}{MAP_SUFFIX}"
