"""``rsprep split``: split a parquet file or a dataset folder and write the leakage report.

The pure part (codes for every row of a table, plus the report) is
:func:`rsprep.core.splits.split_table`. ``split_target`` reads and writes: a dataset folder (both
metadata files and the sidecar get their ``split`` column, computed once over all their patches) or a
single parquet file (updated in place, or written to ``out``). Every run writes ``<name>.json`` /
``<name>.txt`` leakage reports beside its output.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pyarrow as pa

from rsprep.core.splits import SplitOptions, SplitOutcome, apply_split, split_table
from rsprep.errors import InvalidParameterError, OutputExistsError
from rsprep.store import dataset as ds
from rsprep.store.atomic import LOCK_WAIT
from rsprep.store.lock import locked


def split_target(
    target: Path, options: SplitOptions, *, out: Path | None = None, overwrite: bool = False
) -> tuple[SplitOutcome, list[Path], Path]:
    """Split a dataset folder or one parquet file; returns (outcome, files written, report path).

    Holds the lock of the dataset folder (or of the parquet file written) while it works.
    """
    target = Path(target)
    with locked(target if target.is_dir() else (out or target), "split target", wait=LOCK_WAIT):
        return _split(target, options, out, overwrite)


def _split(
    target: Path, options: SplitOptions, out: Path | None, overwrite: bool
) -> tuple[SplitOutcome, list[Path], Path]:
    if target.is_dir():
        if out is not None:
            raise InvalidParameterError(
                "--out applies to a single parquet file; a dataset folder is updated in place"
            )
        return _split_dataset(target, options)
    table = ds.read_table(target, "split input")
    dest = out or target
    if out is not None and out.exists() and not overwrite and out.resolve() != target.resolve():
        raise OutputExistsError(f"{out} exists; pass --overwrite to replace it")
    outcome = split_table(table, options, str(target))
    updated = apply_split(table, outcome.patch_id, outcome.codes)
    ds.write_tables({dest: (updated, _is_metadata(updated))})
    report = dest.with_name(f"{dest.stem}.{ds.SPLIT_REPORT}")
    ds.write_split_report(outcome.report, options.method, report)
    return outcome, [dest], report


def _is_metadata(table: pa.Table) -> bool:
    return set(table.column_names) - {"__index_level_0__"} == set(ds.METADATA_SCHEMA.names)


def _split_dataset(dataset: Path, options: SplitOptions) -> tuple[SplitOutcome, list[Path], Path]:
    files = ds.dataset_tables(dataset)
    tables = {p: ds.read_table(p) for p in files}
    sidecar = dataset / ds.SIDECAR
    if sidecar in tables:
        basis, source = tables[sidecar], str(sidecar)
        ids = set(basis.column("patch_id").to_pylist())
        for p, t in tables.items():
            extra = set(t.column("patch_id").to_pylist()) - ids
            if extra:
                raise InvalidParameterError(
                    f"{p} has {len(extra)} patch(es) that {sidecar} lacks (e.g. {sorted(extra)[0]}); "
                    "the dataset is inconsistent: rebuild it with `rsprep metadata --overwrite`"
                )
    else:
        basis = pa.concat_tables([tables[p].select(["patch_id"]) for p in files])
        source = f"{dataset} metadata tables"
    outcome = split_table(basis, options, source)
    ds.write_tables(
        {p: (apply_split(t, outcome.patch_id, outcome.codes), _is_metadata(t)) for p, t in tables.items()}
    )
    report = dataset / ds.SPLIT_REPORT
    ds.write_split_report(outcome.report, options.method, report)
    ds.record_build(
        dataset,
        "split",
        {
            "options": asdict(options),
            "counts": outcome.report["counts_all"],
            "seconds": round(outcome.seconds, 3),
        },
    )
    return outcome, list(tables), report
