"""``rsprep stack``: 20 m and 60 m bands resampled to 10 m, stacked as (N, 12, h, w)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rsprep.cli.options import Force, Workers, default_workers


def stack(
    work: Annotated[Path, typer.Argument(help="Work store (or one tile store in it).", show_default=False)],
    resampling: Annotated[
        str, typer.Option("--resampling", help="Upsampling of 20 m / 60 m bands: bilinear or nearest.")
    ] = "bilinear",
    workers: Workers = 0,
    force: Force = False,
) -> None:
    """Stack the 12 spectral bands on the 10 m grid in the order B01…B08, B8A, B09, B11, B12."""
    from rsprep.cli.context import quiet
    from rsprep.cli.report import show_results
    from rsprep.stages.stack import StackOptions, stack_work

    options = StackOptions(resampling=resampling)
    results = stack_work(work, options, workers=default_workers(workers), force=force)
    show_results(
        results,
        what="stack",
        unit="store",
        line=lambda r: f"{r.status:7s} {r.store}: {r.patches} patches ({r.seconds:.1f} s)",
        is_quiet=quiet(),
    )
