"""``croissant.json``: MLCommons Croissant 1.1 metadata of a dataset folder (docs/card.md).

The description names the files that are there (the metadata tables, the LMDB, the Zarr store, the
GeoTIFF layout) with the sha256 of each single file, and one record set per metadata table whose
fields are the official columns, so ``mlcroissant.Dataset(jsonld=DATASET/croissant.json)`` reads the
patches straight from the parquet files. The bytes depend on the folder's files only: no clock.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rsprep import __version__
from rsprep.formats.geotiff import MAPS_DIR, S1_DIR, S2_DIR
from rsprep.formats.zarr import STORE_NAME
from rsprep.store import dataset as ds
from rsprep.store.atomic import write_text_atomic

CROISSANT = "croissant.json"
CONFORMS_TO = "http://mlcommons.org/croissant/1.1"
PARQUET = "application/x-parquet"
#: Where ``rsprep convert`` puts its outputs in a dataset folder (docs/dataset.md#folder-layout).
LMDB_FILE = "lmdb/data.mdb"
ZARR_STORE = f"zarr/{STORE_NAME}"
#: Bytes hashed between two progress reports.
_BLOCK = 1 << 24

#: The JSON-LD context of Croissant 1.1 datasets (the terms of mlcroissant's standard context and of
#: the 1.1 examples in github.com/mlcommons/croissant/tree/main/datasets/1.1).
CONTEXT: dict[str, Any] = {
    "@language": "en",
    "@vocab": "https://schema.org/",
    "arrayShape": "cr:arrayShape",
    "citeAs": "cr:citeAs",
    "column": "cr:column",
    "conformsTo": "dct:conformsTo",
    "containedIn": "cr:containedIn",
    "cr": "http://mlcommons.org/croissant/",
    "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "dct": "http://purl.org/dc/terms/",
    "equivalentProperty": "cr:equivalentProperty",
    "examples": {"@id": "cr:examples", "@type": "@json"},
    "extract": "cr:extract",
    "field": "cr:field",
    "fileObject": "cr:fileObject",
    "fileProperty": "cr:fileProperty",
    "fileSet": "cr:fileSet",
    "format": "cr:format",
    "includes": "cr:includes",
    "isArray": "cr:isArray",
    "isLiveDataset": "cr:isLiveDataset",
    "jsonPath": "cr:jsonPath",
    "key": "cr:key",
    "md5": "cr:md5",
    "parentField": "cr:parentField",
    "path": "cr:path",
    "rai": "http://mlcommons.org/croissant/RAI/",
    "recordSet": "cr:recordSet",
    "references": "cr:references",
    "regex": "cr:regex",
    "repeated": "cr:repeated",
    "replace": "cr:replace",
    "samplingRate": "cr:samplingRate",
    "sc": "https://schema.org/",
    "separator": "cr:separator",
    "source": "cr:source",
    "subField": "cr:subField",
    "transform": "cr:transform",
}

CITATION = (
    "@inproceedings{clasen2025refinedbigearthnet,\n"
    "  title={{reBEN}: Refined BigEarthNet Dataset for Remote Sensing Image Analysis},\n"
    "  author={Clasen, Kai Norman and Hackel, Leonard and Burgert, Tom and Sumbul, Gencer and "
    'Demir, Beg{\\"u}m and Markl, Volker},\n'
    "  booktitle={IEEE International Geoscience and Remote Sensing Symposium (IGARSS)},\n"
    "  year={2025},\n"
    "  note={arXiv:2407.03653 (2024)}\n"
    "}"
)

#: Dataset-level properties; ``facts`` may replace any of them (and add ``version``, ``datePublished``).
DEFAULTS: dict[str, str] = {
    "name": "reBEN",
    "description": (
        "reBEN (refined BigEarthNet, BigEarthNet v2.0): Sentinel-2 L2A patches of 1200 m x 1200 m with "
        "their Sentinel-1 partner, a pixel-level CORINE Land Cover 2018 reference map and BEN-19 "
        f"multi-labels, built with rsprep {__version__}."
    ),
    "license": "https://cdla.dev/permissive-1-0/",
    "url": "https://bigearth.net",
    "citeAs": CITATION,
}
_FACT_KEYS = (*DEFAULTS, "version", "datePublished")

#: (column, dataType, array, description) of the official metadata schema (docs/dataset.md).
COLUMNS: tuple[tuple[str, str, bool, str], ...] = (
    ("patch_id", "sc:Text", False, "Sentinel-2 patch name"),
    ("labels", "sc:Text", True, "BEN-19 class names of the patch, alphabetical"),
    ("split", "sc:Text", False, "train, validation or test"),
    ("country", "sc:Text", False, "country of the patch"),
    ("s1_name", "sc:Text", False, "name of the paired Sentinel-1 patch"),
    ("s2v1_name", "sc:Text", False, "BigEarthNet v1.0 name of the patch"),
    ("contains_seasonal_snow", "sc:Boolean", False, "the patch contains seasonal snow"),
    ("contains_cloud_or_shadow", "sc:Boolean", False, "the patch contains cloud or cloud shadow"),
)

#: (id, file, description, record set id) of the tables a dataset folder may hold.
TABLES = (
    ("metadata", ds.METADATA, "patches with neither flag (official reBEN schema)", "patches"),
    ("flagged_metadata", ds.FLAGGED, "patches with seasonal snow, cloud or shadow", "flagged_patches"),
    ("patches_sidecar", ds.SIDECAR, "rsprep's GeoParquet sidecar: location, date, fractions", None),
)
#: (id, top folder, description) of the GeoTIFF layout's file sets.
TIFF_SETS = (
    ("geotiff_s2", S2_DIR, "Sentinel-2 bands, one GeoTIFF per band"),
    ("geotiff_s1", S1_DIR, "Sentinel-1 VV and VH, one GeoTIFF per band"),
    ("geotiff_reference_maps", MAPS_DIR, "CORINE Land Cover reference maps"),
)

Progress = Callable[[int, int], None]


def sha256_file(path: Path, progress: Progress | None = None) -> str:
    """The hex sha256 of a file, read in blocks; ``progress(bytes_done, bytes_total)`` after each."""
    total, done = path.stat().st_size, 0
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            h.update(block)
            done += len(block)
            if progress is not None:
                progress(done, total)
    return h.hexdigest()


def croissant_dict(
    dataset: Path, facts: dict | None = None, progress: Progress | None = None
) -> dict[str, Any]:
    """The Croissant description of ``dataset`` (a dict, JSON-serialisable).

    ``facts`` overrides ``name``, ``description``, ``license``, ``url``, ``citeAs`` and may add
    ``version`` and ``datePublished`` (only recorded dates: nothing is taken from the clock); other
    keys are ignored. ``progress`` receives the bytes hashed of each file.
    """
    dataset = Path(dataset)
    ds.dataset_tables(dataset)  # the folder exists and holds metadata.parquet
    known = {k: v for k, v in (facts or {}).items() if k in _FACT_KEYS and v is not None}
    meta = {**DEFAULTS, **known}
    distribution = _distribution(dataset, progress)
    ids = {d["@id"] for d in distribution}
    tables = [(rs, fid, f"{desc} ({name})") for fid, name, desc, rs in TABLES if rs and fid in ids]
    return {
        "@context": CONTEXT,
        "@type": "sc:Dataset",
        "conformsTo": CONFORMS_TO,
        **{k: meta[k] for k in ("name", "description", "license", "url", "citeAs")},
        **{k: str(meta[k]) for k in ("version", "datePublished") if k in meta},
        "distribution": distribution,
        "recordSet": [_record_set(*t) for t in tables],
    }


def write_croissant(dataset: Path, facts: dict | None = None, progress: Progress | None = None) -> Path:
    """Write ``DATASET/croissant.json`` (atomically); returns its path."""
    path = Path(dataset) / CROISSANT
    doc = croissant_dict(dataset, facts, progress)
    write_text_atomic(path, json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    return path


def _distribution(dataset: Path, progress: Progress | None) -> list[dict[str, Any]]:
    """FileObjects (tables, LMDB) and FileSets (GeoTIFF layout, Zarr store) present in the folder."""
    out = []
    for fid, name, desc, _ in TABLES:
        if (dataset / name).is_file():
            out.append(_file_object(fid, name, PARQUET, desc, sha256_file(dataset / name, progress)))
    if (dataset / LMDB_FILE).is_file():
        desc = "LMDB environment of rico-hdl/ConfigILM: safetensors values keyed by patch (docs/formats.md)"
        sha = sha256_file(dataset / LMDB_FILE, progress)
        out.append(_file_object("lmdb", LMDB_FILE, "application/x-lmdb", desc, sha))
    for fid, top, desc in TIFF_SETS:
        if (dataset / top).is_dir():
            out.append(_file_set(fid, f"{top}/**/*.tif", "image/tiff", desc))
    if (dataset / ZARR_STORE / "zarr.json").is_file():
        desc = "Zarr v3 store: every array has one row per patch (docs/formats.md)"
        out.append(_file_set("zarr", f"{ZARR_STORE}/**", "application/x-zarr", desc))
    return out


def _file_object(fid: str, rel: str, fmt: str, description: str, sha256: str) -> dict[str, Any]:
    return {
        "@type": "cr:FileObject",
        "@id": fid,
        "name": rel,
        "description": description,
        "contentUrl": rel,
        "encodingFormat": fmt,
        "sha256": sha256,
    }


def _file_set(fid: str, includes: str, fmt: str, description: str) -> dict[str, Any]:
    return {
        "@type": "cr:FileSet",
        "@id": fid,
        "name": fid,
        "description": description,
        "encodingFormat": fmt,
        "includes": includes,
    }


def _record_set(rid: str, file_id: str, description: str) -> dict[str, Any]:
    """One record per table row, its fields the official columns (labels an array of class names)."""
    fields = []
    for column, dtype, array, desc in COLUMNS:
        field = {
            "@type": "cr:Field",
            "@id": f"{rid}/{column}",
            "name": column,
            "description": desc,
            "dataType": dtype,
            "source": {"fileObject": {"@id": file_id}, "extract": {"column": column}},
        }
        if array:
            field |= {"isArray": True, "arrayShape": "-1"}
        fields.append(field)
    return {
        "@type": "cr:RecordSet",
        "@id": rid,
        "name": rid,
        "description": description,
        "key": {"@id": f"{rid}/patch_id"},
        "field": fields,
    }
