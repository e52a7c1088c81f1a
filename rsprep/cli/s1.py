"""``rsprep s1``: pair valid Sentinel-2 patches with Sentinel-1 scenes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rsprep.cli.options import Force, WorkDir, Workers, default_workers


def s1(
    s1_dir: Annotated[
        Path, typer.Option("--s1", help="Folder with S1 VV/VH GeoTIFF scenes (searched recursively).")
    ],
    work: WorkDir,
    max_days: Annotated[
        float, typer.Option("--max-days", help="Largest time difference between S2 and S1, in days.")
    ] = 10.0,
    same_season: Annotated[
        bool, typer.Option("--same-season", help="Also require the S1 scene to be in the S2 season.")
    ] = False,
    linear: Annotated[
        bool, typer.Option("--s1-linear", help="Scenes hold linear backscatter; convert to dB.")
    ] = False,
    pol: Annotated[str, typer.Option("--pol", help="Polarisations to pair, comma-separated.")] = "VV,VH",
    skip_bad: Annotated[
        bool,
        typer.Option(
            "--skip-bad-s1",
            help="Leave truncated or corrupt scenes (or scenes missing a polarisation) out of the pairing, "
            "recorded per store, instead of failing the stores they could serve.",
        ),
    ] = False,
    workers: Workers = 0,
    force: Force = False,
) -> None:
    """For every valid S2 patch: the closest fully covering S1 scene, resampled onto its 10 m grid."""
    from rsprep.cli.context import quiet
    from rsprep.cli.report import show_results
    from rsprep.stages.s1 import S1Options, s1_work

    pols = tuple(p.strip() for p in pol.split(",") if p.strip())
    options = S1Options(
        max_days=max_days, same_season=same_season, linear=linear, polarisations=pols, skip_bad=skip_bad
    )

    def warn(r) -> None:
        for w in r.warnings:
            typer.echo(f"rsprep: warning: {r.store}: {w}", err=True)

    results, discovery = s1_work(
        work, s1_dir, options, workers=default_workers(workers), force=force, on_result=warn
    )
    if not quiet():
        bad = f" (and {len(discovery.bad)} bad file(s))" if discovery.bad else ""
        typer.echo(f"{len(discovery.scenes)} S1 scene(s) in {s1_dir}{bad}")
    show_results(
        results,
        what="s1",
        unit="store",
        line=lambda r: (
            f"{r.status:7s} {r.store}: {r.paired} of {r.patches} valid patches paired ({r.seconds:.1f} s)"
        ),
        is_quiet=quiet(),
    )
