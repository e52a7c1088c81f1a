"""``rsprep v1``: BigEarthNet v1.0 alignment of reBEN tables (docs/inputs.md#v1-alignment)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rsprep.cli.options import Json, Overwrite

app = typer.Typer(help="BigEarthNet v1.0: align reBEN patch ids with v1 (names, S1 partners, flags).")


@app.command("align")
def align(
    table: Annotated[Path, typer.Argument(help="A parquet file with a patch_id column.", show_default=False)],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Write the table with the v1 columns here (TABLE itself only when named); "
            "without it only the report is printed.",
            show_default=False,
        ),
    ] = None,
    extras: Annotated[
        bool, typer.Option("--v1-extras", help="Also add v1_country and v1_season when absent.")
    ] = False,
    replace: Annotated[
        bool,
        typer.Option("--replace", help="Write the v1 values over present columns (mismatches do not fail)."),
    ] = False,
    v1_tables: Annotated[
        Path | None,
        typer.Option(
            "--v1-tables",
            help="A folder with v1's tables (bigearthnet-common file names) instead of the package's.",
            show_default=False,
        ),
    ] = None,
    overwrite: Overwrite = False,
    json_out: Json = False,
) -> None:
    """Fill s2v1_name, s1_name and both flags from v1 where absent, check them where present.

    Exit 1 when a present column disagrees with v1 on a patch that has a v1 counterpart (unless
    --replace); patches without a counterpart are reported, never an error.
    """
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from rsprep.cli.context import quiet
    from rsprep.errors import InputNotFoundError, InvalidParameterError, OutputExistsError
    from rsprep.inputs.v1_check import align_table
    from rsprep.inputs.v1_tables import load_v1_tables
    from rsprep.store.dataset import write_tables

    if not table.is_file():
        raise InputNotFoundError(f"table {table} does not exist")
    try:
        data = pq.read_table(table)
    except (pa.ArrowException, OSError) as exc:
        raise InvalidParameterError(f"{table} is not a readable parquet file ({exc})") from exc
    same = out is not None and out.resolve() == table.resolve()
    if out is not None and out.exists() and not same and not overwrite:
        raise OutputExistsError(f"{out} exists; pass --overwrite to replace it")
    report = align_table(
        data, source=str(table), extras=extras, replace=replace, tables=load_v1_tables(v1_tables)
    )
    failed = report.mismatched > 0 and not replace
    if out is not None and not failed:
        write_tables({out: (report.table, False)})
    if json_out:
        typer.echo(
            json.dumps({**report.to_dict(), "out": str(out) if out and not failed else None}, indent=2)
        )
    elif not quiet() or failed:
        _print(table, report, out, failed)
    if failed:
        raise typer.Exit(1)


def _print(table: Path, r, out: Path | None, failed: bool) -> None:
    err = failed
    typer.echo(
        f"{table}: {r.rows} patches, {r.matched} with a v1 counterpart, {r.unmatched} without "
        f"(v1 tables: {r.source})",
        err=err,
    )
    if r.unmatched:
        typer.echo(f"  without a v1 counterpart, e.g. {', '.join(map(str, r.unmatched_examples))}", err=err)
    if r.filled:
        typer.echo(f"  filled: {', '.join(r.filled)}", err=err)
    for name in r.checked:
        n = r.mismatches[name]
        action = " (replaced by v1)" if name in r.replaced else ""
        typer.echo(f"  checked {name}: {n} mismatch{'es' if n != 1 else ''}{action}", err=err)
        for patch_id, given, ours in r.examples.get(name, []):
            typer.echo(f"    {patch_id}: table {given!r}, v1 {ours!r}", err=err)
    if failed:
        typer.echo(
            f"rsprep: error: {r.mismatched} value(s) of {table} disagree with v1"
            + (f"; nothing written to {out}" if out else "")
            + " (--replace takes the v1 values)",
            err=True,
        )
    elif out is not None:
        typer.echo(f"wrote {out}")
