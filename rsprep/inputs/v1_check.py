"""``rsprep v1 align`` on a whole table: fill the v1 columns a table lacks, check those it has.

Only rows with a v1 counterpart are compared (a row without one keeps its values and is reported
apart); a null equals a null. ``replace`` writes the v1 values over a present column where a v1
counterpart exists.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rsprep.errors import InvalidParameterError
from rsprep.inputs.v1_align import align_patch_ids
from rsprep.inputs.v1_tables import V1Tables, load_v1_tables

#: The columns of the official metadata that v1 alignment derives (filled when absent).
CORE = ("s2v1_name", "s1_name", "contains_seasonal_snow", "contains_cloud_or_shadow")
#: v1's own country and season: checked when present, added only when asked.
EXTRA = ("v1_country", "v1_season")
#: Examples kept per kind of finding.
EXAMPLES = 5


@dataclass
class AlignReport:
    table: pa.Table  # the input with the filled (and replaced) columns
    source: str  # where the v1 tables came from
    rows: int
    matched: int
    unmatched_examples: list[str]
    filled: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    mismatches: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[tuple[str, object, object]]] = field(default_factory=dict)

    @property
    def unmatched(self) -> int:
        return self.rows - self.matched

    @property
    def mismatched(self) -> int:
        return sum(self.mismatches.values())

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "rows": self.rows,
            "matched": self.matched,
            "unmatched": self.unmatched,
            "unmatched_examples": self.unmatched_examples,
            "filled": self.filled,
            "checked": self.checked,
            "replaced": self.replaced,
            "mismatches": self.mismatches,
            "mismatch_examples": {
                c: [{"patch_id": p, "table": g, "v1": v} for p, g, v in ex] for c, ex in self.examples.items()
            },
        }


def align_table(
    table: pa.Table,
    *,
    source: str = "table",
    extras: bool = False,
    replace: bool = False,
    tables: V1Tables | None = None,
) -> AlignReport:
    """Align ``table`` (it needs ``patch_id``) with v1; see the module docstring."""
    if "patch_id" not in table.column_names:
        raise InvalidParameterError(
            f"{source} has no patch_id column (its columns: {', '.join(table.column_names)}); "
            "v1 alignment works from reBEN patch ids"
        )
    tables = tables if tables is not None else load_v1_tables()
    ids = table.column("patch_id").combine_chunks()
    aligned = align_patch_ids(ids, tables)
    found = pc.is_valid(aligned.column("s2v1_name")).combine_chunks()
    matched = int(pc.sum(found).as_py() or 0)
    unmatched = ids.filter(pc.invert(found)).slice(0, EXAMPLES).to_pylist()
    report = AlignReport(table, tables.source, table.num_rows, matched, unmatched)
    for name in CORE + EXTRA:
        ours = aligned.column(name).combine_chunks()
        if name not in table.column_names:
            if name in CORE or extras:
                report.table = report.table.append_column(name, ours)
                report.filled.append(name)
            continue
        given = _as_type(table.column(name).combine_chunks(), ours.type, name, source)
        differ = _differ(given, ours, found)
        report.checked.append(name)
        report.mismatches[name] = int(differ.sum())
        if differ.any():
            rows = np.flatnonzero(differ)[:EXAMPLES]
            report.examples[name] = [
                (ids[i].as_py(), given[i].as_py(), ours[i].as_py()) for i in rows.tolist()
            ]
        if replace:
            merged = pc.if_else(found, ours, given)
            report.table = report.table.set_column(report.table.column_names.index(name), name, merged)
            report.replaced.append(name)
    return report


def _as_type(column: pa.Array, wanted: pa.DataType, name: str, source: str) -> pa.Array:
    if column.type == wanted:
        return column
    try:
        return column.cast(wanted)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InvalidParameterError(
            f"{source}: column {name} is {column.type}, v1 alignment gives {wanted} and the two cannot be "
            f"compared ({exc}); drop or fix the column"
        ) from exc


def _differ(given: pa.Array, ours: pa.Array, found: pa.Array) -> np.ndarray:
    """Rows with a v1 counterpart whose value differs (a null equals only a null)."""
    both_null = pc.and_(pc.is_null(given), pc.is_null(ours))
    same = pc.fill_null(pc.equal(given, ours), False)
    equal = pc.or_(both_null, same)
    return np.asarray(pc.and_(found, pc.invert(equal)).to_numpy(zero_copy_only=False), dtype=bool)
