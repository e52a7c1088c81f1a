"""``rsprep metadata``: the dataset's metadata tables (official reBEN schema) and GeoParquet sidecar."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rsprep.cli.options import Overwrite, SplitFractions, WorkDir


def metadata(
    work: WorkDir,
    out: Annotated[Path, typer.Option("--out", help="The dataset folder to write.")],
    countries: Annotated[
        Path | None,
        typer.Option(
            "--countries", help="Country polygons (e.g. Natural Earth admin-0); none: country is null."
        ),
    ] = None,
    country_candidates: Annotated[
        str | None,
        typer.Option(
            "--country-candidates",
            help="Restrict countries: 'reben' (its ten countries) or a comma list of names.",
            show_default=False,
        ),
    ] = None,
    country_field: Annotated[
        str | None,
        typer.Option(
            "--country-field", help="Name field (default: NAME, NAME_EN, ADMIN, ...).", show_default=False
        ),
    ] = None,
    country_layer: Annotated[
        str | None, typer.Option("--country-layer", help="Layer of the country file.", show_default=False)
    ] = None,
    v1: Annotated[
        Path | None,
        typer.Option(
            "--v1",
            help="BigEarthNet v1 S2 folder, or a table with patch_id and s2v1_name, for s2v1_name.",
            show_default=False,
        ),
    ] = None,
    v1_alignment: Annotated[
        bool,
        typer.Option(
            "--v1-alignment/--no-v1-alignment",
            help="s2v1_name, s1_name and both flags from BigEarthNet v1.0 (needs rsprep[reben]); the SCL "
            "flags and v1_country go to patches.parquet.",
        ),
    ] = False,
    v1_tables: Annotated[
        Path | None,
        typer.Option(
            "--v1-tables",
            help="With --v1-alignment: a folder of v1 tables (bigearthnet-common file names) instead of "
            "the package's.",
            show_default=False,
        ),
    ] = None,
    snow_threshold: Annotated[
        float,
        typer.Option("--snow-threshold", help="Flag seasonal snow when the SCL snow fraction exceeds this."),
    ] = 0.0,
    cloud_threshold: Annotated[
        float,
        typer.Option(
            "--cloud-threshold", help="Flag cloud/shadow when the SCL cloud + shadow fraction exceeds this."
        ),
    ] = 0.0,
    keep_unpaired: Annotated[
        bool,
        typer.Option("--keep-unpaired", help="Keep patches without a Sentinel-1 partner (s1_name null)."),
    ] = False,
    fractions: SplitFractions = "0.5,0.25,0.25",
    overwrite: Overwrite = False,
) -> None:
    """Merge the work store into metadata.parquet, the snow/cloud file and patches.parquet."""
    from rsprep.cli.context import quiet
    from rsprep.core.splits import SplitOptions, parse_fractions
    from rsprep.inputs.countries import parse_candidates
    from rsprep.stages.metadata import MetadataOptions, build_metadata

    options = MetadataOptions(
        snow_threshold=snow_threshold,
        cloud_threshold=cloud_threshold,
        countries=countries,
        country_layer=country_layer,
        country_field=country_field,
        country_candidates=parse_candidates(country_candidates),
        v1=v1,
        v1_alignment=v1_alignment,
        v1_tables=v1_tables,
        keep_unpaired=keep_unpaired,
        split=SplitOptions(fractions=parse_fractions(fractions)),
    )
    r = build_metadata(work, out, options, overwrite=overwrite)
    for w in r.warnings:
        typer.echo(f"rsprep: warning: {w}", err=True)
    if quiet():
        return
    c = r.counts
    typer.echo(
        f"{c['dataset_patches']} patches from {c['stores']} store(s) of {c['grid_patches']} grid patches: "
        f"{c['invalid']} invalid, {c['unlabeled_fraction_too_high']} with too many unlabelled pixels, "
        f"{c['quality_failed']} of failed products, {c['no_s1_partner']} without an S1 partner"
        + (f" ({c['no_v1_counterpart']} without a v1 counterpart)" if v1_alignment else "")
    )
    typer.echo(
        f"{r.dataset / 'metadata.parquet'}: {c['metadata_rows']} rows; "
        f"snow/cloud file: {c['flagged_rows']} rows "
        f"(seasonal snow flags {c['flag_seasonal_snow']}, cloud or shadow flags {c['flag_cloud_or_shadow']}, "
        f"both {c['flag_both']})"
    )
    typer.echo("split (tile-border): " + ", ".join(f"{k} {v}" for k, v in r.splits.items()))
    typer.echo(
        "countries: "
        + (", ".join(f"{k} {v}" for k, v in r.countries.items()) if countries else "none (no --countries)")
    )
    typer.echo(f"leakage report: {r.report.with_suffix('.txt')}")
