"""A built dataset folder (docs/dataset.md): file names, the official metadata schema, atomic parquet writes.

``metadata.parquet`` and ``metadata_for_patches_with_snow_cloud_or_shadow.parquet`` follow the official
reBEN files exactly: eight columns in a fixed order, ``labels`` as ``list<element: string>``, sorted by
``patch_id``, ZSTD, no pandas index and no stored Arrow schema (the official files were written by
DuckDB, which stores neither). ``patches.parquet`` is our GeoParquet sidecar. ``build.json`` records
where the data came from (the work store) and what each dataset-wide stage did.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from rsprep import __version__
from rsprep.errors import InputNotFoundError, RsprepError
from rsprep.store.atomic import temp_sibling, write_error, write_json_atomic, write_text_atomic
from rsprep.store.lock import locked

METADATA = "metadata.parquet"
FLAGGED = "metadata_for_patches_with_snow_cloud_or_shadow.parquet"
SIDECAR = "patches.parquet"
BUILD = "build.json"
#: The leakage report of the split (``.json``, with a readable ``.txt`` beside it).
SPLIT_REPORT = "split_report.json"
#: Row groups as in the official files (DuckDB's 122,880), so readers see the same layout.
ROW_GROUP_SIZE = 122_880

LABELS_TYPE = pa.list_(pa.field("element", pa.string()))
METADATA_SCHEMA = pa.schema(
    [
        ("patch_id", pa.string()),
        ("labels", LABELS_TYPE),
        ("split", pa.string()),
        ("country", pa.string()),
        ("s1_name", pa.string()),
        ("s2v1_name", pa.string()),
        ("contains_seasonal_snow", pa.bool_()),
        ("contains_cloud_or_shadow", pa.bool_()),
    ]
)


class DatasetError(RsprepError, ValueError):
    """A dataset folder or table is missing, incomplete or not in the expected schema."""


def write_tables(files: dict[Path, tuple[pa.Table, bool]]) -> list[Path]:
    """Write several parquet files (ZSTD) all or nothing: each under a temporary name first, then all
    renamed, so a failure (disk full, interruption) leaves the previous files untouched.

    ``files`` maps a path to (table, official): official metadata tables are conformed to the
    official schema and written without a stored Arrow schema, as the reBEN files are.
    """
    temps: list[tuple[Path, Path]] = []
    try:
        for dest, (table, official) in files.items():
            dest.parent.mkdir(parents=True, exist_ok=True)
            if official:
                table = conform_metadata(table, dest)
            tmp = temp_sibling(dest)
            temps.append((tmp, dest))
            try:
                pq.write_table(
                    table, tmp, compression="zstd", row_group_size=ROW_GROUP_SIZE, store_schema=not official
                )
            except OSError as exc:  # a full disk: name the table, the previous file is untouched
                raise write_error(dest, exc) from exc
        for tmp, dest in temps:
            os.replace(tmp, dest)
    finally:
        for tmp, _ in temps:
            tmp.unlink(missing_ok=True)
    return [dest for _, dest in temps]


def write_metadata(table: pa.Table, path: Path) -> None:
    """Write a metadata table in the official schema (cast, sorted by patch_id, no Arrow schema stored)."""
    write_tables({path: (table, True)})


def conform_metadata(table: pa.Table, source: Path | str) -> pa.Table:
    """``table`` in exactly the official schema: the eight columns, in order, sorted by patch_id.

    Extra columns (a pandas index, say) are dropped; a missing column is an error naming ``source``.
    """
    missing = [n for n in METADATA_SCHEMA.names if n not in table.column_names]
    if missing:
        raise DatasetError(
            f"{source} lacks the metadata column(s) {', '.join(missing)}; "
            "it is not a reBEN metadata table (rebuild it with `rsprep metadata`)"
        )
    cols = []
    for field in METADATA_SCHEMA:
        col = table.column(field.name)
        try:
            cols.append(col.cast(field.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise DatasetError(
                f"{source}: column {field.name} has type {col.type}, expected {field.type}"
            ) from exc
    out = pa.Table.from_arrays(cols, schema=METADATA_SCHEMA)
    return out.sort_by("patch_id")


def read_table(path: Path, what: str = "table") -> pa.Table:
    """Read a parquet file with an error that names it when it is missing or unreadable."""
    if not path.is_file():
        raise InputNotFoundError(f"{what} {path} does not exist")
    try:
        return pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DatasetError(f"{path} is not a readable parquet file ({exc}); rebuild it") from exc


def read_build(dataset: Path) -> dict[str, Any]:
    """``build.json`` of a dataset folder ({} when there is none, e.g. an official download)."""
    path = dataset / BUILD
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path} is not valid JSON ({exc}); re-run `rsprep metadata --overwrite`") from exc


def work_store(dataset: Path) -> Path | None:
    """The work store that ``rsprep metadata`` built ``dataset`` from (as named in build.json).

    A relative path (what :func:`relative_work` records) is relative to the dataset folder, so a
    dataset and its work store moved together still find each other.
    """
    work = read_build(dataset).get("stages", {}).get("metadata", {}).get("work")
    if not work:
        return None
    path = Path(work)
    return path if path.is_absolute() else (Path(dataset).resolve() / path).resolve()


def relative_work(work: Path, dataset: Path) -> str:
    """``work`` relative to the dataset folder (absolute where no relative path exists)."""
    import os

    try:
        return os.path.relpath(Path(work).resolve(), Path(dataset).resolve())
    except ValueError:  # another drive
        return str(Path(work).resolve())


def recorded_path(target: Path | str, dataset: Path | str) -> str:
    """How an output records the path ``target``: relative to the dataset folder where ``target`` lies
    inside it or beside it (under its parent folder: ``lmdb``, ``../work``), so a dataset moved with
    its work store still finds both and its bytes do not depend on where it was built; else absolute.
    :func:`resolve_recorded` reads it back."""
    import os

    target, folder = Path(target).resolve(), Path(dataset).resolve()
    if not target.is_relative_to(folder.parent):
        return str(target)
    return os.path.relpath(target, folder)


def resolve_recorded(value: str, dataset: Path | str) -> Path:
    """The path a :func:`recorded_path` value names: a relative one against the dataset folder."""
    path = Path(value)
    return path if path.is_absolute() else (Path(dataset).resolve() / path).resolve()


def record_build(dataset: Path, stage: str, record: dict[str, Any], *, fresh: bool = False) -> None:
    """Add (or replace) one stage's record in ``build.json``, atomically.

    ``fresh`` (the metadata stage, which writes new tables) drops the records of every other stage:
    a split, noise variant or conversion of the previous tables no longer describes the dataset.
    """
    with locked(dataset / BUILD, "the build record", wait=30.0):  # one read-modify-write at a time
        doc = read_build(dataset)
        doc.setdefault("format", "rsprep-dataset")
        doc["rsprep_version"] = __version__
        if fresh:
            doc["stages"] = {}
        doc.setdefault("stages", {})[stage] = {"rsprep_version": __version__, **record}
        write_json_atomic(dataset / BUILD, doc)


def dataset_tables(dataset: Path) -> list[Path]:
    """The metadata tables of a dataset folder that exist (both files, then the sidecar)."""
    if not dataset.is_dir():
        raise InputNotFoundError(f"dataset folder {dataset} does not exist")
    if not (dataset / METADATA).is_file():
        raise DatasetError(f"{dataset} holds no {METADATA}; build it with `rsprep metadata --out {dataset}`")
    return [p for p in (dataset / METADATA, dataset / FLAGGED, dataset / SIDECAR) if p.is_file()]


def write_split_report(report: dict[str, Any], method: str, json_path: Path) -> Path:
    """Write a leakage report as JSON and its readable summary beside it (``.txt``); returns the text path."""
    from rsprep.core.leakage import summary

    write_json_atomic(json_path, report)
    txt = json_path.with_suffix(".txt")
    write_text_atomic(txt, summary(report, method))
    return txt
