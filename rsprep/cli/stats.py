"""``rsprep stats``: per-band statistics of the train split and label frequencies, into stats.json."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rsprep.cli.options import Json, Overwrite, Seed


def stats(
    dataset: Annotated[Path, typer.Argument(help="A dataset folder (its metadata tables and pixels).")],
    sample: Annotated[
        str | None,
        typer.Option(
            "--sample",
            help="A quick look: N train patches, or a FRACTION of them (seeded); exact by default.",
            metavar="N|FRACTION",
        ),
    ] = None,
    seed: Seed = 0,
    source: Annotated[
        str,
        typer.Option("--source", help="Where pixels are read: auto (zarr, lmdb, tiff, workstore), or one."),
    ] = "auto",
    overwrite: Overwrite = False,
    json_out: Json = False,
) -> None:
    """Write DATASET/stats.json (docs/stats.md): mean, std, min, max, p1, p99 per band of the train split
    (native, and stacked to 10 m bilinear and nearest) and the label frequencies of every split."""
    import json

    from rsprep.cli.context import quiet
    from rsprep.cli.report import ProgressBar
    from rsprep.stages.stats import StatsOptions, parse_sample, write_stats

    options = StatsOptions(sample=parse_sample(sample), seed=seed, source=source)
    options.validate()
    with ProgressBar("stats", "patch", disable=quiet()) as bar:
        out = write_stats(dataset, options, overwrite=overwrite, progress=bar)
    if json_out:
        typer.echo(out.read_text(encoding="utf-8"), nl=False)
        return
    if quiet():
        return
    typer.echo(_table(json.loads(out.read_text(encoding="utf-8"))))
    typer.echo(f"wrote {out}")


def _table(result: dict) -> str:
    s = result["sample"]
    what = "every train patch" if s is None else f"a sample of {s['patches']} of {s['of']} (seed {s['seed']})"
    lines = [
        f"{result['patches']} train patches from {result['source']} ({what})",
        f"{'band':<5} {'res':>4} {'mean':>12} {'std':>12} {'bilinear mean':>14} {'std':>12}",
    ]
    for b in result["order"]["native"]:
        st = result["bands"][b]
        stacked = result["stacked"]["bilinear"].get(b)
        cols = [_num(st["mean"]), _num(st["std"])]
        cols += [_num(stacked["mean"]), _num(stacked["std"])] if stacked else ["", ""]
        lines.append(
            f"{b:<5} {st['resolution_m']:>3}m {cols[0]:>12} {cols[1]:>12} {cols[2]:>14} {cols[3]:>12}"
        )
    return "\n".join(lines)


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.4f}"
