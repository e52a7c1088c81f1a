"""Every output holds exactly the tables' patches: each patch_id and s1_name of both metadata files is
in the LMDB, the Zarr store and the GeoTIFF layout that exist, with its bands at the right dtype and
size, and nothing the tables do not name is there (docs/formats.md). Without tables (an official
GeoTIFF-only folder, a bare LMDB) each output is checked against itself, its names taken from it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from rsprep.core.grid import DEFAULT_PATCH_SIZE_M
from rsprep.core.values import GROUP_BANDS, GROUP_DTYPES, GROUPS, MAP_SUFFIX, map_key, native_pixels
from rsprep.errors import InvalidParameterError
from rsprep.formats.geotiff import MAPS_DIR, S1_DIR, S2_DIR, band_files, patch_dir, scan
from rsprep.formats.lmdb import LmdbReader
from rsprep.formats.zarr_shards import ShardedPatchArray
from rsprep.validation.report import Recorder
from rsprep.validation.view import DatasetView

_SAFETENSORS = {"uint16": "U16", "float32": "F32"}
_TOP = {"s2": S2_DIR, "s1": S1_DIR, "map": MAPS_DIR}


def run(view: DatasetView, rec: Recorder, sampling) -> None:
    if not view.outputs:
        rec.skip("the dataset has no LMDB, Zarr store or GeoTIFF layout")
        return
    attrs = (_array_meta(view.zarr) or {}).get("attributes", {}) if view.zarr is not None else {}
    size = attrs.get("patch_size_m", DEFAULT_PATCH_SIZE_M)  # reBEN's 1200 m unless the store says
    wanted = expected(view)
    if wanted is None:
        rec.note("no metadata tables: each output is checked against itself (names from keys/folders)")
    if view.lmdb is not None:
        _lmdb(view, rec, wanted, size)
    if view.zarr is not None:
        _zarr(view, rec, size)
    if view.tiff:
        _tiff(view, rec, wanted, size, sampling)


def expected(view: DatasetView) -> dict[str, list[str]] | None:
    """Keys each group must hold (s2/map: patch ids, s1: non-null s1_names); None without tables."""
    if not view.patch_ids:
        return None
    return {"s2": view.patch_ids, "s1": sorted({n for n in view.s1_names if n}), "map": view.patch_ids}


def bands(group: str, size: int) -> dict[str, tuple[str, tuple[int, int]]]:
    return {b: (GROUP_DTYPES[group], (native_pixels(b, size),) * 2) for b in GROUP_BANDS[group]}


def group_of(key: str) -> str:
    """The group of an LMDB key or layout name when no table says it (maps by suffix, S1 by prefix)."""
    if key.endswith(MAP_SUFFIX):
        return "map"
    return "s1" if key.startswith("S1") else "s2"


def _extra(view: DatasetView, rec: Recorder, what: str, where: str) -> None:
    (rec.warning if view.kind == "official" else rec.error)(f"{what} the metadata tables do not name", where)


# ---- LMDB ------------------------------------------------------------------------------------
def _lmdb(view: DatasetView, rec: Recorder, wanted: dict[str, list[str]] | None, size: int) -> None:
    want: dict[str, str] | None = None
    if wanted is not None:
        want = {k: "s2" for k in wanted["s2"]} | {k: "s1" for k in wanted["s1"]}
        want |= {map_key(p): "map" for p in wanted["map"]}
    specs = {g: bands(g, size) for g in GROUPS}
    cache: dict[tuple, str | None] = {}
    env = LmdbReader(view.lmdb).env
    with env.begin(buffers=True) as txn:
        for k, v in txn.cursor():
            key = bytes(k).decode(errors="replace")
            rec.checked()
            group = group_of(key) if want is None else want.pop(key, None)
            if group is None:
                _extra(view, rec, f"LMDB key {key!r} is a value", key)
                continue
            problem = _safetensors_problem(v, group, specs[group], cache)
            if problem:
                rec.error(f"LMDB value {problem}", key)
    for key, group in (want or {}).items():
        rec.error(f"the LMDB has no key {key!r} ({group} value of the metadata tables)", key)


def _safetensors_problem(value, group: str, spec: dict, cache: dict) -> str | None:
    """What is wrong with a safetensors value's header (parsed, not decoded; equal headers judged once)."""
    n = int.from_bytes(value[:8], "little") if len(value) >= 8 else -1
    if n < 2 or 8 + n > len(value):
        return f"is no safetensors serialisation ({len(value)} bytes, header length {n})"
    memo = (group, bytes(value[8 : 8 + n]), len(value))
    if memo not in cache:
        cache[memo] = _judge_header(memo[1], len(value) - 8 - n, spec)
    return cache[memo]


def _judge_header(head: bytes, data_len: int, spec: dict) -> str | None:
    try:
        header = json.loads(head)
        header.pop("__metadata__", None)
        got = {b: (t["dtype"], tuple(t["shape"]), tuple(t["data_offsets"])) for b, t in header.items()}
    except (ValueError, UnicodeDecodeError, AttributeError, KeyError, TypeError) as exc:
        return f"has an unreadable safetensors header ({exc})"
    if set(got) != set(spec):
        missing, extra = sorted(set(spec) - set(got)), sorted(set(got) - set(spec))
        return f"holds bands {sorted(got)}: missing {missing}, unexpected {extra}"
    wrong = [
        f"{b} is {got[b][0]} {list(got[b][1])}, expected {_SAFETENSORS[dt]} {list(shape)}"
        for b, (dt, shape) in spec.items()
        if got[b][:2] != (_SAFETENSORS[dt], shape)
    ]
    if wrong:
        return "; ".join(wrong)
    sizes_ok = all(b - a == np.prod(s) * (2 if d == "U16" else 4) for d, s, (a, b) in got.values())
    end = max(off[1] for *_, off in got.values())
    return None if sizes_ok and end == data_len else f"has {data_len} tensor bytes; its header says {end}"


# ---- Zarr -------------------------------------------------------------------------------------
def _zarr(view: DatasetView, rec: Recorder, size: int) -> None:
    import zarr

    store = view.zarr
    try:
        ids, s1 = ([str(x) for x in zarr.open_array(store / a, mode="r")[:]] for a in ("patch_id", "s1_name"))
    except (OSError, ValueError, KeyError) as exc:  # zarr's errors are ValueErrors
        rec.error(f"the Zarr arrays patch_id and s1_name cannot be read ({exc})", str(store / "patch_id"))
        return
    rec.checked(len(ids))
    if view.patch_ids:
        _zarr_rows(view, ids, s1, rec)
    for name, (dtype, shape) in _zarr_arrays(store, len(ids), size).items():
        meta = _array_meta(store / name)
        if meta is None:
            if name != "s2_stacked":  # written with --stack only
                rec.error(f"the Zarr store has no array {name} ({dtype} {list(shape)})", name)
        elif (meta.get("data_type"), tuple(meta.get("shape", ()))) != (dtype, shape):
            rec.error(f"is {meta.get('data_type')} {meta.get('shape')}, expected {dtype} {list(shape)}", name)
        elif len(shape) > 2:
            _zarr_chunks(store, name, meta, ids, rec, s1 if name.startswith("s1/") else None)


def _zarr_arrays(store: Path, n: int, size: int) -> dict[str, tuple[str, tuple[int, ...]]]:
    from rsprep.formats.zarr import BOOL_COLUMNS, STRING_COLUMNS

    side = size // 10
    out = {f"s2/{b}": ("uint16", (n, *s)) for b, (_, s) in bands("s2", size).items()}
    out |= {f"s1/{b}": ("float32", (n, side, side)) for b in GROUP_BANDS["s1"]}
    out["reference_map"] = ("uint16", (n, side, side))
    classes = (_array_meta(store / "labels") or {}).get("attributes", {}).get("classes", [None] * 19)
    out["labels"] = ("uint8", (n, len(classes)))
    out |= {c: ("string", (n,)) for c in STRING_COLUMNS} | {c: ("bool", (n,)) for c in BOOL_COLUMNS}
    out["s2_stacked"] = ("uint16", (n, len(GROUP_BANDS["s2"]), side, side))
    return out


def _array_meta(path: Path) -> dict | None:  # a Zarr v3 node's zarr.json
    try:
        return json.loads((path / "zarr.json").read_text())
    except (OSError, ValueError):
        return None


def _zarr_rows(view: DatasetView, ids: list[str], s1: list[str], rec: Recorder) -> None:
    want = view.patch_ids
    if ids != want:
        have, need = set(ids), set(want)
        for pid in sorted(need - have):
            rec.error("the patch is not in the Zarr store (its patch_id array)", pid)
        for pid in sorted(have - need):
            _extra(view, rec, "a Zarr row holds a patch", pid)
        if len(need) != len(want):  # a patch twice in the tables: the schema check names it
            rec.note("the tables list a patch twice, so Zarr rows were compared as a set")
        elif have == need:
            i = next(i for i, (a, b) in enumerate(zip(ids, want, strict=True)) if a != b)
            rec.error(
                f"Zarr rows are not in patch_id order: row {i} is {ids[i]}, expected {want[i]}", "patch_id"
            )
        return
    want_s1 = ["" if x is None else x for x in view.s1_names]
    if s1 != want_s1:
        for pid, got, exp in zip(ids, s1, want_s1, strict=True):
            if got != exp:
                rec.error(f"the Zarr s1_name is {got!r}, the tables say {exp!r}", pid)


def _zarr_chunks(
    store: Path, name: str, meta: dict, ids: list[str], rec: Recorder, s1: list[str] | None = None
) -> None:
    """Every row of an image array has its chunk (a missing shard or chunk reads as fill values).

    ``s1``: the ``s1_name`` of every row, for an S1 array: a patch without an S1 partner (``""``) is all
    fill value (NaN), a chunk Zarr does not write, so only the rows with a partner need theirs.
    """
    arr = ShardedPatchArray.open(store / name, meta)
    if arr is None:
        return  # not the layout rsprep writes; the value check sees fill values
    n, per = arr.shape[0], arr.per_shard
    suffix = "/".join("0" * (len(arr.shape) - 1))
    for s in range(-(-n // per)):
        lo, hi = s * per, min(n, (s + 1) * per)
        rel, rows = f"{name}/c/{s}/{suffix}", ids[lo:hi]
        need = [True] * len(rows) if s1 is None else [bool(x) for x in s1[lo:hi]]
        if not any(need):
            continue  # no partner in this shard: all fill value, nothing to store
        try:
            with open(store / rel, "rb") as f:
                f.seek(-(per * 16 + 4), os.SEEK_END)
                index = np.frombuffer(f.read(per * 16), dtype="<u8").reshape(-1, 2)
        except FileNotFoundError:
            first = next(pid for pid, x in zip(rows, need, strict=True) if x)
            rec.error(f"the shard file is missing: {sum(need)} patches from {first} have no data", rel)
            continue
        except (OSError, ValueError) as exc:
            rec.error(f"the shard file has no readable index ({exc})", rel)
            continue
        offsets = index[: len(rows), 0]
        absent = [pid for pid, off, x in zip(rows, offsets, need, strict=True) if x and off == 2**64 - 1]
        if absent:
            rec.error(f"{len(absent)} of its {len(rows)} patches have no chunk, e.g. {absent[0]}", rel)


# ---- GeoTIFF layout -------------------------------------------------------------------------
def _tiff(view, rec: Recorder, wanted: dict[str, list[str]] | None, size: int, sampling) -> None:
    root = view.root
    found = {g: scan(root, g) for g in GROUPS}
    names = wanted or found
    for group in GROUPS if wanted is not None else ():
        for name in sorted(set(found[group]) - set(wanted[group])):
            where = next((p for p in (root / _TOP[group]).glob(f"*/{name}")), root / name)
            _extra(view, rec, f"{group} patch folder {name!r} is a folder", str(where.relative_to(root)))
    if wanted is None and (root / MAPS_DIR).is_dir():
        _unpaired(set(found["s2"]), set(found["map"]), rec)
    complete = {g: {k for k in names[g] if _folder(root, g, k, rec)} for g in GROUPS}
    for group, key in _header_sample(view, names, sampling):
        if key in complete[group]:
            for band, rel in band_files(group, key).items():
                problem = _tiff_header(root / rel, *bands(group, size)[band])
                if problem:
                    rec.error(problem, str(rel))


def _unpaired(s2: set[str], maps: set[str], rec: Recorder) -> None:
    """Without tables, S2 patches without a map and maps without S2 are warnings (a subset of either)."""
    for name in sorted(s2 - maps):
        rec.warning(f"S2 patch {name} has no reference map in {MAPS_DIR}/", str(patch_dir("s2", name)))
    for name in sorted(maps - s2):
        rec.warning(f"reference map {name} has no S2 patch in {S2_DIR}/", str(patch_dir("map", name)))


def _folder(root: Path, group: str, key: str, rec: Recorder) -> bool:
    """Check one patch folder holds exactly its band files; True when it has all of them."""
    rec.checked()
    try:
        files = band_files(group, key)
        entries = set(os.listdir(root / patch_dir(group, key)))
    except InvalidParameterError as exc:
        rec.error(f"{group} folder name is no patch name ({exc})", key)
        return False
    except (FileNotFoundError, NotADirectoryError):
        rec.error(f"the {group} patch folder of {key} is missing", str(patch_dir(group, key)))
        return False
    names = {rel.name: rel for rel in files.values()}
    for name in sorted(set(names) - entries):
        rec.error(f"the {group} band file of {key} is missing", str(names[name]))
    for name in sorted(entries - set(names)):
        if name.lower().endswith((".tif", ".tiff")):
            rec.error(f"a .tif file that is no band of {key}", str(patch_dir(group, key) / name))
    return set(names) <= entries


def _header_sample(view: DatasetView, names: dict[str, list[str]], sampling) -> list[tuple[str, str]]:
    """(group, key) of the patches whose file headers are read: the sampled rows' S2, S1 and map."""
    if not view.patch_ids:
        return layout_sample([(g, k) for g in GROUPS for k in names[g]], sampling)
    rows = [(view.patch_ids[r], view.s1_names[r]) for r in sampling.rows]
    return [(g, k) for p, s1 in rows for g, k in (("s2", p), ("s1", s1), ("map", p)) if k]


def layout_sample(items: list, sampling) -> list:
    """Without tables: the items to read (all with ``--full``, else the sample size drawn with its seed)."""
    n = sampling.limit
    if n is None or len(items) <= n:
        return list(items)
    rows = np.sort(np.random.default_rng(sampling.seed).choice(len(items), size=n, replace=False))
    return [items[i] for i in rows]


def _tiff_header(path: Path, dtype: str, shape: tuple[int, int]) -> str | None:
    """What is wrong with one band file's header: dtype, size, band count, truncation (no pixel decode)."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tf:
            page, count = tf.pages[0], len(tf.pages)
            got = (str(page.dtype), tuple(page.shape), page.samplesperpixel * count)
            end = max((o + n for o, n in zip(page.dataoffsets, page.databytecounts, strict=True)), default=0)
        file_size = path.stat().st_size
    except (tifffile.TiffFileError, ValueError, OSError, IndexError, AttributeError) as exc:
        return f"the band file is not a readable GeoTIFF ({exc})"
    if got != (dtype, shape, 1):
        return (
            f"the band file holds {got[2]} band(s) of {got[0]} {list(got[1])}, not 1 of {dtype} {list(shape)}"
        )
    if end > file_size:
        return f"the band file is truncated: its pixels run to byte {end}, the file has {file_size} bytes"
    return None
