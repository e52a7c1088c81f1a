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
