"""``rsprep build``: a whole dataset from a recipe, resumable, in parallel (docs/build.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def build(
    recipe: Annotated[
        str, typer.Argument(help="A built-in recipe (reben, demo, ...) or a recipe YAML file.")
    ],
    s2: Annotated[
        list[Path],
        typer.Option("--s2", help="Sentinel-2 SAFE folders or .zip files, or folders of them (repeatable)."),
    ],
    clc: Annotated[
        Path, typer.Option("--clc", help="CLC vectors (GeoPackage, Shapefile, FileGDB or a zip).")
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Build folder: OUT/work, OUT/dataset, OUT/build.json.")
    ],
    more_s2: Annotated[
        list[Path] | None,
        typer.Argument(
            help="More Sentinel-2 paths: `--s2 A B C` (e.g. a shell glob) reads as --s2 A --s2 B --s2 C.",
            show_default=False,
        ),
    ] = None,
    s1: Annotated[
        Path | None, typer.Option("--s1", help="Folder of Sentinel-1 VV/VH GeoTIFF scenes.")
    ] = None,
    s1_v1: Annotated[
        Path | None,
        typer.Option(
            "--s1-v1",
            help="A BigEarthNet-S1-v1.0 folder: S1 from v1's patches (recipe s1.source: v1, as reben).",
        ),
    ] = None,
    countries: Annotated[
        Path | None,
        typer.Option("--countries", help="Country polygons (e.g. GISCO CNTR_RG, any GDAL vector)."),
    ] = None,
    v1: Annotated[Path | None, typer.Option("--v1", help="BigEarthNet v1 metadata, for s2v1_name.")] = None,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            "-j",
            help="Worker processes (default: min(cores, available memory / 2.5 GB)).",
            show_default=False,
        ),
    ] = 0,
    sets: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a recipe value: key.path=value (YAML value), repeatable."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan and stop; nothing is written.")
    ] = False,
    keep_going: Annotated[
        bool,
        typer.Option(
            "--keep-going", help="Build the dataset from the products that succeeded when some fail."
        ),
    ] = False,
    quiet_opt: Annotated[
        bool, typer.Option("--quiet", "-q", help="Logs only: no plan, no progress bars.")
    ] = False,
    allow_extra: Annotated[
        bool,
        typer.Option("--allow-extra", help="Also build products that are not on the recipe's input list."),
    ] = False,
    verify_inputs: Annotated[
        bool,
        typer.Option(
            "--verify-inputs", help="Check the listed zips against the official SHA-256 (reads every zip)."
        ),
    ] = False,
    scheduler: Annotated[
        str | None,
        typer.Option(
            "--scheduler", help="Run the per-product tasks on this Dask scheduler: tcp://HOST:PORT."
        ),
    ] = None,
    cluster: Annotated[
        str | None,
        typer.Option(
            "--cluster", help="Start a Dask cluster for them: local, slurm or pbs (the dist extra)."
        ),
    ] = None,
    cluster_options: Annotated[
        list[str] | None,
        typer.Option(
            "--cluster-option",
            help="A cluster setting key=value (cores, memory, processes, jobs, walltime, queue, ...).",
        ),
    ] = None,
    shard: Annotated[
        str | None,
        typer.Option(
            "--shard", help="Only the per-product tasks of shard I of N (array jobs): I/N, I from 0."
        ),
    ] = None,
    finalize: Annotated[
        bool,
        typer.Option("--finalize", help="Only the dataset-wide steps, once every shard's products are done."),
    ] = False,
) -> None:
    """Build a dataset: patch, stack, s1 and reference per product in parallel, then metadata, split,
    noise variants, conversions, statistics, card and validation. A rerun does only what is missing.

    Default --workers: min(cores, available memory / 2.5 GB), each worker with cores / workers threads.
    """
    from rsprep.build.executor import default_workers
    from rsprep.build.recipe import load_recipe
    from rsprep.build.recipe_cluster import with_cluster
    from rsprep.build.run import build as run_build
    from rsprep.build.run import prepare
    from rsprep.cli.build_view import BuildView
    from rsprep.cli.context import quiet

    if workers < 0:
        raise typer.BadParameter(
            f"{workers} is negative; give 0 (the default) or a count", param_hint="--workers"
        )
    s2 = [*s2, *(more_s2 or [])]
    one = _shard(shard, finalize)
    if s1 is not None and s1_v1 is not None:
        raise typer.BadParameter(
            "give one S1 source: --s1 DIR (scenes) or --s1-v1 DIR (BigEarthNet v1.0 patches)",
            param_hint="--s1 / --s1-v1",
        )
    resolved = load_recipe(recipe, [*(sets or ()), *(["s1.source=v1"] if s1_v1 else [])])
    if resolved.inputs.s1 and resolved.s1.source == "v1" and s1_v1 is None:
        raise typer.BadParameter(
            f"recipe {resolved.name} takes S1 from BigEarthNet v1.0 patches (s1.source: v1): pass "
            "--s1-v1 DIR (or --set s1.source=scenes with --s1 DIR)",
            param_hint="--s1-v1",
        )
    s1 = s1_v1 or s1
    resolved = with_cluster(resolved, cluster, cluster_options or ())
    n = workers or default_workers()
    quiet_now = quiet_opt or quiet()
    if finalize and (scheduler or cluster or cluster_options):
        raise typer.BadParameter(
            "--finalize runs only the dataset-wide steps, on this machine: drop --scheduler / --cluster",
            param_hint="--finalize",
        )
    if dry_run:
        plan, inputs = prepare(
            resolved,
            s2=s2,
            s1=s1,
            clc=clc,
            countries=countries,
            v1=v1,
            out=out,
            allow_extra=allow_extra,
            verify_inputs=verify_inputs,
            shard=one,
        )
        typer.echo(
            "\n".join(plan.lines() + (_finalize_lines(plan, resolved, inputs, out) if finalize else []))
        )
        return
    with BuildView(quiet=quiet_now) as view, _executor(resolved, scheduler, finalize, n) as executor:
        result = run_build(
            resolved,
            s2=s2,
            s1=s1,
            clc=clc,
            countries=countries,
            v1=v1,
            out=out,
            workers=n,
            keep_going=keep_going,
            on_event=view.event,
            allow_extra=allow_extra,
            verify_inputs=verify_inputs,
            executor=executor,
            shard=one,
            finalize=finalize,
        )
    view.close_report(result, keep_going=keep_going)


def _shard(text: str | None, finalize: bool):
    from rsprep.build.shards import parse_shard
    from rsprep.errors import InvalidParameterError

    if text is None:
        return None
    if finalize:
        raise typer.BadParameter(
            "a shard run and --finalize are separate runs; give one", param_hint="--shard"
        )
    try:
        return parse_shard(text)
    except InvalidParameterError as exc:
        raise typer.BadParameter(str(exc).removeprefix(f"--shard {text!r}: "), param_hint="--shard") from None


def _executor(recipe, scheduler: str | None, finalize: bool, workers: int):
    """The Dask executor of --scheduler or of the recipe's cluster (after --cluster), else None."""
    import contextlib

    if finalize or (scheduler is None and recipe.cluster is None):
        return contextlib.nullcontext(None)
    from rsprep.build.dask_cluster import open_executor

    if scheduler is not None:
        return open_executor(scheduler=scheduler, workers=workers)
    return open_executor(cluster=recipe.cluster, workers=workers)


def _finalize_lines(plan, recipe, inputs, out: Path) -> list[str]:
    from rsprep.build.finalize import unfinished
    from rsprep.build.shards import read_records

    missing = unfinished(plan, recipe, inputs, read_records(out))
    if not missing:
        return [f"--finalize: all {len(plan.products)} product(s) are done; it runs the dataset-wide steps"]
    lines = [f"--finalize would refuse: {len(missing)} of {len(plan.products)} product(s) are not built yet"]
    return lines + [f"  {Path(m['product']).name} ({m['shard']}): {m['reason']}" for m in missing]
