"""How ``rsprep build`` shows itself: the plan head, one tqdm bar over products (in its postfix the
stage each running product is in now, else the last finished product's), one bar per dataset-wide
step, the closing table of time per stage, and the failures (then exit 1)."""

from __future__ import annotations

import typer


class BuildView:
    """Renders the :class:`rsprep.build.run.BuildEvent` stream (nothing but errors when ``quiet``)."""

    def __init__(self, *, quiet: bool) -> None:
        self.quiet = quiet
        self._products = None
        self._step = None
        self._running: dict[str, str] = {}  # product -> the stage it is in now

    def __enter__(self) -> BuildView:
        return self

    def __exit__(self, *exc) -> None:
        for bar in (self._products, self._step):
            if bar is not None:
                bar.close()

    def _bar(self, **kw):
        from tqdm import tqdm

        return tqdm(disable=self.quiet, dynamic_ncols=True, leave=False, **kw)

    def event(self, e) -> None:
        if e.kind == "plan":
            if not self.quiet:
                typer.echo("\n".join(e.plan.lines()))
            todo = sum(any(x.status != "up to date" for x in es) for es in e.plan.entries.values())
            self._products = self._bar(total=len(e.plan.products), desc="products", unit="product")
            self._products.set_postfix_str(f"{todo} to do")
        elif e.kind == "product_stage" and self._products is not None:
            self._running[e.name] = e.stage
            self._products.set_postfix_str(self._now())
        elif e.kind == "product" and self._products is not None:
            self._running.pop(e.name, None)
            last = e.outcome.results[-1]
            done = f"{last.stage} {last.status}: {_name(e.name)}"
            self._products.set_postfix_str(self._now() or done)
            self._products.update()
        elif e.kind == "step":
            if self._products is not None:
                self._products.close()
                self._products = None
            self._step = self._bar(desc=e.name, unit="item")
        elif e.kind == "step_progress" and self._step is not None:
            self._step.total = e.total
            self._step.update(e.done - self._step.n)
        elif e.kind == "step_done" and self._step is not None:
            self._step.close()
            self._step = None

    def _now(self) -> str:
        """``patch: NAME, s1: NAME`` for the running products (the first three, then a count)."""
        shown = [f"{stage}: {_name(p)[:44]}" for p, stage in list(self._running.items())[:3]]
        more = len(self._running) - len(shown)
        return ", ".join(shown) + (f" (+{more} more)" if more > 0 else "")

    def close_report(self, result, *, keep_going: bool) -> None:
        """The table of time per stage; the failures on stderr and exit 1 when there are any."""
        if not self.quiet:
            typer.echo(f"{'stage':<16} {'seconds':>9}")
            for stage, seconds in result.seconds.items():
                typer.echo(f"{stage:<16} {seconds:>9.1f}")
            if result.steps_run:
                typer.echo(f"dataset: {result.dataset}")
        for name in result.missing:
            typer.echo(f"rsprep: warning: left out of the dataset (--keep-going): {name}", err=True)
        if not result.failures:
            return
        typer.echo(f"rsprep: error: build: {len(result.failures)} failure(s)", err=True)
        for f in result.failures:
            typer.echo(f"  {f['file']}: {f['stage']}: {f['message']}", err=True)
        products_failed = any(f["stage"] in ("patch", "stack", "s1", "reference") for f in result.failures)
        if products_failed and not keep_going:
            typer.echo(
                "rsprep: the dataset-wide steps did not run; fix or remove the failed products and run the "
                "same command again, or add --keep-going to build the dataset without them",
                err=True,
            )
        raise typer.Exit(1)


def _name(path: str) -> str:
    from pathlib import Path

    return Path(path).name
