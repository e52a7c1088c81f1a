"""``croissant.json`` (rsprep.card.croissant): loaded and validated by mlcroissant, its records equal to
the metadata tables, its checksums equal to the files', its bytes the same for the same folder."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from rsprep.card.croissant import CONFORMS_TO, CROISSANT, croissant_dict, write_croissant
from rsprep.store import dataset as ds

mlc = pytest.importorskip("mlcroissant")
pytestmark = [  # rdflib's and pandas' own deprecations inside mlcroissant, not ours
    pytest.mark.filterwarnings("ignore::DeprecationWarning:rdflib"),
    pytest.mark.filterwarnings("ignore:The inplace keyword:DeprecationWarning"),
]

#: What mlcroissant recommends but a folder does not record (no version or date unless the card has one).
RECOMMENDED = tuple(f'"https://schema.org/{p}" is recommended' for p in ("datePublished", "version"))


@pytest.fixture()
def full_copy(full_dataset, tmp_path) -> Path:
    return Path(shutil.copytree(full_dataset, tmp_path / "ds"))


def _load(path: Path):
    dataset = mlc.Dataset(jsonld=path)
    issues = dataset.metadata.issues
    assert not issues.errors, issues.report()
    assert all(any(r in w for r in RECOMMENDED) for w in issues.warnings), issues.report()
    return dataset


def _validate_cli(path: Path) -> None:
    exe = Path(sys.executable).parent / "mlcroissant"
    r = subprocess.run([str(exe), "validate", "--jsonld", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def _records(dataset, record_set: str) -> list[dict]:
    out = []
    for rec in dataset.records(record_set):
        row = {}
        for key, value in rec.items():
            name = key.split("/", 1)[1]
            if isinstance(value, bytes):
                value = value.decode()
            elif isinstance(value, list):
                value = [v.decode() if isinstance(v, bytes) else v for v in value]
            row[name] = value
        out.append(row)
    return out


def _expected(path: Path) -> list[dict]:
    table = pq.read_table(path)
    return table.select([f.name for f in ds.METADATA_SCHEMA]).to_pylist()


def _check_records(dataset, folder: Path) -> None:
    pairs = [("patches", ds.METADATA), ("flagged_patches", ds.FLAGGED)]
    for record_set, name in pairs:
        got, want = _records(dataset, record_set), _expected(folder / name)
        assert len(want) > 0
        assert [r["patch_id"] for r in got] == [r["patch_id"] for r in want]  # same ids, same order
        assert [r["labels"] for r in got] == [r["labels"] for r in want]
        assert got == want


def _check_sha256(doc: dict, folder: Path) -> int:
    objects = [d for d in doc["distribution"] if d["@type"] == "cr:FileObject"]
    for d in objects:
        assert d["sha256"] == hashlib.sha256((folder / d["contentUrl"]).read_bytes()).hexdigest()
    return len(objects)


def test_full_dataset_loads_validates_and_reads(full_copy):
    path = write_croissant(full_copy)
    assert path == full_copy / CROISSANT
    _validate_cli(path)
    dataset = _load(path)
    _check_records(dataset, full_copy)
    doc = json.loads(path.read_text())
    assert doc["conformsTo"] == CONFORMS_TO and "datePublished" not in doc
    assert _check_sha256(doc, full_copy) == 4  # metadata, flagged, patches.parquet, lmdb/data.mdb
    by_id = {d["@id"]: d for d in doc["distribution"]}
    assert by_id["lmdb"]["contentUrl"] == "lmdb/data.mdb"
    assert by_id["patches_sidecar"]["encodingFormat"] == "application/x-parquet"
    assert by_id["zarr"]["@type"] == "cr:FileSet" and by_id["zarr"]["includes"] == "zarr/dataset.zarr/**"
    for fid, top in (("geotiff_s2", "BigEarthNet-S2"), ("geotiff_s1", "BigEarthNet-S1")):
        assert by_id[fid]["includes"] == f"{top}/**/*.tif"
        assert any(full_copy.glob(by_id[fid]["includes"]))
    assert by_id["geotiff_reference_maps"]["encodingFormat"] == "image/tiff"
    types = {f["name"]: f["dataType"] for f in doc["recordSet"][0]["field"]}
    assert types["contains_seasonal_snow"] == "sc:Boolean" and types["labels"] == "sc:Text"


def test_official_tables_load_validate_and_read(official_copy):
    path = write_croissant(official_copy)
    _validate_cli(path)
    dataset = _load(path)
    _check_records(dataset, official_copy)
    doc = json.loads(path.read_text())
    assert _check_sha256(doc, official_copy) == 2
    assert {d["@id"] for d in doc["distribution"]} == {"metadata", "flagged_metadata"}
    assert "Clasen" in doc["citeAs"] and "reBEN" in doc["citeAs"]


def test_same_folder_same_bytes(full_copy, tmp_path):
    a = write_croissant(full_copy).read_bytes()
    assert write_croissant(full_copy).read_bytes() == a
    other = Path(shutil.copytree(full_copy, tmp_path / "elsewhere"))
    (other / CROISSANT).unlink()
    assert write_croissant(other).read_bytes() == a  # no absolute paths, no clock
    assert not list(full_copy.glob(f".{CROISSANT}.tmp-*"))


def test_facts_override_and_dates_only_when_recorded(official_copy):
    facts = {
        "name": "my-reben",
        "description": "a rebuilt reBEN",
        "license": "https://example.org/license",
        "version": "2.0.0",
        "datePublished": "2024-07-04",
        "patches": 42,  # not a dataset-level property: ignored
    }
    doc = croissant_dict(official_copy, facts)
    assert all(doc[k] == facts[k] for k in ("name", "description", "license"))
    assert doc["datePublished"] == "2024-07-04" and "patches" not in doc
    path = write_croissant(official_copy, facts)
    dataset = mlc.Dataset(jsonld=path)
    assert not dataset.metadata.issues.errors and not dataset.metadata.issues.warnings
    assert "datePublished" not in croissant_dict(official_copy)


def test_progress_counts_hashed_bytes(official_copy):
    seen = []
    croissant_dict(official_copy, progress=lambda done, total: seen.append((done, total)))
    sizes = sorted((official_copy / n).stat().st_size for n in (ds.METADATA, ds.FLAGGED))
    assert sorted(t for d, t in seen if d == t) == sizes


def test_folder_without_tables_is_a_clear_error(tmp_path):
    with pytest.raises(ds.DatasetError, match=r"metadata\.parquet"):
        croissant_dict(tmp_path)
