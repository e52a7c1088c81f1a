"""BigEarthNet v1.0 alignment of reBEN patches from the patch id alone (docs/inputs.md#v1-alignment).

A reBEN ``patch_id`` (``S2A_MSIL2A_20171101T094131_N9999_R036_T35VNJ_00_00``) names the mission,
the datatake (day and time), the tile and the grid cell. Its v1 counterpart is the v1 patch of the
same mission, day, tile and cell (:mod:`rsprep.inputs.v1_tables`) whose name's time lies within
:data:`TIME_TOLERANCE_S` of the datatake time: v1 wrote the time without its leading zero and up to
8 s off (``S2A_MSIL2A_20171101T94132_0_0``), and its cells without zero padding. That counterpart
gives ``s2v1_name``, ``s1_name`` (its v1 S1 partner), both flags (v1's seasonal-snow and
cloud/shadow lists), ``v1_country`` and ``v1_season``. Everything is vectorised: one regex pass, one
``searchsorted`` and one ``take`` for the whole table.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rsprep.inputs.v1_tables import COLUMNS, V1Tables, load_v1_tables, place_key, seconds_of_day

#: Largest difference between the patch's datatake time and the time in its v1 name (v1 is up to
#: 8 s off; two datatakes of one satellite over one tile on one day are ~100 min apart).
TIME_TOLERANCE_S = 60
#: A reBEN / rsprep patch id of a Sentinel-2 product.
PATCH_PATTERN = (
    r"^(?P<mission>S2[AB])_MSI[A-Z0-9]{3}_(?P<date>\d{8})T(?P<time>\d{6})_N\d{4}_R\d{3}"
    r"_T(?P<tile>\d{2}[A-Z]{3})_(?P<x>\d{1,3})_(?P<y>\d{1,3})$"
)
#: The columns :func:`align_patch_ids` returns after ``patch_id``.
ALIGNED = COLUMNS


def align_patch_ids(
    patch_ids: pa.Array | pa.ChunkedArray | Sequence[str] | np.ndarray, tables: V1Tables | None = None
) -> pa.Table:
    """v1 counterparts of ``patch_ids``: a table of ``patch_id`` and :data:`ALIGNED`, row for row.

    A patch without a v1 counterpart (another product, a cell v1 left out, a name that is not a
    reBEN patch id, a null) gets nulls. ``tables`` defaults to the installed bigearthnet-common's.
    """
    ids = _as_array(patch_ids)
    tables = tables if tables is not None else load_v1_tables()
    index = match_rows(ids, tables)
    found = index >= 0
    taken = tables.table.take(pa.array(np.where(found, index, 0), mask=~found))
    return pa.table({"patch_id": ids, **{c: taken.column(c) for c in ALIGNED}})


def match_rows(ids: pa.Array, tables: V1Tables) -> np.ndarray:
    """Row of ``tables`` for each patch id, -1 where it has no v1 counterpart."""
    out = np.full(len(ids), -1, dtype=np.int64)
    parts = pc.extract_regex(ids, PATCH_PATTERN)
    ok = ~np.asarray(pc.is_null(parts).to_numpy(zero_copy_only=False), dtype=bool)
    if not ok.any() or len(tables) == 0:
        return out
    rows = np.flatnonzero(ok)
    parts = parts.filter(pa.array(ok))
    tile = pc.index_in(parts.field("tile"), value_set=tables.tiles)
    x, y = _ints(parts.field("x")), _ints(parts.field("y"))
    known = ~np.asarray(pc.is_null(tile).to_numpy(zero_copy_only=False), dtype=bool) & (x < 100) & (y < 100)
    key = place_key(
        (parts.field("mission").to_numpy(zero_copy_only=False) == "S2B").astype(np.int64),
        _ints(parts.field("date")),
        np.asarray(pc.fill_null(tile, 0).to_numpy(), dtype=np.int64),
        x,
        y,
    )
    at = np.minimum(np.searchsorted(tables.keys, key), len(tables.keys) - 1)
    hit = known & (tables.keys[at] == key)
    dt = np.abs(seconds_of_day(_ints(parts.field("time"))) - tables.time_s[at])
    hit &= dt <= TIME_TOLERANCE_S
    out[rows[hit]] = at[hit]
    return out


def _as_array(patch_ids) -> pa.Array:
    if isinstance(patch_ids, pa.ChunkedArray):
        arr = patch_ids.combine_chunks()
    elif isinstance(patch_ids, pa.Array):
        arr = patch_ids
    else:
        arr = pa.array(list(patch_ids) if isinstance(patch_ids, np.ndarray) else patch_ids, pa.string())
    if pa.types.is_large_string(arr.type) or pa.types.is_dictionary(arr.type):
        arr = arr.cast(pa.string())
    if not pa.types.is_string(arr.type):
        from rsprep.errors import InvalidParameterError

        raise InvalidParameterError(f"patch ids must be strings, got a column of {arr.type}")
    return arr


def _ints(arr: pa.Array) -> np.ndarray:
    return pc.cast(arr, pa.int64()).to_numpy()
