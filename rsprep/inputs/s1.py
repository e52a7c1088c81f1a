"""Find Sentinel-1 scenes: GeoTIFFs in any CRS, one file per polarisation (docs/inputs.md#sentinel-1).

Files are found recursively. The scene name is the ``S1_PRODUCT`` tag or the file name without its
polarisation token; the polarisation is the ``POLARISATION`` tag or that token; the start time is
the ``START_TIME`` tag or the first ``YYYYMMDDTHHMMSS`` in the name.

A scene that cannot be used as it is (a file GDAL cannot open, a file shorter than its blocks, a
requested polarisation missing) is a *bad scene*: it is not a candidate for pairing, and the stage
decides what it means for the stores it could serve (docs/inputs.md#sentinel-1).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from rsprep.errors import InputNotFoundError, InvalidParameterError, RsprepError

#: The polarisations a scene file may hold.
POLARISATIONS = ("VV", "VH", "HH", "HV")
_POL_TOKEN = re.compile(r"(?:^|[_\-.])(VV|VH|HH|HV)(?=$|[_\-.])", re.IGNORECASE)
_TIME = re.compile(r"(\d{8}T\d{6})")
#: What a bad scene's message ends with.
FIX = "re-download it or pass --skip-bad-s1"


class BadS1Error(RsprepError, OSError):
    """A Sentinel-1 scene file is truncated or corrupt, or a scene lacks a requested polarisation."""


@dataclass(frozen=True)
class S1Scene:
    """One Sentinel-1 scene: a GeoTIFF per polarisation."""

    name: str
    start: datetime
    files: dict[str, Path] = field(hash=False)


@dataclass(frozen=True)
class BadScene:
    """A scene that cannot be paired: ``start`` is None when not even the file name tells it."""

    name: str
    start: datetime | None
    path: Path  # the file at fault (for a missing polarisation: a file of the scene that exists)
    problem: str

    def message(self) -> str:
        """One line naming the file, what is wrong and the fix."""
        return f"Sentinel-1 file {self.path} (scene {self.name}): {self.problem}; {FIX}"


@dataclass
class S1Discovery:
    """The usable scenes of a folder, the bad ones, and why other files were not used."""

    scenes: list[S1Scene]
    skipped: list[str]  # files that are no S1 scene file (no polarisation or time), duplicates
    bad: list[BadScene] = field(default_factory=list)


def find_scenes(s1_dir: str | Path, *, polarisations: Sequence[str] = ("VV", "VH")) -> S1Discovery:
    """Find the scenes under ``s1_dir``: usable ones have every requested polarisation, readable.

    Raises:
        InputNotFoundError: ``s1_dir`` does not exist.
        InvalidParameterError: no usable scene, or an unknown polarisation.
    """
    pols = tuple(p.upper() for p in polarisations)
    unknown = [p for p in pols if p not in POLARISATIONS]
    if unknown or not pols:
        raise InvalidParameterError(f"polarisation(s) {unknown or pols} not among {', '.join(POLARISATIONS)}")
    root = Path(s1_dir)
    if not root.is_dir():
        raise InputNotFoundError(f"Sentinel-1 folder {root} does not exist")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".tif", ".tiff") and p.is_file())
    groups, starts, broken, skipped = _group_by_scene(files)
    scenes, bad = [], []
    for name in sorted(set(groups) | set(broken)):
        have = groups.get(name, {})
        problems = [(f, why) for pol, f, why in broken.get(name, []) if pol in pols or pol is None]
        missing = [p for p in pols if p not in have and not any(q == p for q, _, _ in broken.get(name, []))]
        start = starts.get(name) or _parse_start(name)
        if not have and not problems:
            skipped.append(f"scene {name}: no {'/'.join(pols)} file")
        elif problems:
            bad.extend(BadScene(name, start, f, why) for f, why in problems)
        elif missing:
            beside = next(iter(have.values()))
            why = f"no {'/'.join(missing)} file beside it (or pass --pol to pair with fewer)"
            bad.append(BadScene(name, start, beside, why))
        else:
            scenes.append(S1Scene(name, starts[name], {p: have[p] for p in pols}))
    if not scenes:
        detail = "; ".join([b.message() for b in bad[:3]] + skipped[:3]) or "no .tif files"
        raise InvalidParameterError(f"no usable Sentinel-1 scene in {root}: {detail}")
    return S1Discovery(scenes, skipped, bad)


def _group_by_scene(files: Sequence[Path]):
    """Group GeoTIFFs by scene: (scene → polarisation → file, scene → start,
    scene → [(polarisation or None, file, problem)] of bad files, why other files were skipped)."""
    import rasterio

    groups: dict[str, dict[str, Path]] = {}
    starts: dict[str, datetime] = {}
    broken: dict[str, list[tuple[str | None, Path, str]]] = {}
    skipped: list[str] = []
    for f in files:
        m = _POL_TOKEN.search(f.stem)
        try:
            with rasterio.open(f) as ds:
                tags, problem = ds.tags(), _layout_problem(ds, f)
        except rasterio.errors.RasterioIOError as exc:
            tags, problem = {}, f"unreadable ({_one_line(exc)})"
        if problem:  # named from the file name alone: its tags may be what is damaged
            name = _POL_TOKEN.sub("", f.stem, count=1) if m else f.stem
            broken.setdefault(name, []).append((m.group(1).upper() if m else None, f, problem))
            continue
        pol = (tags.get("POLARISATION") or tags.get("POLARIZATION") or "").upper()
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
    return groups, starts, broken, skipped


def _layout_problem(ds, path: Path) -> str | None:
    """Why an opened GeoTIFF cannot be whole (a block past the end of the file), or None.

    Reads only the block offsets and sizes of band 1 (GDAL's ``TIFF`` metadata domain).
    """
    if ds.driver != "GTiff":
        return None
    size = path.stat().st_size
    bh, bw = ds.block_shapes[0]
    for by in range(-(-ds.height // bh)):
        for bx in range(-(-ds.width // bw)):
            off, n = _block(ds, bx, by)
            if off + n > size:
                return f"truncated: {size} bytes, block ({bx}, {by}) ends at byte {off + n}"
    return None


def _block(ds, bx: int, by: int) -> tuple[int, int]:
    """(offset, byte count) of block column ``bx``, row ``by`` of band 1; (0, 0) for a sparse one."""
    off = ds.get_tag_item(f"BLOCK_OFFSET_{bx}_{by}", "TIFF", bidx=1)
    n = ds.get_tag_item(f"BLOCK_SIZE_{bx}_{by}", "TIFF", bidx=1)
    return int(off or 0), int(n or 0)


def verify_blocks(ds, path: Path, window, checked: set) -> None:
    """Check that every block of band 1 touching ``window`` (rows, cols) decompresses whole.

    GDAL decodes a damaged DEFLATE block without an error (it stops before the stream's checksum),
    so its blocks are inflated here first, each once per ``checked`` set. Other codecs rely on
    GDAL's own errors.

    Raises:
        BadS1Error: naming the file and the block.
    """
    if ds.compression is None or ds.compression.name not in ("deflate",):
        return
    (r0, r1), (c0, c1) = window
    bh, bw = ds.block_shapes[0]
    todo = [
        (bx, by)
        for by in range(max(r0, 0) // bh, min(r1, ds.height - 1) // bh + 1)
        for bx in range(max(c0, 0) // bw, min(c1, ds.width - 1) // bw + 1)
        if (bx, by) not in checked
    ]
    if not todo:
        return
    with open(path, "rb") as fh:
        for bx, by in todo:
            off, n = _block(ds, bx, by)
            fh.seek(off)
            try:
                if n:
                    zlib.decompress(fh.read(n))
            except zlib.error as exc:
                raise BadS1Error(
                    f"Sentinel-1 file {path}: block ({bx}, {by}) is corrupt ({exc}); {FIX}"
                ) from exc
            checked.add((bx, by))


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


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
