"""The facts a dataset card states (docs/card.md#card-facts), computed from the dataset's own files.

Every count comes from the parquet files (both metadata files; the sidecar for seasons), vectorised with
pyarrow and numpy, never from build.json's counts. ``card_facts`` returns one JSON-ready dict (which
``readme.render`` writes out and ``croissant.write_croissant`` describes) and the arrays the figures
are drawn from. Outputs are described from their own files (LMDB values, Zarr metadata, layout names).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rsprep import __version__
from rsprep.core.grid import season
from rsprep.core.splits import SPLITS
from rsprep.store import dataset as ds
from rsprep.validation.view import DatasetView

STATS = "stats.json"
NO_SPLIT = "(none)"
NO_COUNTRY = "(none)"
SEASONS = ("winter", "spring", "summer", "autumn")
#: Hugging Face's size_categories buckets: (exclusive upper bound, name).
SIZE_BUCKETS = tuple(
    (10 ** (3 + i), name)
    for i, name in enumerate(
        ("n<1K", "1K<n<10K", "10K<n<100K", "100K<n<1M", "1M<n<10M", "10M<n<100M", "100M<n<1B")
    )
)
#: Licences whose Croissant form is a URL.
LICENCE_URLS = {"cdla-permissive-1.0": "https://cdla.dev/permissive-1-0/"}


@dataclass
class CardData:
    """The tables as arrays, for the figures: one row per patch of both metadata files."""

    table: pa.Table | None
    patch_ids: list[str]
    hot: np.ndarray  # (N, classes) bool, native (paper) order
    splits: np.ndarray  # (N,) str
    sidecar: pa.Table | None = None
    side: np.ndarray | None = None  # (N,) row of each patch in the sidecar, -1 where it has none


def card_facts(view: DatasetView) -> tuple[dict[str, Any], CardData]:
    """Everything the card states, JSON-ready (docs/card.md#card-facts), and the arrays behind it."""
    nom, threshold, rule_source = view.label_rule
    facts: dict[str, Any] = {
        "dataset": view.root.resolve().name,
        "kind": view.kind,
        "rsprep_version": __version__,
        "label_rule": {"nomenclature": nom.name, "max_unlabeled": threshold, "source": rule_source},
        "classes": {
            "native_order": nom.native_order_name,
            "native": list(nom.classes),
            "alphabetical": list(nom.alphabetical),
            "clc_codes": [list(c) for c in nom.codes],
        },
    }
    facts.update(_identity(view, nom.name))
    table, files = _tables(view)
    facts["tables"] = files
    if table is None:
        ids = table_less_patches(view)
        facts["patches"] = len(ids)
        data = CardData(None, ids, np.zeros((0, nom.size), bool), np.array([], dtype=object))
    else:
        facts["patches"] = table.num_rows
        data = _counts(table, nom.classes, facts)
        _sidecar(view, data, facts)
    facts["size_category"] = next((name for top, name in SIZE_BUCKETS if facts["patches"] < top), "n>1B")
    facts["outputs"] = describe_outputs(view, table)
    facts["provenance"] = _provenance(view)
    facts["stats"] = _stats(view.root)
    return facts, data


def _identity(view: DatasetView, nomenclature: str) -> dict[str, Any]:
    """Name and licence: recorded in build.json (top level or its ``recipe``) or the reBEN defaults."""
    recipe = view.build.get("recipe") or {}
    licence = view.build.get("license") or recipe.get("license")
    if licence:
        source = "build.json"
    elif nomenclature == "ben19":
        licence, source = "cdla-permissive-1.0", "the reBEN default (CDLA-Permissive-1.0; none recorded)"
    else:
        licence, source = "other", "none recorded and the labels are not reBEN's BEN-19"
    name = recipe.get("pretty_name") or "reBEN (BigEarthNet v2.0)" + ", built with rsprep" * (
        view.kind == "rsprep"
    )
    licence = str(licence).lower()
    return {
        "pretty_name": name,
        "licence": {"id": licence, "url": LICENCE_URLS.get(licence), "source": source},
        "license": LICENCE_URLS.get(licence, licence),  # Croissant's form: a URL where one is known
    }


def _tables(view: DatasetView) -> tuple[pa.Table | None, dict[str, Any]]:
    """Both metadata files in the official schema, sorted by patch_id, and rows per file."""
    files: dict[str, Any] = {}
    parts = []
    for key, tf in (("metadata", view.metadata), ("flagged", view.flagged), ("sidecar", view.sidecar)):
        if tf is None:
            continue
        if tf.table is None:
            raise ds.DatasetError(f"{tf.path} is not a readable parquet file ({tf.error}); rebuild it")
        files[key] = {"file": tf.path.name, "rows": tf.table.num_rows}
        if key != "sidecar":
            part = ds.conform_metadata(tf.table, tf.path)
            parts.append(part.append_column("_file", pa.array([key] * part.num_rows, pa.string())))
    if not parts:
        return None, files
    return pa.concat_tables(parts).sort_by("patch_id"), files


def _names(column: pa.ChunkedArray, missing: str) -> np.ndarray:
    return np.asarray(pc.fill_null(column, missing).to_numpy(zero_copy_only=False), dtype=object)


def _ordered(counts: dict[str, int], first: tuple[str, ...] = ()) -> dict[str, int]:
    """``first`` in its order, then the rest by name."""
    return {k: counts[k] for k in (*[f for f in first if f in counts], *sorted(set(counts) - set(first)))}


def _counts(table: pa.Table, classes: tuple[str, ...], facts: dict[str, Any]) -> CardData:
    """Splits, classes, countries, cardinality and co-occurrence, vectorised over the rows."""
    labels = table.column("labels").combine_chunks()
    flat = pc.list_flatten(labels)
    parents = pc.list_parent_indices(labels).to_numpy()
    idx = pc.fill_null(pc.index_in(flat, value_set=pa.array(classes, pa.string())), -1).to_numpy()
    hot = np.zeros((table.num_rows, len(classes)), dtype=bool)
    hot[parents[idx >= 0], idx[idx >= 0]] = True
    splits = _names(table.column("split"), NO_SPLIT)
    flagged = _names(table.column("_file"), "") == "flagged"
    per_split = {}
    for name in _ordered(dict.fromkeys(splits.tolist(), 0), (*SPLITS, NO_SPLIT)):
        rows = splits == name
        n_flagged = int((rows & flagged).sum())
        per_split[name] = {
            "metadata": int(rows.sum()) - n_flagged,
            "flagged": n_flagged,
            "total": int(rows.sum()),
        }
    facts["splits"] = per_split
    facts["classes"]["per_split"] = {s: hot[splits == s].sum(axis=0).astype(int).tolist() for s in per_split}
    facts["classes"]["total"] = hot.sum(axis=0).astype(int).tolist()
    facts["classes"]["unknown_labels"] = int((idx < 0).sum())
    countries = pc.value_counts(pc.fill_null(table.column("country"), NO_COUNTRY)).to_pylist()
    pairs = sorted(((c["values"], c["counts"]) for c in countries), key=lambda kv: (-kv[1], kv[0]))
    facts["countries"] = dict(pairs)
    lengths = pc.fill_null(pc.list_value_length(labels), 0).to_numpy()
    hist = np.bincount(lengths) if len(lengths) else np.zeros(1, int)
    facts["cardinality"] = {
        "mean": float(lengths.mean()) if len(lengths) else 0.0,
        "min": int(lengths.min()) if len(lengths) else 0,
        "max": int(lengths.max()) if len(lengths) else 0,
        "histogram": {str(k): int(v) for k, v in enumerate(hist) if v},
    }
    m = hot.astype(np.float64)
    facts["cooccurrence"] = np.rint(m.T @ m).astype(np.int64).tolist()
    return CardData(table, table.column("patch_id").to_pylist(), hot, splits)


def _sidecar(view: DatasetView, data: CardData, facts: dict[str, Any]) -> None:
    """Seasons from the sidecar (or each patch id's date), and the sidecar row of every patch."""
    side = None
    season_col = None
    if view.sidecar is not None and "patch_id" in view.sidecar.table.column_names:
        sc = view.sidecar.table
        side = pc.fill_null(pc.index_in(data.table.column("patch_id"), value_set=sc.column("patch_id")), -1)
        side = side.to_numpy()
        data.sidecar, data.side = sc, side
        if "season" in sc.column_names:
            season_col = _names(sc.column("season"), "unknown")
    seasons = _seasons_from_ids(data.table.column("patch_id"))
    from_sidecar = 0
    if season_col is not None:
        have = side >= 0
        seasons[have] = season_col[side[have]]
        from_sidecar = int(have.sum())
    values, counts = np.unique(seasons, return_counts=True)
    facts["seasons"] = {
        "counts": _ordered(dict(zip(values.tolist(), counts.astype(int).tolist(), strict=True)), SEASONS),
        "from_sidecar": from_sidecar,
        "from_patch_id": len(seasons) - from_sidecar,
    }


def _seasons_from_ids(ids: pa.ChunkedArray) -> np.ndarray:
    """Meteorological season of the sensing date in each patch id (``..._MSIL2A_YYYYMMDDTHHMMSS_...``)."""
    parts = pc.extract_regex(ids, r"^[^_]+_[^_]+_(?P<year>\d{4})(?P<month>\d{2})\d{2}T")
    month = pc.fill_null(pc.cast(pc.struct_field(parts, "month"), pa.int64()), 0).to_numpy()
    lut = np.array(["unknown"] + [season(datetime(2000, m, 1)) for m in range(1, 13)], dtype=object)
    return lut[np.clip(month, 0, 12)]


#: build.json facts about one run, not about the data (an interrupted conversion resumed shows
#: ``resumed_tasks``): left out of the card, so a resumed build gives the bytes of an uninterrupted one.
RUN_ONLY = {"seconds", "resumed_tasks"}


def _provenance(view: DatasetView) -> dict[str, Any] | None:
    """build.json without wall-clock seconds, and each work-store product's stages and quality."""
    if not view.build:
        return None
    stages = {
        name: {k: _recorded(k, _data_only(v), view.root) for k, v in rec.items() if k not in RUN_ONLY}
        for name, rec in sorted(view.build.get("stages", {}).items())
    }
    out: dict[str, Any] = {"rsprep_version": view.build.get("rsprep_version"), "stages": stages}
    out["products"] = None
    if view.work is not None:
        from rsprep.store.workstore import find_stores

        try:
            stores = find_stores(view.work)
        except (OSError, ValueError):
            stores = []
        out["products"] = [_product(s) for s in stores]
    out["work"] = ds.recorded_path(view.work, view.root) if view.work is not None else None
    return out


def _data_only(value: Any) -> Any:
    """``value`` without :data:`RUN_ONLY` keys at any depth (e.g. the LMDB writer's ``extra.seconds``)."""
    if isinstance(value, dict):
        return {k: _data_only(v) for k, v in value.items() if k not in RUN_ONLY}
    return value


def _recorded(key: str, value: Any, root: Path) -> Any:
    """A build.json path (``path``, ``source_path``, ``work``) as the card shows it: relative to the
    dataset folder where it lies inside or beside it, so the card does not depend on where it was built."""
    if (key == "work" or key.endswith("path")) and isinstance(value, str) and Path(value).is_absolute():
        return ds.recorded_path(value, root)
    return value


def _product(store) -> dict[str, Any]:
    stages = store.manifest.get("stages", {})
    return {
        "store": store.name,
        "quality_passed": store.product.get("quality_passed"),
        "failed_quality_checks": store.product.get("failed_quality_checks", []),
        "stages": {
            name: {k: rec.get(k) for k in ("inputs_digest", "parameters", "rsprep_version")}
            for name, rec in sorted(stages.items())
        },
    }


def _stats(root: Path) -> dict[str, Any] | None:
    """``stats.json`` (the rsprep-stats contract, docs/card.md#statistics) when present and readable."""
    path = root / STATS
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        return {"error": f"{STATS} is not valid JSON ({exc}); re-run `rsprep stats`"}
    if not isinstance(doc, dict) or doc.get("format") != "rsprep-stats" or doc.get("version") != 1:
        return {"error": f"{STATS} is not a version-1 rsprep-stats file; re-run `rsprep stats`"}
    return doc


# --------------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------------
def table_less_patches(view: DatasetView) -> list[str]:
    """The S2 patches of a folder without metadata tables: its GeoTIFF layout's, else its LMDB's."""
    from rsprep.formats.geotiff import scan

    if view.tiff:
        return scan(view.root, "s2")
    if view.lmdb is not None:
        from rsprep.formats.readers import LmdbReader

        keys = LmdbReader(view.lmdb).keys()
        return [k for k in keys if k.startswith("S2") and not k.endswith("_reference_map")]
    return []


def describe_outputs(view: DatasetView, table: pa.Table | None) -> dict[str, Any]:
    """Per output that exists: where it is and the exact names and order of what it stores."""
    first = table.column("patch_id")[0].as_py() if table is not None and table.num_rows else None
    s1 = table.column("s1_name")[0].as_py() if first else None
    out: dict[str, Any] = {}
    if view.lmdb is not None:
        out["lmdb"] = _lmdb(view.lmdb, view.root, first, s1)
    if view.zarr is not None:
        out["zarr"] = _zarr(view.zarr, view.root)
    if view.tiff:
        from rsprep.formats.geotiff import scan

        s2 = first or next(iter(scan(view.root, "s2")), None)
        out["tiff"] = _tiff(s2, s1 if first else next(iter(scan(view.root, "s1")), None))
    return out


def _lmdb(path: Path, root: Path, patch_id: str | None, s1_name: str | None) -> dict[str, Any]:
    """Value names as stored under the first S2, S1 and map keys (safetensors keeps them sorted)."""
    from rsprep.core.values import map_key
    from rsprep.formats.readers import LmdbReader

    reader = LmdbReader(path)
    with reader.env.begin(buffers=True) as txn:
        cursor = txn.cursor()
        if patch_id is None and cursor.set_range(b"S2"):
            patch_id = bytes(cursor.key()).decode()
        if s1_name is None and cursor.set_range(b"S1"):
            s1_name = bytes(cursor.key()).decode()
    keys: dict[str, Any] = {"s2": patch_id, "s1": s1_name, "map": map_key(patch_id) if patch_id else None}
    values = {}
    for group, key in keys.items():
        if key is not None and key in reader:
            values[group] = sorted(reader.get(key))  # a dict: readers select arrays by name
    return {
        "path": str(path.relative_to(root)),
        "entries": len(reader),
        "example_keys": keys,
        "values": values,
    }


def _zarr(path: Path, root: Path) -> dict[str, Any]:
    """Arrays (shape, dtype) and the orders the root, ``labels`` and ``s2_stacked`` attributes name."""
    doc = json.loads((path / "zarr.json").read_text())
    meta = doc.get("consolidated_metadata", {}).get("metadata", {})
    arrays = {
        name: {"shape": m.get("shape"), "dtype": m.get("data_type")}
        for name, m in sorted(meta.items())
        if m.get("node_type") == "array"
    }
    attrs = doc.get("attributes", {})
    stacked = meta.get("s2_stacked", {}).get("attributes")
    return {
        "path": str(path.relative_to(root)),
        "arrays": arrays,
        "bands": attrs.get("bands"),
        "s1_bands": attrs.get("s1_bands"),
        "class_order": attrs.get("class_order"),
        "classes": attrs.get("classes"),
        "s2_stacked": {k: stacked.get(k) for k in ("bands", "resampling")} if stacked else None,
    }


def _tiff(patch_id: str | None, s1_name: str | None) -> dict[str, Any]:
    """One patch's folder per group and its file names, with the key as ``<key>``, in band order."""
    from rsprep.formats.geotiff import band_files

    out: dict[str, Any] = {}
    for group, key in (("s2", patch_id), ("s1", s1_name), ("map", patch_id)):
        if key:
            files = list(band_files(group, key).values())
            out[group] = {
                "folder": str(files[0].parent),
                "files": [f.name.replace(key, "<key>") for f in files],
            }
    return out
