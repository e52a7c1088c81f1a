"""``rsprep s1``: pair valid Sentinel-2 patches with Sentinel-1 scenes, or give them BigEarthNet v1.0's."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rsprep.cli.options import Force, WorkDir, Workers, default_workers


def s1(
    work: WorkDir,
    s1_dir: Annotated[
        Path | None,
        typer.Option("--s1", help="Folder with S1 VV/VH GeoTIFF scenes (searched recursively)."),
    ] = None,
    s1_v1: Annotated[
        Path | None,
        typer.Option(
            "--s1-v1",
            help="A BigEarthNet-S1-v1.0 folder (<s1_name>/<s1_name>_VV.tif): each patch gets the v1 S1 "
            "patch that the v1 alignment names, unresampled (the official reBEN's S1). Instead of --s1.",
        ),
    ] = None,
    max_days: Annotated[
        float | None,
        typer.Option("--max-days", help="Largest time difference between S2 and S1, in days [10]."),
    ] = None,
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
            help="Leave truncated or corrupt scenes (or scenes missing a polarisation; with --s1-v1: "
            "missing or unreadable v1 patches) out of the pairing, recorded per store, instead of "
            "failing the stores they could serve.",
        ),
    ] = False,
    workers: Workers = 0,
    force: Force = False,
) -> None:
    """For every valid S2 patch: the closest fully covering S1 scene, resampled onto its 10 m grid
    (--s1), or its BigEarthNet v1.0 S1 patch (--s1-v1)."""
    pols = tuple(p.strip() for p in pol.split(",") if p.strip())
    if (s1_dir is None) == (s1_v1 is None):
        raise typer.BadParameter(
            "give exactly one S1 source: --s1 DIR (scenes, paired) or --s1-v1 DIR (BigEarthNet v1.0 "
            "S1 patches)",
            param_hint="--s1 / --s1-v1",
        )
    if s1_v1 is not None:
        given = {"--max-days": max_days is not None, "--same-season": same_season, "--s1-linear": linear}
        scene_only = [flag for flag, on in given.items() if on]
        if scene_only:
            raise typer.BadParameter(
                f"{', '.join(scene_only)} choose(s) among S1 scenes; v1 S1 patches are given by the "
                "v1 alignment: drop it with --s1-v1",
                param_hint=scene_only[0],
            )
        return _from_v1(work, s1_v1, pols, skip_bad, workers, force)
    return _from_scenes(work, s1_dir, max_days, same_season, linear, pols, skip_bad, workers, force)


def _warn(r) -> None:
    for w in r.warnings:
        typer.echo(f"rsprep: warning: {r.store}: {w}", err=True)


def _line(r) -> str:
    return f"{r.status:7s} {r.store}: {r.paired} of {r.patches} valid patches paired ({r.seconds:.1f} s)"


def _from_scenes(work, s1_dir, max_days, same_season, linear, pols, skip_bad, workers, force) -> None:
    from rsprep.cli.context import quiet
    from rsprep.cli.report import show_results
    from rsprep.stages.s1 import S1Options, s1_work

    options = S1Options(
        max_days=10.0 if max_days is None else max_days,
        same_season=same_season,
        linear=linear,
        polarisations=pols,
        skip_bad=skip_bad,
    )
    results, discovery = s1_work(
        work, s1_dir, options, workers=default_workers(workers), force=force, on_result=_warn
    )
    if not quiet():
        bad = f" (and {len(discovery.bad)} bad file(s))" if discovery.bad else ""
        typer.echo(f"{len(discovery.scenes)} S1 scene(s) in {s1_dir}{bad}")
    show_results(results, what="s1", unit="store", line=_line, is_quiet=quiet())


def _from_v1(work, v1_dir, pols, skip_bad, workers, force) -> None:
    from rsprep.cli.context import quiet
    from rsprep.cli.report import show_results
    from rsprep.stages.s1_v1 import S1V1Options, s1_v1_work

    options = S1V1Options(polarisations=pols, skip_bad=skip_bad)
    results = s1_v1_work(
        work, v1_dir, options, workers=default_workers(workers), force=force, on_result=_warn
    )
    show_results(results, what="s1", unit="store", line=_line, is_quiet=quiet())
