"""How per-store and per-product results are shown: one line each, failures listed at the end, exit 1."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import typer


def show_results(results: Sequence, *, what: str, unit: str, line: Callable, is_quiet: bool) -> None:
    """Print ``line(r)`` for each finished result, then every failure on stderr and exit 1 if any."""
    failed = [r for r in results if r.status == "failed"]
    if not is_quiet:
        for r in results:
            if r.status != "failed":
                typer.echo(line(r))
    if failed:
        typer.echo(f"rsprep: error: {what}: {len(failed)} of {len(results)} {unit}(s) failed:", err=True)
        for r in failed:
            typer.echo(f"  {r.error}", err=True)
        raise typer.Exit(1)
