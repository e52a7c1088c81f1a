"""The official reBEN GeoTIFF layout (docs/formats.md): folder and file names, and finding patches in it.

```
BigEarthNet-S2/<patch_id minus _x_y>/<patch_id>/<patch_id>_<band>.tif      uint16, nodata 0
BigEarthNet-S1/<s1_name minus _tile_x_y>/<s1_name>/<s1_name>_VV.tif        float32 (and _VH)
Reference_Maps/<patch_id minus _x_y>/<patch_id>/<patch_id>_reference_map.tif  uint16, deflate
```
"""

from __future__ import annotations

import os
from pathlib import Path

from rsprep.core.bands import SPECTRAL_BANDS, band
from rsprep.core.grid import strip_parts

S2_DIR = "BigEarthNet-S2"
S1_DIR = "BigEarthNet-S1"
MAPS_DIR = "Reference_Maps"
LAYOUT_DIRS = (S2_DIR, S1_DIR, MAPS_DIR)
S1_BANDS = ("VV", "VH")
MAP_BAND = "Data"  # the safetensors key of a reference map (rico-hdl)
MAP_SUFFIX = "_reference_map"
#: The three kinds of value a dataset holds, in the order the LMDB is written (docs/formats.md#lmdb).
GROUPS = ("s1", "s2", "map")
#: Bands per group, in the order the files are read and the arrays are named.
GROUP_BANDS: dict[str, tuple[str, ...]] = {"s1": S1_BANDS, "s2": SPECTRAL_BANDS, "map": (MAP_BAND,)}
GROUP_DTYPES = {"s1": "float32", "s2": "uint16", "map": "uint16"}


def native_pixels(name: str, patch_size: int = 1200) -> int:
    """Pixels per side of band ``name`` (an S2 band, VV/VH or Data) for a patch of ``patch_size`` m."""
    if name in S1_BANDS or name == MAP_BAND:
        return patch_size // 10
    return patch_size // band(name).resolution


def patch_dir(group: str, key: str) -> Path:
    """Folder of one patch relative to the layout root (``key`` = patch_id or s1_name)."""
    if group == "s2":
        return Path(S2_DIR, strip_parts(key, 2), key)
    if group == "s1":
        return Path(S1_DIR, strip_parts(key, 3), key)
    if group == "map":
        return Path(MAPS_DIR, strip_parts(key, 2), key)
    raise ValueError(f"unknown group {group!r}")


def band_files(group: str, key: str) -> dict[str, Path]:
    """Band name -> file of one patch, relative to the layout root."""
    folder = patch_dir(group, key)
    if group == "map":
        return {MAP_BAND: folder / f"{key}{MAP_SUFFIX}.tif"}
    return {b: folder / f"{key}_{b}.tif" for b in GROUP_BANDS[group]}


def map_key(patch_id: str) -> str:
    """The LMDB key of a patch's reference map."""
    return f"{patch_id}{MAP_SUFFIX}"


def scan(root: Path, group: str) -> list[str]:
    """Patch names found in ``root``'s layout folder of ``group``, sorted (two directory levels)."""
    top = root / {"s2": S2_DIR, "s1": S1_DIR, "map": MAPS_DIR}[group]
    if not top.is_dir():
        return []
    names: list[str] = []
    with os.scandir(top) as outer:
        for scene in outer:
            if not scene.is_dir():
                continue
            with os.scandir(scene.path) as inner:
                names.extend(e.name for e in inner if e.is_dir())
    return sorted(names)


def is_layout(root: Path) -> bool:
    """Whether ``root`` holds at least the S2 folder of the official layout."""
    return (root / S2_DIR).is_dir()
