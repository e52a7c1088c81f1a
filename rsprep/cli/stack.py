"""``rsprep stack``: 20 m and 60 m bands resampled to 10 m, stacked as (N, 12, h, w)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rsprep.cli.options import Force


def stack(
    work: Annotated[Path, typer.Argument(help="Work store (or one tile store in it).", show_default=False)],
    resampling: Annotated[
        str, typer.Option("--resampling", help="Upsampling of 20 m / 60 m bands: bilinear or nearest.")
    ] = "bilinear",
    force: Force = False,
) -> None:
    """Stack the 12 spectral bands on the 10 m grid in the order B01…B08, B8A, B09, B11, B12."""
    from rsprep.cli.main import quiet
    from rsprep.stack import stack_work

    results = stack_work(work, resampling=resampling, force=force)
    _summarize(results, "stack", quiet())


def _summarize(results, what: str, is_quiet: bool) -> None:
    failed = [r for r in results if r.status == "failed"]
    if not is_quiet:
        for r in results:
            if r.status != "failed":
                typer.echo(f"{r.status:7s} {r.store}: {r.patches} patches ({r.seconds:.1f} s)")
    if failed:
        typer.echo(f"rsprep: error: {what} failed for {len(failed)} of {len(results)} store(s):", err=True)
        for r in failed:
            typer.echo(f"  {r.error}", err=True)
        raise typer.Exit(1)
