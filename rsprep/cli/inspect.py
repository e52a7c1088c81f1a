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
        typer.Option(
            "--strict",
            help="Exit 1 when a band file is missing, unreadable, wrongly sized or unlike manifest.safe.",
        ),
    ] = False,
    no_check: Annotated[
        bool,
        typer.Option(
            "--no-check", help="Do not open band files (faster; sizes and checksums are not compared)."
        ),
    ] = False,
    no_verify: Annotated[
        bool,
        typer.Option(
            "--no-verify", help="Do not check the files against manifest.safe (size, MD5/SHA3) and zip CRCs."
        ),
    ] = False,
) -> None:
    """Describe Sentinel-2 products: naming, geocoding, radiometry, quality and band files."""
    from rsprep.inputs.safe import read_product
    from rsprep.inputs.safe_describe import format_product
    from rsprep.inputs.safe_manifest import product_inputs, verify_files

    products = [read_product(p, check_files=not no_check) for p in paths]
    checks = [
        None
        if no_check or no_verify
        else verify_files(p, product_inputs(p, [b.path for b in p.bands if b.exists]))
        for p in products
    ]
    if as_json:
        docs = [
            {**p.to_dict(), **({"integrity": vars(c)} if c is not None else {})}
            for p, c in zip(products, checks, strict=True)
        ]
        typer.echo(json.dumps(docs[0] if len(docs) == 1 else docs, indent=2))
    else:
        typer.echo("\n\n".join(format_product(p, c) for p, c in zip(products, checks, strict=True)))
    if strict and any(
        p.problems or (c is not None and c.problems) for p, c in zip(products, checks, strict=True)
    ):
        corrupt = [f"{p.path}: {x}" for p, c in zip(products, checks, strict=True) if c for x in c.problems]
        if corrupt:
            typer.echo(
                f"rsprep: error: {len(corrupt)} file(s) differ from manifest.safe: "
                + "; ".join(corrupt)
                + "; the product is corrupt or incomplete: download it again",
                err=True,
            )
        raise typer.Exit(1)
