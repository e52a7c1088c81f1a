"""``rsprep convert``: open the source, pick the default output, run the format's writer and record
the conversion in the dataset's ``build.json`` (docs/convert.md).

The output's lock (:mod:`rsprep.store.lock`) is held from before the writer touches its partial build
until the conversion is recorded: the LMDB folder's or the Zarr store's own, for the GeoTIFF layout
that of ``<root>/rsprep-tiff`` (:func:`rsprep.formats.geotiff.lock_target`)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from rsprep.errors import InvalidParameterError
from rsprep.formats.resumable import FORMATS, ConvertOptions, ConvertResult, Progress, say_log
from rsprep.formats.sources import open_source
from rsprep.store import dataset as ds
from rsprep.store.lock import locked


def default_output(fmt: str, root: Path) -> Path:
    """Where a format goes inside a dataset folder (docs/dataset.md): lmdb/, zarr/dataset.zarr, the layout."""
    from rsprep.formats.zarr import STORE_NAME

    return {"lmdb": root / "lmdb", "zarr": root / "zarr" / STORE_NAME, "tiff": root}[fmt]


def convert(
    fmt: str,
    src: str | Path,
    out: str | Path | None,
    options: ConvertOptions,
    say=say_log,
    progress: Progress | None = None,
) -> ConvertResult:
    """Convert ``src`` (dataset folder or official reBEN folder) to ``fmt`` at ``out`` (or the default)."""
    if fmt not in FORMATS:
        raise InvalidParameterError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")
    options.validate()
    source = open_source(src)
    for note in source.notes:
        say(note)
    dest = Path(out) if out is not None else default_output(fmt, source.root)
    target, what = dest, f"the {fmt.upper() if fmt == 'lmdb' else fmt.capitalize()} output"
    if fmt == "lmdb":
        from rsprep.formats.lmdb import write_lmdb as write
    elif fmt == "zarr":
        from rsprep.formats.zarr import write_zarr as write
    else:
        from rsprep.formats.geotiff import lock_target
        from rsprep.formats.geotiff import write_tiff as write

        target, what = lock_target(dest), "the GeoTIFF layout"
    with locked(target, what):
        result = write(source, dest, options, say, progress)
        if source.spec.kind == "dataset":
            record = {k: v for k, v in asdict(result).items() if k != "format"}
            record["path"] = ds.recorded_path(result.path, source.root)
            ds.record_build(source.root, f"convert_{fmt}", record)
    return result
