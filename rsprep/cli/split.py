"""``rsprep split``: assign train / validation / test and write the leakage report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rsprep.cli.options import Overwrite, Seed, SplitFractions


def split(
    target: Annotated[
        Path, typer.Argument(help="A dataset folder (all its tables), or one parquet file with patch_id.")
    ],
    method: Annotated[
        str, typer.Option("--method", help="tile-border (reBEN), block, tile or random.")
    ] = "tile-border",
    fractions: SplitFractions = "0.5,0.25,0.25",
    seed: Seed = 0,
    block_km: Annotated[float, typer.Option("--block-km", help="Block side for --method block (km).")] = 10.0,
    buffer: Annotated[
        int, typer.Option("--buffer", help="Drop blocks within this many blocks of a higher-priority split.")
    ] = 0,
    patch_size: Annotated[
        float, typer.Option("--patch-size", help="Patch side (m) when the table has no patch_size_m column.")
    ] = 1200.0,
    tile_size: Annotated[
        float, typer.Option("--tile-size", help="Tile side (m) when the table has no tile_size_m column.")
    ] = 109_800.0,
    crs: Annotated[
        str,
        typer.Option("--crs", help="Equal-area CRS for blocks and distances (auto: EPSG:3035 in Europe)."),
    ] = "auto",
    out: Annotated[
        Path | None, typer.Option("--out", help="Write a single parquet here instead of updating it.")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the leakage report as JSON.")] = False,
    overwrite: Overwrite = False,
) -> None:
    """Split a dataset (docs/splits.md); prints the split counts and writes split_report.json / .txt."""
    import json

    from rsprep.cli.context import quiet
    from rsprep.core.leakage import summary
    from rsprep.core.splits import SplitOptions, parse_fractions
    from rsprep.stages.split import split_target

    options = SplitOptions(
        method=method,
        fractions=parse_fractions(fractions),
        seed=seed,
        block_km=block_km,
        buffer=buffer,
        patch_size=patch_size,
        tile_size=tile_size,
        crs=crs,
    )
    outcome, files, report = split_target(target, options, out=out, overwrite=overwrite)
    if json_out:
        typer.echo(json.dumps(outcome.report, indent=2))
        return
    if quiet():
        return
    typer.echo(summary(outcome.report, method), nl=False)
    typer.echo("updated: " + ", ".join(str(f) for f in files))
    typer.echo(f"leakage report: {report} and {report.with_suffix('.txt')}")
