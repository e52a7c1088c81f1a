"""``rsprep inspect``: describe a Sentinel-2 product."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from rsprep.cli.options import Json


def inspect(
    paths: Annotated[
        list[Path], typer.Argument(help="SAFE folders or .zip files (L2A or L1C).", show_default=False)
    ],
    as_json: Json = False,
    strict: Annotated[
        bool,
        typer.Option("--strict", help="Exit 1 when a band file is missing, unreadable or wrongly sized."),
    ] = False,
    no_check: Annotated[
        bool, typer.Option("--no-check", help="Do not open band files (faster; sizes are not compared).")
    ] = False,
) -> None:
    """Describe Sentinel-2 products: naming, geocoding, radiometry, quality and band files."""
    from rsprep.inputs.safe import read_product
    from rsprep.inputs.safe_describe import format_product

    products = [read_product(p, check_files=not no_check) for p in paths]
    if as_json:
        docs = [p.to_dict() for p in products]
        typer.echo(json.dumps(docs[0] if len(docs) == 1 else docs, indent=2))
    else:
        typer.echo("\n\n".join(format_product(p) for p in products))
    if strict and any(p.problems for p in products):
        raise typer.Exit(1)
