"""The official GeoTIFF layout, byte for byte as the reBEN distribution writes it (docs/formats.md).

S2 bands: uint16, nodata 0, uncompressed strips (GDAL's default layout); S1: float32, no nodata,
uncompressed; reference maps: uint16, nodata 0, DEFLATE with horizontal differencing (predictor 2).
Each patch folder is written under a temporary name and renamed, so it holds exactly its band files.
The three layout folders are built in ``.rsprep-tiff.partial`` inside the output folder and moved into
place when every patch is written; the metadata tables are copied beside them, as TorchGeo expects.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from rsprep.formats.layout import GROUPS, LAYOUT_DIRS, MAP_SUFFIX, band_files, patch_dir
from rsprep.formats.resumable import (
    ConvertOptions,
    ConvertResult,
    PartialBuild,
    group_plan,
    progress_bar,
    run_ordered,
    say_log,
)
from rsprep.formats.sources import Item, Source, SourceError, SourceSpec, read_items
from rsprep.store import dataset as ds
from rsprep.store.atomic import building, replace_path

PARTIAL = ".rsprep-tiff.partial"
DEFAULT_CHUNK = 256


def profile(group: str, array, crs, transform) -> dict:
    """The GTiff creation profile of one band file of ``group``."""
    from affine import Affine

    kw = {
        "driver": "GTiff",
        "width": array.shape[1],
        "height": array.shape[0],
        "count": 1,
        "dtype": array.dtype.name,
        "crs": crs,
        "transform": Affine(*transform),
    }
    if group in ("s2", "map"):
        kw["nodata"] = 0
    if group == "map":
        kw.update(compress="deflate", predictor=2)
    return kw


def write_patch(root: Path, group: str, key: str, values: dict) -> None:
    """Write one patch folder under ``root`` (a temporary sibling first, then a rename)."""
    import rasterio

    folder = root / patch_dir(group, key)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with building(folder) as tmp:
        for name, rel in band_files(group, key).items():
            arr = values[name]
            with rasterio.open(
                tmp / rel.name, "w", **profile(group, arr, values["_crs"], values["_transform"][name])
            ) as dst:
                dst.write(arr, 1)


def write_task(payload: tuple[SourceSpec, str, str, list[Item]]) -> int:
    """Read one task's patches and write their folders (runs in a worker)."""
    spec, root, group, items = payload
    values = read_items(spec, group, items, georef=True)
    for it, v in zip(items, values, strict=True):
        key = it.key.removesuffix(MAP_SUFFIX) if group == "map" else it.key
        write_patch(Path(root), group, key, v)
    return len(items)


def write_tiff(source: Source, dest: Path, options: ConvertOptions, say=say_log) -> ConvertResult:
    t0 = time.perf_counter()
    if source.spec.kind == "official" and dest.resolve() == source.root.resolve():
        raise SourceError(
            f"{source.root} is already in the GeoTIFF layout; pass --out to write a copy elsewhere"
        )
    tasks, _, record = group_plan("tiff", source, options.chunk or DEFAULT_CHUNK)
    dest.mkdir(parents=True, exist_ok=True)
    build = PartialBuild(dest, record, dest / PARTIAL)
    build.start(
        exists=any((dest / d).exists() for d in LAYOUT_DIRS),
        overwrite=options.overwrite,
        say=say,
        what=f"the GeoTIFF layout in {dest}",
    )
    total = sum(len(v) for v in source.items.values())
    bar = progress_bar(total, "convert tiff", options.quiet)
    bar.update(sum(len(items) for i, (_, _, items) in enumerate(tasks) if i in build.done))

    def done(tid: int, count: int) -> None:
        build.log(tid)
        bar.update(count)

    payloads = (
        (tid, (source.spec, str(build.path), g, items))
        for tid, (_, g, items) in enumerate(tasks)
        if tid not in build.done
    )
    try:
        what = f"GeoTIFFs under {build.path}"
        run_ordered(write_task, payloads, workers=options.workers, on_result=done, what=what)
    finally:
        bar.close()
    build.cleanup()
    for d in LAYOUT_DIRS:
        if (build.path / d).is_dir():
            replace_path(build.path / d, dest / d)
    shutil.rmtree(build.path)
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
