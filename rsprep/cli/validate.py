"""``rsprep validate``: check a dataset (ours or an official reBEN download); exit 1 on errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from rsprep.cli.options import Json, Seed

#: Problems printed per check (all of them are in --json).
SHOWN = 5


def validate(
    dataset: Annotated[
        Path, typer.Argument(help="Dataset folder (built by rsprep, or an official reBEN folder).")
    ],
    as_json: Json = False,
    strict: Annotated[bool, typer.Option("--strict", help="Warnings fail too (exit 1).")] = False,
    checks: Annotated[
        str | None, typer.Option("--checks", help="Only these checks, comma-separated.", show_default=False)
    ] = None,
    skip: Annotated[str, typer.Option("--skip", help="Checks not to run, comma-separated.")] = "",
    sample: Annotated[
        str | None,
        typer.Option(
            "--sample",
            help="Patches whose pixels are read: a count or a fraction (default 1000).",
            show_default=False,
        ),
    ] = None,
    full: Annotated[bool, typer.Option("--full", help="Read the pixels of every patch.")] = False,
    seed: Seed = 0,
    write_checksums: Annotated[
        bool,
        typer.Option(
            "--write-checksums", help="Write checksums.sha256 (files; LMDB per key), then validate."
        ),
    ] = False,
) -> None:
    """Schemas, completeness of every output, values, labels, split, noise variants and checksums.

    Exit codes: 0 when no check found an error (no warning either with --strict), 1 otherwise, 2 for usage.
    """
    from rsprep.cli.context import quiet
    from rsprep.validation import validate as run
    from rsprep.validation.checks.checksums import write_checksums as write

    if write_checksums:
        path, entries = write(dataset)
        if not quiet() and not as_json:
            typer.echo(f"wrote {path} ({entries} entries)")
    report = run(
        dataset,
        checks=_names(checks) if checks else None,
        skip=_names(skip),
        sample=_sample(sample),
        full=full,
        seed=seed,
    )
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    elif not quiet() or not report.passed(strict=strict):
        typer.echo(_summary(report))
    if not report.passed(strict=strict):
        raise typer.Exit(1)


def _names(text: str) -> list[str]:
    return [c.strip() for c in text.split(",") if c.strip()]


def _sample(text: str | None) -> int | float | None:
    if text is None:
        return None
    try:
        return float(text) if "." in text else int(text)
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is neither a count nor a fraction", param_hint="--sample"
        ) from None


def _summary(report) -> str:
    s = report.sample
    sampled = "" if s["full"] else f", seed {s['seed']}"
    outputs = ", ".join(report.outputs) or "none"
    if "limit" in s:  # no tables: the outputs' own names were sampled
        read = "every patch of the outputs" if s["full"] else f"up to {s['limit']} patches per kind{sampled}"
    else:
        read = f"{s['patches']} of {s['of']} patches{sampled}"
    lines = [
        f"{report.dataset} ({report.kind}; outputs: {outputs}; pixels of {read})",
        f"{'check':14s}{'status':>10s}{'checked':>10s}{'errors':>8s}{'warnings':>10s}{'seconds':>9s}",
    ]
    for c in report.checks:
        lines.append(
            f"{c.name:14s}{c.status:>10s}{c.checked:>10d}{c.errors:>8d}{c.warnings:>10d}{c.seconds:>9.2f}"
            + (f"   {c.note}" if c.note else "")
        )
    for c in report.checks:
        shown = [p for p in report.problems if p.check == c.name][:SHOWN]
        for p in shown:
            where = f"{p.where}: " if p.where else ""
            lines.append(f"  {p.severity} [{c.name}] {where}{p.message}")
        more = c.errors + c.warnings - len(shown)
        if more > 0:
            lines.append(f"  ... and {more} more in [{c.name}] (--json lists them)")
    verdict = "ok" if report.ok else f"{report.error_count} error(s)"
    lines.append(f"{verdict}, {report.warning_count} warning(s) in {report.seconds:.1f} s")
    return "\n".join(lines)
