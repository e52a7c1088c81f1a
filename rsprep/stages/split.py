"""Run a split over a table, a parquet file or a dataset folder, and write the leakage report.

``split_table`` is the pure part: codes for every row of a table plus the report. ``split_target``
reads and writes: a dataset folder (both metadata files and the sidecar get their ``split`` column,
computed once over all their patches) or a single parquet file (updated in place, or written to
``out``). Every run writes ``<name>.json`` / ``<name>.txt`` leakage reports beside its output.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rsprep.core.leakage import leakage_report, write_report
from rsprep.core.positions import positions
from rsprep.core.splits import (
    SplitOptions,
    block_split,
    code_names,
    counts,
    parse_patch_ids,
    random_split,
    ranked_groups,
    tile_border,
)
from rsprep.errors import InvalidParameterError, OutputExistsError
from rsprep.store import dataset as ds

REPORT = "split_report.json"


@dataclass
class SplitOutcome:
    patch_id: pa.Array
    codes: np.ndarray
    report: dict[str, Any]
    options: SplitOptions
    seconds: float


def _column_or(table: pa.Table, name: str, default) -> np.ndarray | float:
    if name in table.column_names:
        col = table.column(name)
        if col.null_count == 0:
            return np.asarray(col.to_numpy(), dtype=np.float64)
    return default


def split_table(table: pa.Table, options: SplitOptions, source: str = "table") -> SplitOutcome:
    """Split codes for every row of ``table``.

    Needs ``patch_id``; uses x, y, patch_size_m, tile_size_m and positions when the table has them.
    """
    t0 = time.perf_counter()
    options.validate()
    if "patch_id" not in table.column_names:
        raise InvalidParameterError(f"{source} has no patch_id column; a split needs patch names")
    ids = table.column("patch_id").combine_chunks()
    if pc.count_distinct(ids).as_py() != len(ids):
        raise InvalidParameterError(
            f"{source}: patch_id values are not unique; a split needs one row per patch"
        )
    names = parse_patch_ids(ids, source)
    x = _column_or(table, "x", names.x)
    y = _column_or(table, "y", names.y)
    patch_size = _column_or(table, "patch_size_m", float(options.patch_size))
    tile_size = _column_or(table, "tile_size_m", float(options.tile_size))
    pos = positions(table, names, patch_size=patch_size, crs=options.crs)
    details: dict[str, Any] = {}
    if options.method == "tile-border":
        codes = tile_border(x, y, patch_size=patch_size, tile_size=tile_size, fractions=options.fractions)
    elif options.method == "random":
        codes = random_split(ids.to_pylist(), options.seed, options.fractions)
    elif options.method == "tile":
        codes = ranked_groups(names.tile, options.seed, options.fractions)
        details["tiles"] = len(set(names.tile.tolist()))
    else:
        if not pos.georeferenced:
            raise InvalidParameterError(
                f"{source} has no coordinates (epsg + left/bottom/right/top, geometry or centroid_lon/lat); "
                "--method block needs them: split the dataset folder or its patches.parquet instead"
            )
        codes, blocks = block_split(
            pos.ex,
            pos.ey,
            block_m=options.block_km * 1000.0,
            seed=options.seed,
            fractions=options.fractions,
            buffer=options.buffer,
        )
        details["blocks"] = len(np.unique(blocks, axis=0))
    report = leakage_report(codes, pos)
    report = {
        "method": options.method,
        "options": asdict(options),
        "counts_all": counts(codes),
        **details,
        **report,
    }
    return SplitOutcome(ids, codes, report, options, time.perf_counter() - t0)


def apply_split(table: pa.Table, ids: pa.Array, codes: np.ndarray) -> pa.Table:
    """``table`` with its ``split`` column set from (ids, codes), in place of an old one or appended."""
    pos = pc.index_in(table.column("patch_id"), value_set=ids)
    if pos.null_count:
        raise InvalidParameterError("a patch of the table has no split (it was not part of the split input)")
    split = code_names(codes).take(pos.combine_chunks() if isinstance(pos, pa.ChunkedArray) else pos)
    if "split" in table.column_names:
        return table.set_column(table.column_names.index("split"), "split", split)
    return table.append_column("split", split)


def split_target(
    target: Path, options: SplitOptions, *, out: Path | None = None, overwrite: bool = False
) -> tuple[SplitOutcome, list[Path], Path]:
    """Split a dataset folder or one parquet file; returns (outcome, files written, report path)."""
    target = Path(target)
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
    report = dest.with_name(f"{dest.stem}.{REPORT}")
    write_report(outcome.report, options.method, report)
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
    report = dataset / REPORT
    write_report(outcome.report, options.method, report)
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
