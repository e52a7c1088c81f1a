"""How commands show progress and results: tqdm bars on stderr, one line per result, failures at the end."""

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
        names = ", ".join(_name(r) for r in failed)
        typer.echo(
            f"rsprep: error: {what}: {len(failed)} of {len(results)} {unit}(s) failed: {names}", err=True
        )
        for r in failed:
            typer.echo(f"  {_name(r)}: {r.error}", err=True)
        raise typer.Exit(1)


def _name(result) -> str:
    """The failed task's store (or product) by name: the last part of its path."""
    from pathlib import Path

    return Path(result.store or result.target).name


class ProgressBar:
    """A ``progress(done, total)`` callback drawn as a tqdm bar on stderr (nothing under ``--quiet``).

    Use as a context manager so the bar is closed however the command ends.
    """

    def __init__(self, desc: str, unit: str, *, disable: bool) -> None:
        self.desc, self.unit, self.disable = desc, unit, disable
        self._bar = None

    def __call__(self, done: int, total: int) -> None:
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(
                total=total,
                desc=self.desc,
                unit=self.unit,
                disable=self.disable,
                dynamic_ncols=True,
                leave=False,
            )
        self._bar.update(done - self._bar.n)

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.close()
