"""``rsprep card``: the dataset card: README.md (Hugging Face front matter), figures/, croissant.json."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rsprep.cli.options import Overwrite, Seed


def card(
    dataset: Annotated[
        Path, typer.Argument(help="Dataset folder (built by rsprep, or an official reBEN folder).")
    ],
    countries: Annotated[
        Path | None,
        typer.Option(
            "--countries", help="Polygon file whose borders are drawn on the map.", show_default=False
        ),
    ] = None,
    preview: Annotated[
        int,
        typer.Option(
            "--preview",
            min=0,
            max=64,
            help="Patches in the RGB preview grid (0: no grid).",
            show_default=True,
        ),
    ] = 16,
    seed: Seed = 0,
    overwrite: Overwrite = False,
) -> None:
    """Write DATASET/README.md, DATASET/figures/*.png and DATASET/croissant.json (docs/card.md).

    Every number in the card is computed from the parquet files. A README.md not written by
    rsprep card is replaced only with --overwrite.
    """
    from rsprep.card import CardOptions, make_card
    from rsprep.cli.context import quiet
    from rsprep.cli.report import ProgressBar

    options = CardOptions(countries=countries, preview=preview, seed=seed)
    with ProgressBar("card", "step", disable=quiet()) as bar:
        result = make_card(dataset, options, overwrite=overwrite, progress=bar)
    if quiet():
        return
    typer.echo(f"{result.readme} ({result.patches} patches)")
    for path in result.written:
        if path != result.readme:
            typer.echo(f"  {path}")
    for name, note in result.notes.items():
        typer.echo(f"  {name}: {note}")
