"""``rsprep convert``: a dataset or an official reBEN download to LMDB, Zarr or GeoTIFFs (docs/formats.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rsprep.cli.options import Overwrite, Workers, default_workers


def convert(
    fmt: Annotated[str, typer.Argument(metavar="FORMAT", help="lmdb, zarr or tiff.")],
    src: Annotated[
        Path,
        typer.Argument(
            metavar="SRC", help="A dataset folder built by `rsprep metadata`, or an official reBEN folder."
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="The LMDB folder, the Zarr store or the GeoTIFF root "
            "(default: SRC/lmdb, SRC/zarr/dataset.zarr, SRC).",
            show_default=False,
        ),
    ] = None,
    workers: Workers = 0,
    overwrite: Overwrite = False,
    chunk: Annotated[
        int,
        typer.Option(
            "--chunk",
            help="Values per task (0: LMDB 128 from GeoTIFFs or 1024 from a work store; GeoTIFF output 256).",
        ),
    ] = 0,
    stack: Annotated[
        bool, typer.Option("--stack", help="zarr: also write s2_stacked (N, 12, 120, 120) at 10 m.")
    ] = False,
    stack_method: Annotated[
        str, typer.Option("--stack-method", help="zarr --stack: bilinear or nearest.")
    ] = "bilinear",
    shard_patches: Annotated[
        int, typer.Option("--shard-patches", help="zarr: patches per shard file.")
    ] = 1024,
    class_order: Annotated[
        str, typer.Option("--class-order", help="zarr: label columns in alphabetical or paper order.")
    ] = "alphabetical",
    compressor: Annotated[
        str,
        typer.Option(
            "--compressor",
            help="zarr image arrays: none (reads at LMDB speed), lz4 or zstd (Blosc; smaller, slower).",
        ),
    ] = "none",
) -> None:
    """Write the LMDB (rico-hdl compatible), the Zarr v3 store or the official GeoTIFF layout.

    Interrupted runs resume where they stopped; an existing output is only replaced with --overwrite,
    and only once the new one is complete.
    """
    from rsprep.cli.context import quiet
    from rsprep.cli.report import ProgressBar
    from rsprep.formats.resumable import ConvertOptions
    from rsprep.stages.convert import convert as run

    options = ConvertOptions(
        workers=default_workers(workers),
        overwrite=overwrite,
        chunk=chunk,
        stack=stack,
        stack_method=stack_method,
        shard_patches=shard_patches,
        class_order=class_order,
        compressor=compressor,
    )
    say = (lambda _msg: None) if quiet() else typer.echo
    with ProgressBar(f"convert {fmt.lower()}", "value", disable=quiet()) as bar:
        result = run(fmt.lower(), src, out, options, say, bar)
    if quiet():
        return
    counts = ", ".join(f"{v} {k}" for k, v in result.values.items())
    resumed = f", {result.resumed_tasks} task(s) from an earlier run" if result.resumed_tasks else ""
    typer.echo(f"{result.format}: {counts} -> {result.path} ({result.seconds:.1f} s{resumed})")
