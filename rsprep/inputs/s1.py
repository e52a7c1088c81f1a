"""Find Sentinel-1 scenes: GeoTIFFs in any CRS, one file per polarisation (docs/inputs.md#sentinel-1).

Files are found recursively. The scene name is the ``S1_PRODUCT`` tag or the file name without its
polarisation token; the polarisation is the ``POLARISATION`` tag or that token; the start time is
the ``START_TIME`` tag or the first ``YYYYMMDDTHHMMSS`` in the name.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from rsprep.errors import InputNotFoundError, InvalidParameterError

#: The polarisations a scene file may hold.
POLARISATIONS = ("VV", "VH", "HH", "HV")
_POL_TOKEN = re.compile(r"(?:^|[_\-.])(VV|VH|HH|HV)(?=$|[_\-.])", re.IGNORECASE)
_TIME = re.compile(r"(\d{8}T\d{6})")


@dataclass(frozen=True)
class S1Scene:
    """One Sentinel-1 scene: a GeoTIFF per polarisation."""

    name: str
    start: datetime
    files: dict[str, Path] = field(hash=False)


@dataclass
class S1Discovery:
    """The usable scenes of a folder, and why other files or scenes were not usable."""

    scenes: list[S1Scene]
    skipped: list[str]  # why files or scenes were not usable


def find_scenes(s1_dir: str | Path, *, polarisations: Sequence[str] = ("VV", "VH")) -> S1Discovery:
    """Find the scenes under ``s1_dir`` that have every requested polarisation.

    Raises:
        InputNotFoundError: ``s1_dir`` does not exist.
        InvalidParameterError: no usable scene, or an unknown polarisation.
    """
    pols = tuple(p.upper() for p in polarisations)
    bad = [p for p in pols if p not in POLARISATIONS]
    if bad or not pols:
        raise InvalidParameterError(f"polarisation(s) {bad or pols} not among {', '.join(POLARISATIONS)}")
    root = Path(s1_dir)
    if not root.is_dir():
        raise InputNotFoundError(f"Sentinel-1 folder {root} does not exist")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".tif", ".tiff") and p.is_file())
    groups, starts, skipped = _group_by_scene(files)
    scenes = []
    for name in sorted(groups):
        missing = [p for p in pols if p not in groups[name]]
        if missing:
            skipped.append(f"scene {name}: no {'/'.join(missing)} file (use --pol to pair with fewer)")
            continue
        scenes.append(S1Scene(name, starts[name], {p: groups[name][p] for p in pols}))
    if not scenes:
        detail = "; ".join(skipped[:5]) or "no .tif files"
        raise InvalidParameterError(f"no usable Sentinel-1 scene in {root}: {detail}")
    return S1Discovery(scenes, skipped)


def _group_by_scene(
    files: Sequence[Path],
) -> tuple[dict[str, dict[str, Path]], dict[str, datetime], list[str]]:
    """Group GeoTIFFs by scene: (scene → polarisation → file, scene → start, why files were skipped)."""
    import rasterio

    groups: dict[str, dict[str, Path]] = {}
    starts: dict[str, datetime] = {}
    skipped: list[str] = []
    for f in files:
        try:
            with rasterio.open(f) as ds:
                tags = ds.tags()
        except rasterio.errors.RasterioIOError as exc:
            skipped.append(f"{f}: unreadable ({exc})")
            continue
        pol = (tags.get("POLARISATION") or tags.get("POLARIZATION") or "").upper()
        m = _POL_TOKEN.search(f.stem)
        if not pol and m:
            pol = m.group(1).upper()
        if pol not in POLARISATIONS:
            skipped.append(f"{f}: no polarisation (tag POLARISATION or _VV/_VH in the name)")
            continue
        name = tags.get("S1_PRODUCT") or (_POL_TOKEN.sub("", f.stem, count=1) if m else f.stem)
        start = _parse_start(tags.get("START_TIME")) or _parse_start(name)
        if start is None:
            skipped.append(f"{f}: no start time (tag START_TIME or YYYYMMDDTHHMMSS in the name)")
            continue
        if pol in groups.setdefault(name, {}):
            skipped.append(f"{f}: second {pol} file of scene {name} (keeping {groups[name][pol]})")
            continue
        groups[name][pol] = f
        starts[name] = start
    return groups, starts, skipped


def _parse_start(value: str | None) -> datetime | None:
    """A ``START_TIME`` tag (ISO 8601, UTC) or the first ``YYYYMMDDTHHMMSS`` in ``value``, or None."""
    if not value:
        return None
    for fmt in ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%S"):
        try:
            return datetime.strptime(value, fmt).replace(tzinfo=UTC)
        except ValueError:
            pass
    m = _TIME.search(value)
    return datetime.strptime(m.group(1), "%Y%m%dT%H%M%S").replace(tzinfo=UTC) if m else None
