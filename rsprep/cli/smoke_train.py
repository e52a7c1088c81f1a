"""``rsprep smoke-train``: train a small CNN for a few hundred steps to check that a dataset learns."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from rsprep.cli.options import Json, Seed


def smoke_train(
    dataset: Annotated[Path, typer.Argument(help="A dataset folder with lmdb/ or zarr/ outputs.")],
    fmt: Annotated[str, typer.Option("--format", help="Where pixels are read: lmdb or zarr.")] = "lmdb",
    device: Annotated[
        str, typer.Option("--device", help="auto (CUDA when available), cuda or cpu.")
    ] = "auto",
    steps: Annotated[int, typer.Option("--steps", help="Training steps.")] = 300,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Patches per batch.")] = 32,
    bands: Annotated[str, typer.Option("--bands", help="Input bands: s2, s1 or all.")] = "all",
    noise: Annotated[
        str | None, typer.Option("--noise", help="Train on noise/NAME.parquet's noisy labels.")
    ] = None,
    workers: Annotated[int, typer.Option("--workers", "-j", help="DataLoader worker processes.")] = 2,
    lr: Annotated[float, typer.Option("--lr", help="AdamW learning rate.")] = 1e-3,
    width: Annotated[int, typer.Option("--width", help="Channels of the first conv block.")] = 32,
    starve_threshold: Annotated[
        float,
        typer.Option(
            "--starve-threshold", help="Fail above this fraction of time waiting for data (1: off)."
        ),
    ] = 0.5,
    min_loss_drop: Annotated[
        float, typer.Option("--min-loss-drop", help="Required relative fall of the loss.")
    ] = 0.1,
    map_margin: Annotated[
        float, typer.Option("--map-margin", help="Required mAP margin over the class prior.")
    ] = 0.02,
    seed: Seed = 0,
    out: Annotated[
        Path | None, typer.Option("--out", help="Report folder (default DATASET/smoke-train).")
    ] = None,
    json_out: Json = False,
) -> None:
    """Train on the train split, evaluate macro mAP on validation against the class prior; write
    smoke-train.json and loss.png (docs/smoke-train.md). Exits 1 when a verdict fails."""
    from rsprep.cli.context import quiet
    from rsprep.cli.report import ProgressBar
    from rsprep.torch.train import SmokeOptions
    from rsprep.torch.train import smoke_train as run

    options = SmokeOptions(
        format=fmt, device=device, steps=steps, batch_size=batch_size, bands=bands, noise=noise, lr=lr,
        seed=seed, num_workers=workers, width=width, starve_threshold=starve_threshold,
        min_loss_drop=min_loss_drop, map_margin=map_margin,
    )  # fmt: skip
    with ProgressBar("smoke-train", "step", disable=quiet() or json_out) as bar:
        report = run(dataset, options, out, progress=bar)
    if json_out:
        typer.echo(json.dumps(report.to_dict(), indent=2, default=str))
    elif not quiet():
        typer.echo(_summary(report))
    if not report.ok:
        typer.echo(f"rsprep: error: smoke-train failed ({len(report.failures)}):", err=True)
        for reason in report.failures:
            typer.echo(f"  {reason}", err=True)
        raise typer.Exit(1)


def _summary(report) -> str:
    lines = [
        f"{report.steps_done} steps on {report.device}, {report.train_patches} train / "
        f"{report.validation_patches} validation patches",
        f"loss {report.losses[0]:.4f} -> {report.losses[-1]:.4f}" if report.losses else "no loss",
    ]
    if report.map is not None:
        lines.append(f"validation mAP {report.map:.4f} (class prior {report.prior_map:.4f})")
    lines.append(
        f"loading {report.loading_samples_per_s:.1f} samples/s, training {report.training_samples_per_s:.1f} "
        f"samples/s, {report.wait_fraction:.0%} waiting for data"
    )
    lines.append(f"wrote {report.report_path} and {report.plot_path}")
    return "\n".join(lines)
