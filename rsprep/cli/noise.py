"""``rsprep noise``: a reproducible label-noise variant of a dataset's labels (docs/noise.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rsprep.cli.options import Overwrite, Seed

Rate = Annotated[float | None, typer.Option(show_default=False)]


def noise(
    dataset: Annotated[
        Path, typer.Argument(help="A dataset folder (its metadata.parquet) or a parquet file.")
    ],
    mode: Annotated[
        str, typer.Option("--mode", help="subtractive, additive, mixed, uniform, sample, swap or matrix.")
    ],
    rate: Annotated[
        float | None,
        typer.Option(
            "--rate",
            help="subtractive/additive: share of P_c; uniform: p; swap: share of patches.",
            show_default=False,
        ),
    ] = None,
    sub_rate: Annotated[
        float | None, typer.Option("--sub-rate", help="mixed: removals, share of P_c.", show_default=False)
    ] = None,
    add_rate: Annotated[
        float | None, typer.Option("--add-rate", help="mixed: additions, share of P_c.", show_default=False)
    ] = None,
    patch_rate: Annotated[
        float | None, typer.Option("--patch-rate", help="sample: share of patches.", show_default=False)
    ] = None,
    class_rate: Annotated[
        float | None,
        typer.Option("--class-rate", help="sample: share of classes flipped per patch.", show_default=False),
    ] = None,
    matrix: Annotated[
        Path | None,
        typer.Option(
            "--matrix", help="matrix: JSON {class: [p10, p01]} or CSV class,p10,p01.", show_default=False
        ),
    ] = None,
    sampling: Annotated[
        str, typer.Option("--sampling", help="exact counts or independent bernoulli draws.")
    ] = "exact",
    splits: Annotated[str, typer.Option("--splits", help="Comma list of splits to corrupt.")] = "train",
    min_labels: Annotated[
        int, typer.Option("--min-labels", help="Never leave a patch with fewer labels (0 or 1).")
    ] = 0,
    cap: Annotated[
        float, typer.Option("--cap", help="Additions keep each class's prevalence at most this.")
    ] = 0.95,
    classes: Annotated[
        str | None,
        typer.Option(
            "--classes",
            help="Classes to corrupt, separated by ';' (class names contain commas); default: all.",
            show_default=False,
        ),
    ] = None,
    seed: Seed = 0,
    name: Annotated[
        str | None,
        typer.Option("--name", help="Variant name (default: from mode, rates and seed).", show_default=False),
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out-dir", help="Folder for the files (default: DATASET/noise).", show_default=False),
    ] = None,
    overwrite: Overwrite = False,
) -> None:
    """Write noise/<name>.parquet (labels, labels_noisy), the flip log and noise/<name>.json."""
    from rsprep.cli.context import quiet
    from rsprep.stages.noise import NoiseOptions, make_noise

    options = NoiseOptions(
        mode=mode,
        rate=rate,
        sub_rate=sub_rate,
        add_rate=add_rate,
        patch_rate=patch_rate,
        class_rate=class_rate,
        matrix=matrix,
        sampling=sampling,
        splits=tuple(s.strip() for s in splits.split(",") if s.strip()),
        min_labels=min_labels,
        seed=seed,
        cap=cap,
        classes=tuple(c.strip() for c in classes.split(";") if c.strip()) if classes else None,
    )
    report = make_noise(dataset, options, name=name, out_dir=out_dir, overwrite=overwrite)
    if quiet():
        return
    t = report["totals"]
    typer.echo(
        f"{report['name']}: {report['target_rows']} target rows of {report['input']['rows']}; "
        f"removed {t['removed']}, added {t['added']} labels in {t['patches_changed']} patches"
    )
    capped = [c["name"] for c in report["classes"] if c["cap_hit"]]
    if capped:
        typer.echo(f"cap of {cap:.0%} reached for: {', '.join(capped)}")
    typer.echo(f"files: {', '.join(report['outputs'].values())}")
