"""Pixels of the sampled patches: S2 bands hold no nodata (0), S1 bands are finite, reference maps hold
CLC codes only (0, no polygon, and 999 allowed), and every output holding a patch holds the same
arrays, band by band, bit for bit (docs/formats.md). Each output is read once per patch through its
reader (rsprep.formats.readers); a value an output lacks is left to the completeness check."""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
from safetensors import SafetensorError

from rsprep.core import kernels
from rsprep.core.nomenclature import CLC_CODES
from rsprep.core.values import GROUPS, MAP_BAND, MAP_SUFFIX, REFERENCE_MAP, S1_BANDS, map_key
from rsprep.errors import ReaderError
from rsprep.formats.geotiff import band_files, scan
from rsprep.formats.readers import LmdbReader, TiffReader, ZarrReader
from rsprep.validation.checks.completeness import group_of, layout_sample
from rsprep.validation.report import Recorder
from rsprep.validation.view import DatasetView

LABEL = {"lmdb": "LMDB", "zarr": "Zarr", "tiff": "GeoTIFF"}
#: What a failed read raises: a reader's own error, a broken file or store, a corrupt safetensors value.
_READ_ERRORS = (ReaderError, OSError, ValueError, KeyError, IndexError, SafetensorError)
#: uint16 value -> whether a reference map may hold it.
_MAP_VALUES = np.zeros(1 << 16, dtype=bool)
_MAP_VALUES[[0, *CLC_CODES]] = True

Arrays = dict[str, np.ndarray]


def run(view: DatasetView, rec: Recorder, sampling) -> None:
    readers = _readers(view)
    if not readers:
        rec.skip("the dataset has no LMDB, Zarr store or GeoTIFF layout")
        return
    t0 = time.perf_counter()
    if view.patch_ids:
        units = _table_units(view, readers, sampling, rec)
    else:
        unread = "; the Zarr store is read by table row only" if "zarr" in readers else ""
        rec.note(f"no metadata tables: a sample of the outputs' own keys and folders is read{unread}")
        units = _layout_units(view, readers, sampling, rec)
    patches = values = 0
    for where, got in units:
        values += check_arrays(where, got, rec)
        patches += 1
        del got  # free this patch's arrays before the next is read (their memory is then reused warm)
    rec.checked(patches)
    seconds = max(time.perf_counter() - t0, 1e-9)
    rec.note(f"{patches} patch(es) read, {values:,} values checked ({values / seconds:,.0f} values/s)")


def _readers(view: DatasetView) -> dict:
    out: dict = {}
    if view.lmdb is not None:
        out["lmdb"] = LmdbReader(view.lmdb)
    if view.zarr is not None:
        out["zarr"] = ZarrReader(view.zarr)
    if view.tiff:
        out["tiff"] = TiffReader(view.root)
    return out


# ---- what is read ---------------------------------------------------------------------------
def _table_units(view: DatasetView, readers: dict, sampling, rec: Recorder) -> Iterator[tuple[str, dict]]:
    """(patch_id, {output: arrays}) of each sampled row: its S2 bands, S1 bands and reference map."""
    for r in sampling.rows:
        pid, s1 = view.patch_ids[r], view.s1_names[r]
        got = {}
        for name, reader in readers.items():
            arrays = _read_patch(name, reader, pid, s1, rec)
            if arrays is not None:
                got[name] = arrays
        yield pid, got


def _read_patch(name: str, reader, pid: str, s1: str | None, rec: Recorder) -> Arrays | None:
    try:
        if name != "zarr":
            return reader.patch(pid, s1)
        row = reader.index.get(pid)
        if row is None:
            return None  # not in the store: the completeness check reports it
        arrays = reader.read_row(row)
        arrays.pop("labels", None)
        if not s1:
            _unpaired_s1(arrays, pid, rec)
        return arrays
    except _READ_ERRORS as exc:
        if not _lacks(name, reader, pid, s1):
            rec.error(f"the {LABEL[name]} patch cannot be read ({exc})", pid)
        return None


def _lacks(name: str, reader, pid: str, s1: str | None) -> bool:
    """Whether the output lacks a key or file of the patch (reported by the completeness check)."""
    if name == "lmdb":
        return any(k not in reader for k in (pid, map_key(pid), *([s1] if s1 else [])))
    if name == "tiff":
        parts = [("s2", pid), ("map", pid), *([("s1", s1)] if s1 else [])]
        return any(not (reader.root / f).is_file() for g, k in parts for f in band_files(g, k).values())
    return False


def _unpaired_s1(arrays: Arrays, pid: str, rec: Recorder) -> None:
    """A patch without s1_name has NaN S1 rows in Zarr; they are not S1 values."""
    for band in S1_BANDS:
        a = arrays.pop(band, None)
        if a is not None and not np.isnan(a).all():
            rec.error(f"Zarr {band} holds values for a patch without s1_name (NaN expected)", pid)


def _layout_units(view: DatasetView, readers: dict, sampling, rec: Recorder) -> Iterator[tuple[str, dict]]:
    """Without tables: (name, {output: arrays}) of a sample of the LMDB keys and layout folders."""
    holders: dict[tuple[str, str], list[str]] = {}
    if "tiff" in readers:
        for group in GROUPS:
            for key in scan(view.root, group):
                holders.setdefault((group, key), []).append("tiff")
    if "lmdb" in readers:
        keys = readers["lmdb"].keys()  # a list, in key order
        for key in keys:
            holders.setdefault((group_of(key), key.removesuffix(MAP_SUFFIX)), []).append("lmdb")
    for group, key in layout_sample(sorted(holders), sampling):
        where = map_key(key) if group == "map" else key
        got = {}
        for name in holders[(group, key)]:
            try:
                reader = readers[name]
                got[name] = reader.get(group, key) if name == "tiff" else reader.get(where)
            except _READ_ERRORS as exc:
                rec.error(f"the {LABEL[name]} {group} value cannot be read ({exc})", where)
        yield where, got


# ---- what is checked ------------------------------------------------------------------------
def check_arrays(where: str, got: dict[str, Arrays], rec: Recorder) -> int:
    """Check one patch's arrays as each output holds them; return how many values were checked.

    Per band, the outputs holding equal arrays form a class; the largest (the first on a tie) is the
    reference. Each class is checked once; an output outside the reference class is reported with
    its first differing band and pixel count.
    """
    if len(got) == 1:  # one output: each band is its own class (no comparison to make)
        ((name, arrays),) = got.items()
        for band, a in arrays.items():
            _report(band, a, [name], where, rec)
        return sum(a.size for a in arrays.values())
    diffs: dict[str, list[tuple[str, int, int, list[str]]]] = {name: [] for name in got}
    for band in dict.fromkeys(b for arrays in got.values() for b in arrays):
        classes: list[list[str]] = []
        for name in (n for n in got if band in got[n]):
            home = next((c for c in classes if _equal(got[c[0]][band], got[name][band])), None)
            if home is None:
                classes.append([name])
            else:
                home.append(name)
        ref = max(classes, key=len)
        for members in classes:
            _report(band, got[members[0]][band], members, where, rec)
            if members is not ref:
                n = _differing(got[ref[0]][band], got[members[0]][band])
                for name in members:
                    diffs[name].append((band, n, got[ref[0]][band].size, ref))
    for name, found in diffs.items():
        if found:
            band, n, size, ref = found[0]
            more = f"; {len(found) - 1} more band(s) differ" if len(found) > 1 else ""
            others = ", ".join(LABEL[o] for o in ref)
            rec.error(f"{LABEL[name]} differs from {others}: {band} in {n:,} of {size:,} pixels{more}", where)
    return sum(a.size for arrays in got.values() for a in arrays.values())


def _equal(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit for bit when shape and dtype agree (one memcmp), else as numbers."""
    if a.shape == b.shape and a.dtype == b.dtype:
        return a.tobytes() == b.tobytes()
    return a.shape == b.shape and bool(np.array_equal(a, b))


def _differing(a: np.ndarray, b: np.ndarray) -> int:
    """Pixels in which ``b`` differs from ``a`` (bitwise when the dtypes agree; all if the shapes differ)."""
    if a.shape != b.shape:
        return max(a.size, b.size)
    if a.dtype == b.dtype:
        unsigned = np.dtype(f"u{a.dtype.itemsize}")
        a, b = a.view(unsigned), b.view(unsigned)
    return int(np.count_nonzero(a != b))


def _report(band: str, a: np.ndarray, outputs: list[str], where: str, rec: Recorder) -> None:
    problem = value_problem(band, a)
    if problem:
        rec.error(f"{problem} (in {', '.join(LABEL[o] for o in outputs)})", where)


def value_problem(band: str, a: np.ndarray) -> str | None:
    """What is wrong with the pixels of one band: nodata in S2, non-finite S1, non-CLC map codes."""
    if band in S1_BANDS:
        bad = a.size - int(np.count_nonzero(np.isfinite(a)))
        return f"{band}: {bad:,} of {a.size:,} pixels are not finite (NaN or ±inf)" if bad else None
    if band in (MAP_BAND, REFERENCE_MAP):
        if a.dtype.kind == "u" and a.dtype.itemsize <= 2:
            if not kernels.count_not_in(np.ascontiguousarray(a).reshape(-1), _MAP_VALUES):
                return None
            ok = _MAP_VALUES[a]
        else:
            ok = np.isin(a, [0, *CLC_CODES])
        if ok.all():
            return None
        codes = np.unique(a[~ok])
        shown = ", ".join(str(c) for c in codes[:10].tolist()) + (" …" if len(codes) > 10 else "")
        return f"reference map: {a.size - int(np.count_nonzero(ok)):,} pixels hold no CLC code ({shown})"
    zeros = a.size - int(np.count_nonzero(a))
    return f"{band}: {zeros:,} of {a.size:,} pixels are 0 (nodata); S2 bands have none" if zeros else None
