"""Option aliases shared by every command, so each flag is spelled the same everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

Seed = Annotated[int, typer.Option("--seed", help="Random seed; the same seed gives byte-identical outputs.")]
Overwrite = Annotated[
    bool, typer.Option("--overwrite", help="Replace an existing output instead of refusing.")
]
Json = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of text.")]
PatchSize = Annotated[
    int, typer.Option("--patch-size", help="Patch side in metres; a multiple of 60 (reBEN: 1200).")
]
OutDir = Annotated[Path, typer.Argument(help="Output folder.", show_default=False)]
Workers = Annotated[
    int,
    typer.Option(
        "--workers", "-j", help="Parallel worker processes (default: CPU count).", show_default=False
    ),
]
Force = Annotated[
    bool, typer.Option("--force", help="Redo the stage even when its stored result is current.")
]
WorkDir = Annotated[Path, typer.Option("--work", help="The work store (folder of per-tile stores).")]
SplitFractions = Annotated[
    str, typer.Option("--fractions", help="train,validation,test fractions (or ratios like 2:1:1).")
]


def default_workers(workers: int | None) -> int:
    """``--workers`` as given, or one per CPU for 0 (the default); a negative count is a usage error."""
    import os

    if workers is not None and workers < 0:
        msg = f"{workers} is negative; give 0 (one per CPU) or a count"
        raise typer.BadParameter(msg, param_hint="--workers")
    return workers if workers else (os.cpu_count() or 1)
