"""The official reBEN GeoTIFF layout (docs/formats.md#geotiff-layout): its names, its writer (byte for
byte as the reBEN distribution writes it) and its reader.

```
BigEarthNet-S2/<patch_id minus _x_y>/<patch_id>/<patch_id>_<band>.tif      uint16, nodata 0
BigEarthNet-S1/<s1_name minus _tile_x_y>/<s1_name>/<s1_name>_VV.tif        float32 (and _VH)
Reference_Maps/<patch_id minus _x_y>/<patch_id>/<patch_id>_reference_map.tif  uint16, deflate
```


S2 bands: uint16, nodata 0, uncompressed strips (GDAL's default layout); S1: float32, no nodata,
uncompressed, StripByteCounts typed LONG as in the official (BigEarthNet v1.0) files
(:mod:`rsprep.formats.tiff_long_counts`); reference maps: uint16, nodata 0, DEFLATE with horizontal
differencing (predictor 2). Every file holds GDAL's bytes, written from a template of them where one
applies (:mod:`rsprep.formats.tiff_template`), else by GDAL in memory; :mod:`rsprep.formats.tiff_gdal`
keeps the writer that opened each file with GDAL, the reference of the tests.
Each patch folder is written in a temporary folder of its process (``.rsprep-tmp-<pid>/<key>`` in the
partial build) and renamed into place, so it holds exactly its band files; a failed or short write
is an error naming the file. No lock and no sync per folder: the conversion holds the layout's lock,
and the partial build (logged per task without syncs, bound to the boot: :class:`PartialBuild`) is
synced once before the switch. The three layout folders are built in ``.rsprep-tiff.partial`` inside
the output folder and switched into place with renames only, recorded first in a journal
(``.rsprep-tiff.switch.json``) so that a run killed mid-switch is completed by the next run
(:func:`finish_switch`); the metadata tables are copied beside them, as TorchGeo expects. The layout's
lock (:mod:`rsprep.store.lock`) is that of ``<root>/rsprep-tiff`` (the file ``.rsprep-tiff.lock``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rsprep.core.grid import parse_patch_id, strip_parts
from rsprep.core.values import GROUP_BANDS, GROUPS, MAP_BAND, MAP_SUFFIX, REFERENCE_MAP
from rsprep.errors import ReaderError
from rsprep.formats.resumable import (
    ConvertOptions,
    ConvertResult,
    Counter,
    PartialBuild,
    Progress,
    group_plan,
    run_ordered,
    say_log,
)
from rsprep.formats.tiff_switch import SWITCH, finish_switch, switch
from rsprep.formats.tiff_template import band_buffers, write_file
from rsprep.formats.tiff_template import profile as profile  # re-exported: the GTiff creation profile
from rsprep.store import dataset as ds
from rsprep.store.atomic import building

if TYPE_CHECKING:  # sources.py reads this layout, so it is imported where it is used
    from rsprep.formats.sources import Item, Source, SourceSpec

S2_DIR = "BigEarthNet-S2"
S1_DIR = "BigEarthNet-S1"
MAPS_DIR = "Reference_Maps"
LAYOUT_DIRS = (S2_DIR, S1_DIR, MAPS_DIR)


# --------------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------------
def patch_dir(group: str, key: str) -> Path:
    """Folder of one patch relative to the layout root (``key`` = patch_id or s1_name)."""
    if group == "s2":
        return Path(S2_DIR, parse_patch_id(key)[0], key)
    if group == "s1":
        return Path(S1_DIR, strip_parts(key, 3), key)
    if group == "map":
        return Path(MAPS_DIR, parse_patch_id(key)[0], key)
    raise ValueError(f"unknown group {group!r}")


#: group -> (band, what follows the patch's key in the name of its file), in writing order
SUFFIXES = {
    "s2": [(b, f"_{b}.tif") for b in GROUP_BANDS["s2"]],
    "s1": [(b, f"_{b}.tif") for b in GROUP_BANDS["s1"]],
    "map": [(MAP_BAND, f"{MAP_SUFFIX}.tif")],
}


def band_files(group: str, key: str) -> dict[str, Path]:
    """Band name -> file of one patch, relative to the layout root."""
    folder = patch_dir(group, key)
    return {b: folder / f"{key}{suffix}" for b, suffix in SUFFIXES[group]}


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


# --------------------------------------------------------------------------------------------
# Writer
# --------------------------------------------------------------------------------------------
PARTIAL = ".rsprep-tiff.partial"
#: Prefix of the writers' temporary folders inside the partial build (one per process).
TEMP_PREFIX = ".rsprep-tmp-"
DEFAULT_CHUNK = 256


def lock_target(root: Path) -> Path:
    """The output whose lock covers the layout in ``root`` (its three folders, partial build, journal)."""
    return root / "rsprep-tiff"


def write_patch(root: Path, group: str, key: str, values: dict) -> None:
    """Write one patch folder under ``root``: its band files (:func:`band_buffers`: GDAL's bytes, from a
    template where one applies) in a temporary folder of this process, then one rename into place.

    No lock and no sync per folder: the conversion holds the layout's lock and syncs the partial build
    once before the switch. A folder left in place by a killed run is replaced.
    """
    folder = f"{root}{os.sep}{patch_dir(group, key)}"
    tmp = _temp_folder(f"{root}{os.sep}{TEMP_PREFIX}{os.getpid()}", key)
    try:
        crs, transforms = values["_crs"], values["_transform"]
        into, at = f"{tmp}{os.sep}{key}", f"{folder}{os.sep}{key}"
        for name, suffix in SUFFIXES[group]:
            parts = band_buffers(group, values[name], crs, transforms[name])
            write_file(into + suffix, parts, at + suffix)
        _into_place(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _temp_folder(parent: str, key: str) -> str:
    """An empty folder ``parent/key``, ``parent`` being ``<root>/.rsprep-tmp-<pid>`` (the writers'
    temporaries, removed at the start and the end of each conversion)."""
    tmp = f"{parent}{os.sep}{key}"
    try:
        os.mkdir(tmp)
    except FileNotFoundError:
        os.makedirs(tmp)
    except FileExistsError:
        shutil.rmtree(tmp)
        os.mkdir(tmp)
    return tmp


def _into_place(tmp: str, folder: str) -> None:
    try:
        os.rename(tmp, folder)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(folder), exist_ok=True)
        os.rename(tmp, folder)
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
        # written by a run killed before it logged the task: moved aside into the temporaries (nobody
        # reads the partial build; a kill in between leaves the task unlogged, so it is written again)
        old = f"{tmp}.old"
        shutil.rmtree(old, ignore_errors=True)
        os.rename(folder, old)
        os.rename(tmp, folder)
        shutil.rmtree(old)


def remove_temporaries(root: Path) -> None:
    """Remove the temporary folders that writers left in ``root`` (call with the layout's lock held)."""
    for path in root.glob(f"{TEMP_PREFIX}*"):
        shutil.rmtree(path, ignore_errors=True)


def write_task(payload: tuple[SourceSpec, str, str, list[Item]]) -> int:
    """Read one task's patches and write their folders (runs in a worker): work-store values chunk row
    by chunk row (:mod:`rsprep.formats.tiff_values`), official files through :func:`read_items`."""
    from rsprep.formats.sources import read_items
    from rsprep.formats.tiff_values import work_values

    spec, root, group, items = payload
    if spec.kind == "dataset":
        pairs = work_values(spec.work, group, items)
    else:
        pairs = zip(items, read_items(spec, group, items, georef=True), strict=True)
    for it, v in pairs:
        key = it.key.removesuffix(MAP_SUFFIX) if group == "map" else it.key
        write_patch(Path(root), group, key, v)
    return len(items)


def write_tiff(
    source: Source, dest: Path, options: ConvertOptions, say=say_log, progress: Progress | None = None
) -> ConvertResult:
    from rsprep.formats.sources import SourceError

    t0 = time.perf_counter()
    if source.spec.kind == "official" and dest.resolve() == source.root.resolve():
        raise SourceError(
            f"{source.root} is already in the GeoTIFF layout; pass --out to write a copy elsewhere"
        )
    tasks, _, record = group_plan("tiff", source, options.chunk or DEFAULT_CHUNK)
    record["writer"] = "templates"  # a partial build of the earlier writer (GDAL per file) starts over
    dest.mkdir(parents=True, exist_ok=True)
    finish_switch(dest, say)
    build = PartialBuild(dest, record, dest / PARTIAL, unsynced=True)
    build.start(
        exists=any((dest / d).exists() for d in LAYOUT_DIRS),
        overwrite=options.overwrite,
        say=say,
        what=f"the GeoTIFF layout in {dest}",
    )
    remove_temporaries(build.path)  # of a killed run: its unlogged task is written again
    total = sum(len(v) for v in source.items.values())
    counter = Counter(total, progress, sum(len(it) for i, (_, _, it) in enumerate(tasks) if i in build.done))

    def done(tid: int, count: int) -> None:
        build.log(tid)
        counter.add(count)

    payloads = (
        (tid, (source.spec, str(build.path), g, items))
        for tid, (_, g, items) in enumerate(tasks)
        if tid not in build.done
    )
    what = f"GeoTIFFs under {build.path}"
    try:
        run_ordered(write_task, payloads, workers=options.workers, on_result=done, what=what)
    except BaseException:
        with contextlib.suppress(OSError):  # an orderly stop: the logged tasks survive a restart too
            build.sync()
        raise
    remove_temporaries(build.path)
    build.sync()  # the one flush of every file written
    build.cleanup()
    switch(dest, build.path, LAYOUT_DIRS)
    copied = _copy_tables(source, dest)
    return ConvertResult(
        "tiff",
        str(dest),
        {g: len(source.items[g]) for g in GROUPS},
        len(tasks),
        build.resumed_tasks,
        time.perf_counter() - t0,
        {"tables_copied": copied},
    )


def _copy_tables(source: Source, dest: Path) -> list[str]:
    """Copy the metadata tables next to the layout (TorchGeo reads ``metadata.parquet`` from there)."""
    copied = []
    for name in (ds.METADATA, ds.FLAGGED):
        src = source.root / name
        if src.is_file() and src.resolve() != (dest / name).resolve():
            with building(dest / name, folder=False) as tmp:
                shutil.copyfile(src, tmp)
            copied.append(name)
    return copied


# --------------------------------------------------------------------------------------------
# Reader
# --------------------------------------------------------------------------------------------
class TiffReader:
    """Patches of the official GeoTIFF layout (a folder holding ``BigEarthNet-S2/`` …)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if (self.root / SWITCH).exists():
            raise ReaderError(
                f"{self.root / SWITCH} records an unfinished switch of the GeoTIFF layout (a killed "
                f"`rsprep convert tiff`); run that conversion again to finish it"
            )

    def get(self, group: str, key: str) -> dict[str, np.ndarray]:
        """The band arrays of one S2 patch (``s2``), S1 patch (``s1``) or reference map (``map``)."""
        import tifffile

        out: dict[str, np.ndarray] = {}
        for name, rel in band_files(group, key).items():
            path = self.root / rel
            try:
                out[name] = tifffile.imread(path)
            except FileNotFoundError:
                raise ReaderError(f"{path} is missing ({group} patch {key})") from None
            except (tifffile.TiffFileError, ValueError, OSError) as exc:
                raise ReaderError(
                    f"{path} is not a readable GeoTIFF ({exc}); re-download or rewrite it"
                ) from exc
        return out

    def patch(self, patch_id: str, s1_name: str | None = None, *, reference_map: bool = True) -> dict:
        out = self.get("s2", patch_id)
        if s1_name:
            out.update(self.get("s1", s1_name))
        if reference_map:
            out[REFERENCE_MAP] = self.get("map", patch_id)[MAP_BAND]
        return out
