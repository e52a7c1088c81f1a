"""``rsprep reference``: CLC reference maps and 19-class (or 43-class) labels for every patch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rsprep.cli.options import Force, WorkDir, Workers, default_workers


def reference(
    clc: Annotated[
        Path,
        typer.Option(
            "--clc", help="CLC vectors: GeoPackage, Shapefile, FileGDB or a zip of one (CLC 2018: EPSG:3035)."
        ),
    ],
    work: WorkDir,
    code_field: Annotated[
        str | None,
        typer.Option(
            "--code-field", help="Field with the CLC codes (default: Code_18, any case).", show_default=False
        ),
    ] = None,
    layer: Annotated[
        str | None,
        typer.Option("--layer", help="Layer to read when the file has several.", show_default=False),
    ] = None,
    clc_crs: Annotated[
        str | None,
        typer.Option(
            "--clc-crs",
            help="CRS of the CLC file when it declares none (e.g. EPSG:3035).",
            show_default=False,
        ),
    ] = None,
    nomenclature: Annotated[
        str, typer.Option("--nomenclature", help="ben19 (reBEN) or ben43 (BigEarthNet v1, CLC level 3).")
    ] = "ben19",
    max_unlabeled: Annotated[
        float,
        typer.Option(
            "--max-unlabeled", help="Label a patch only below this UNLABELED pixel fraction (reBEN: 0.25)."
        ),
    ] = 0.25,
    workers: Workers = 0,
    force: Force = False,
) -> None:
    """Rasterize CLC onto every patch (pixel-centre rule, CLC codes) and derive its multi-labels."""
    from rsprep.cli.context import quiet
    from rsprep.cli.report import show_results
    from rsprep.stages.reference import ReferenceOptions, reference_work

    def warn(r) -> None:
        for w in r.warnings:
            typer.echo(f"rsprep: warning: {w}", err=True)

    results, source = reference_work(
        work,
        clc,
        options=ReferenceOptions(nomenclature=nomenclature, max_unlabeled=max_unlabeled),
        layer=layer,
        code_field=code_field,
        clc_crs=clc_crs,
        workers=default_workers(workers),
        force=force,
        on_result=warn,
    )
    if not quiet():
        typer.echo(f"CLC: {source.path} layer {source.layer}, field {source.code_field}")
    show_results(
        results,
        what="reference",
        unit="store",
        line=lambda r: (
            f"{r.status:7s} {r.store}: {r.labeled} of {r.patches} patches labelled, "
            f"{r.polygons} CLC polygons ({r.seconds:.1f} s)"
        ),
        is_quiet=quiet(),
    )
