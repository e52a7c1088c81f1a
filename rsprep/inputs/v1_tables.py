"""BigEarthNet v1.0's own tables, as ``bigearthnet-common`` ships them (docs/inputs.md#v1-alignment).

Three files of the package (``pip install 'rsprep[reben]'``) are read as data, never imported:

- ``s1_s2_name_country_season.csv.bz2``: one row per v1 patch, ``s1_name, s2_name, country, season``;
- ``patches_with_seasonal_snow.csv.bz2`` and ``patches_with_cloud_and_shadow.csv.bz2``: v1 S2 names.

A v1 S2 name (``S2A_MSIL2A_20171101T94132_0_0``) carries the mission, the datatake day and a time
that is only roughly the datatake's (no leading zero, seconds off by up to 8), and the grid cell; its
S1 partner (``S1B_IW_GRDH_1SDV_20171101T154016_35VNJ_0_0``) carries the tile. Mission, day, tile and
cell together are unique over all 590,326 rows, so each row gets one integer key (:func:`place_key`)
and the table is kept sorted by it. Decompressing the bz2 files takes seconds, so the prepared table
is cached as parquet in the user cache folder (``$RSPREP_CACHE``, else ``$XDG_CACHE_HOME/rsprep``,
else ``~/.cache/rsprep``), keyed by the package version, written through a temporary sibling.
"""

from __future__ import annotations

import bz2
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from rsprep.errors import InputNotFoundError, RsprepError

PACKAGE = "bigearthnet_common"
DISTRIBUTION = "bigearthnet-common"
PAIRS = "s1_s2_name_country_season.csv"
SNOW = "patches_with_seasonal_snow.csv"
CLOUD = "patches_with_cloud_and_shadow.csv"
#: Bumped whenever the cached table's layout changes.
CACHE_FORMAT = 1
#: Columns of the prepared table after ``key`` and ``v1_time_s``.
COLUMNS = (
    "s2v1_name", "s1_name", "contains_seasonal_snow", "contains_cloud_or_shadow", "v1_country",
    "v1_season",
)  # fmt: skip

_V1_S2 = r"^(?P<mission>S2[AB])_MSIL2A_(?P<date>\d{8})T(?P<time>\d{5,6})_(?P<x>\d{1,2})_(?P<y>\d{1,2})$"
_V1_S1 = r"^S1[AB]_IW_GRDH_1SDV_\d{8}T\d{6}_(?P<tile>\d{2}[A-Z]{3})_(?P<x>\d{1,2})_(?P<y>\d{1,2})$"


class V1TablesError(RsprepError, ValueError):
    """The v1 tables cannot be read or do not look like BigEarthNet v1's."""


class V1TablesMissingError(InputNotFoundError):
    """``bigearthnet-common`` (the ``reben`` extra) is not installed."""


@dataclass(frozen=True)
class V1Tables:
    """v1's patches sorted by :func:`place_key`, with their names, flags, country and season."""

    keys: np.ndarray  # int64, sorted, unique
    time_s: np.ndarray  # int32: seconds of day of the time in the v1 S2 name
    table: pa.Table  # COLUMNS, one row per key
    tiles: pa.Array  # sorted tile names ("33UUP"); a key's tile is its index here
    source: str  # "bigearthnet-common 2.8.0" or the folder read

    def __len__(self) -> int:
        return len(self.keys)


def place_key(mission: np.ndarray, date: np.ndarray, tile: np.ndarray, x: np.ndarray, y: np.ndarray):
    """One int64 per (mission 0/1, yyyymmdd, tile index < 1000, x < 100, y < 100)."""
    key = mission.astype(np.int64) * 100_000_000 + date.astype(np.int64)
    key = key * 1000 + tile.astype(np.int64)
    return (key * 100 + x.astype(np.int64)) * 100 + y.astype(np.int64)


def seconds_of_day(hhmmss: np.ndarray) -> np.ndarray:
    """``94132`` / ``094132`` → 9·3600 + 41·60 + 32 (v1 also wrote second 60: ``T94160``)."""
    t = hhmmss.astype(np.int64)
    return (t // 10000) * 3600 + (t // 100 % 100) * 60 + t % 100


def load_v1_tables(folder: Path | None = None, *, cache: bool = True) -> V1Tables:
    """The v1 tables of the installed ``bigearthnet-common``, or of ``folder`` (same file names,
    ``.csv`` or ``.csv.bz2``). The package's tables are cached (module docstring); a folder's are not."""
    if folder is not None:
        folder = Path(folder)
        if not folder.is_dir():
            raise InputNotFoundError(f"v1 tables folder {folder} does not exist")
        return _prepare({n: _folder_file(folder, n) for n in (PAIRS, SNOW, CLOUD)}, str(folder))
    version = package_version()
    source = f"{DISTRIBUTION} {version}"
    path = cache_path(version) if cache else None
    if path is not None and path.is_file():
        try:
            return _from_parquet(pq.read_table(path), source)
        except (pa.ArrowException, OSError, KeyError, ValueError):
            pass  # a damaged cache is rebuilt below
    tables = _prepare({n: _package_file(n) for n in (PAIRS, SNOW, CLOUD)}, source)
    if path is not None:
        _write_cache(tables, path)
    return tables


def package_version() -> str:
    """The installed ``bigearthnet-common`` version, or a clear error naming the extra to install."""
    from importlib import metadata

    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        raise V1TablesMissingError(
            "the BigEarthNet v1 tables come from the optional package bigearthnet-common, which is not "
            "installed: pip install 'rsprep[reben]'"
        ) from None


def cache_dir() -> Path:
    """``$RSPREP_CACHE``, else ``$XDG_CACHE_HOME/rsprep``, else ``~/.cache/rsprep``."""
    if os.environ.get("RSPREP_CACHE"):
        return Path(os.environ["RSPREP_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "rsprep"


def cache_path(version: str) -> Path:
    return cache_dir() / f"v1-tables-{DISTRIBUTION}-{version}-f{CACHE_FORMAT}.parquet"


def _package_file(name: str) -> tuple[str, bytes]:
    from importlib import resources

    try:
        ref = resources.files(PACKAGE) / f"{name}.bz2"
        return f"{PACKAGE}/{name}.bz2", bz2.decompress(ref.read_bytes())
    except ModuleNotFoundError:
        package_version()  # names the extra when the distribution is missing
        raise
    except (OSError, ValueError) as exc:
        raise V1TablesError(
            f"{PACKAGE}/{name}.bz2 cannot be read ({exc}); reinstall it: pip install --force-reinstall "
            f"'{DISTRIBUTION}'"
        ) from exc


def _folder_file(folder: Path, name: str) -> tuple[str, bytes]:
    for candidate in (folder / f"{name}.bz2", folder / name):
        if candidate.is_file():
            data = candidate.read_bytes()
            try:
                return str(candidate), bz2.decompress(data) if candidate.suffix == ".bz2" else data
            except (OSError, ValueError) as exc:
                raise V1TablesError(f"{candidate} is not a bzip2 file ({exc})") from exc
    raise InputNotFoundError(f"v1 tables folder {folder} has no {name} (or {name}.bz2)")


def tables_from_csv(pairs: bytes, snow: bytes, cloud: bytes, source: str = "memory") -> V1Tables:
    """The prepared tables from the (decompressed) contents of the three CSV files."""
    return _prepare({PAIRS: (f"{source}/{PAIRS}", pairs), SNOW: (f"{source}/{SNOW}", snow),
                     CLOUD: (f"{source}/{CLOUD}", cloud)}, source)  # fmt: skip


def _prepare(files: dict[str, tuple[str, bytes]], source: str) -> V1Tables:
    """Parse the three CSV files into the sorted, keyed table."""
    pairs_name, pairs_bytes = files[PAIRS]
    pairs = _read_csv(pairs_name, pairs_bytes, ["s1_name", "s2_name", "country", "season"], header=True)
    s2 = pairs.column("s2_name").combine_chunks()
    s1 = pairs.column("s1_name").combine_chunks()
    s2_parts = _parse(pairs_name, "s2_name", s2, _V1_S2)
    s1_parts = _parse(pairs_name, "s1_name", s1, _V1_S1)
    same = [pc.all(pc.equal(s1_parts.field(c), s2_parts.field(c))).as_py() for c in ("x", "y")]
    if not all(same):
        raise V1TablesError(f"{pairs_name}: an s1_name and its s2_name name different grid cells")
    tile_names = s1_parts.field("tile")
    tiles = pc.unique(tile_names).sort()
    if len(tiles) >= 1000:
        raise V1TablesError(f"{pairs_name} names {len(tiles)} tiles; at most 999 fit the key")
    keys = place_key(
        (s2_parts.field("mission").to_numpy(zero_copy_only=False) == "S2B").astype(np.int64),
        _ints(s2_parts.field("date")),
        pc.index_in(tile_names, value_set=tiles).to_numpy(),
        _ints(s2_parts.field("x")),
        _ints(s2_parts.field("y")),
    )
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    dup = np.flatnonzero(keys[1:] == keys[:-1])
    if len(dup):
        first = s2.take(pa.array(order[dup[:3]])).to_pylist()
        raise V1TablesError(
            f"{pairs_name}: {len(dup)} v1 patches share mission, day, tile and cell, e.g. {first}"
        )
    flags = {}
    for column, name in (("contains_seasonal_snow", SNOW), ("contains_cloud_or_shadow", CLOUD)):
        listed = _read_csv(*files[name], ["name"], header=False).column("name").combine_chunks()
        flags[column] = pc.is_in(s2, value_set=listed)
    table = pa.table(
        {
            "s2v1_name": s2,
            "s1_name": s1,
            **flags,
            "v1_country": pairs.column("country").combine_chunks(),
            "v1_season": pairs.column("season").combine_chunks(),
        }
    ).take(pa.array(order))
    time_s = seconds_of_day(_ints(s2_parts.field("time")))[order].astype(np.int32)
    return V1Tables(keys, time_s, table, tiles, source)


def _read_csv(name: str, data: bytes, columns: list[str], *, header: bool) -> pa.Table:
    if not header and not data.strip():  # an empty list
        return pa.table({c: pa.array([], pa.string()) for c in columns})
    read = pcsv.ReadOptions(column_names=None if header else columns, use_threads=False)
    convert = pcsv.ConvertOptions(column_types=dict.fromkeys(columns, pa.string()))
    try:
        table = pcsv.read_csv(io.BytesIO(data), read_options=read, convert_options=convert)
    except pa.ArrowInvalid as exc:
        raise V1TablesError(f"{name} is not a CSV table ({exc})") from exc
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise V1TablesError(f"{name} lacks the column(s) {', '.join(missing)} of a BigEarthNet v1 table")
    return table


def _parse(name: str, column: str, values: pa.Array, pattern: str) -> pa.StructArray:
    parts = pc.extract_regex(values, pattern)
    bad = pc.fill_null(pc.is_null(parts), True)
    if pc.any(bad).as_py():
        examples = values.filter(bad).slice(0, 3).to_pylist()
        raise V1TablesError(
            f"{name}: {pc.sum(bad).as_py()} {column} values are not v1 names, e.g. {examples}"
        )
    return parts


def _ints(arr: pa.Array) -> np.ndarray:
    return pc.cast(arr, pa.int64()).to_numpy()


def _from_parquet(table: pa.Table, source: str) -> V1Tables:
    meta = table.schema.metadata or {}
    tiles = pa.array(meta[b"rsprep.v1.tiles"].decode().split(","), pa.string())
    keys = table.column("key").to_numpy()
    if len(keys) == 0 or not (keys[1:] > keys[:-1]).all():
        raise ValueError("cached v1 keys are not sorted")
    time_s = table.column("v1_time_s").to_numpy().astype(np.int32)
    body = pa.table({c: table.column(c).combine_chunks() for c in COLUMNS})
    return V1Tables(keys, time_s, body, tiles, source)


def _write_cache(tables: V1Tables, path: Path) -> None:
    """Write the prepared table beside its final name, then rename; a cache that cannot be written is
    skipped (the next run prepares the tables again)."""
    cols = {"key": pa.array(tables.keys), "v1_time_s": pa.array(tables.time_s)}
    table = pa.table({**cols, **{c: tables.table.column(c) for c in COLUMNS}})
    table = table.replace_schema_metadata({"rsprep.v1.tiles": ",".join(tables.tiles.to_pylist())})
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, path)
    except OSError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
