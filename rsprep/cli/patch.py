"""``rsprep patch``: cut Sentinel-2 products into reBEN patches in the work store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rsprep.cli.options import Force, PatchSize, Workers, default_workers


def patch(
    products: Annotated[
        list[Path], typer.Argument(help="L2A (or L1C) SAFE folders or .zip files.", show_default=False)
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Work-store folder (one sub-folder per product).")],
    patch_size: PatchSize = 1200,
    bands: Annotated[
        str, typer.Option("--bands", help="Comma-separated spectral bands, e.g. B01,B09 (default: all 12).")
    ] = "",
    harmonize: Annotated[
        str, typer.Option("--harmonize", help="Radiometry: none (L2A DN as stored), to-old, reflectance.")
    ] = "none",
    sen2cor: Annotated[
        str | None,
        typer.Option("--sen2cor", help="L2A_Process to run on L1C input (default: $RSPREP_SEN2COR or PATH)."),
    ] = None,
    no_verify: Annotated[
        bool,
        typer.Option(
            "--no-verify",
            help="Do not check the input files against manifest.safe (size, MD5/SHA3) and zip CRCs.",
        ),
    ] = False,
    force: Force = False,
    workers: Workers = 0,
) -> None:
    """Cut products into patches: native-resolution bands, validity, nodata and SCL fractions."""
    from tqdm import tqdm

    from rsprep.cli.context import quiet
    from rsprep.cli.report import show_results
    from rsprep.core.bands import SPECTRAL_BANDS
    from rsprep.stages.patch import PatchOptions, patch_products

    opts = PatchOptions(
        patch_size=patch_size, bands=bands or SPECTRAL_BANDS, harmonize=harmonize, verify=not no_verify
    )
    with tqdm(total=len(products), desc="patch", unit="product", disable=quiet(), leave=False) as bar:
        results = patch_products(
            products,
            out=out,
            options=opts,
            force=force,
            sen2cor=sen2cor,
            workers=default_workers(workers),
            on_result=lambda _r: bar.update(),
        )
    show_results(
        results,
        what="patch",
        unit="product",
        line=lambda r: (
            f"{r.status:7s} {r.store}: {r.patches} patches, {r.valid} valid ({r.seconds:.1f} s)"
            + "".join(f"; {n}" for n in r.notes)
        ),
        is_quiet=False,  # the per-product lines are the command's output, not progress
    )
