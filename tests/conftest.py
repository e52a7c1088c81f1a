"""Shared fixtures: real sample data from ../shared/data and small seeded synthetic archives."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

SHARED_DATA = Path(
    os.environ.get("RSPREP_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)


def _shared(rel: str) -> Path:
    path = SHARED_DATA / rel
    if not path.exists():
        if os.environ.get("RSPREP_REQUIRE_SHARED"):
            pytest.fail(f"real sample data {path} is missing (RSPREP_REQUIRE_SHARED is set)")
        pytest.skip(f"real sample data {path} is not available")
    return path


@pytest.fixture(scope="session")
def shared_data():
    """Accessor for a path below ../shared/data (skips, or fails in CI, when absent)."""
    return _shared


@pytest.fixture(scope="session")
def t29unu(shared_data) -> Path:
    return shared_data("s2-l2a-T29UNU-partial")


@pytest.fixture(scope="session")
def t22hbd(shared_data) -> Path:
    return shared_data("s2-l2a-T22HBD-downsampled")


@pytest.fixture(scope="session")
def archive(tmp_path_factory) -> Path:
    """The default demo archive (2 tiles × 2 dates, 4 × 4 patches, JPEG2000, S1), seed 0."""
    from rsprep.synth import SynthConfig, synthesize

    out = tmp_path_factory.mktemp("synth") / "archive"
    synthesize(out, SynthConfig())
    return out


@pytest.fixture(scope="session")
def manifest(archive) -> dict:
    from rsprep.synth import load_manifest

    return load_manifest(archive)


@pytest.fixture(scope="session")
def reference_work(archive, manifest, tmp_path_factory) -> Path:
    """The demo archive through patch, s1 and reference: a complete work store."""
    from rsprep.stages.patch import patch_products
    from rsprep.stages.reference import reference_work as run_reference
    from rsprep.stages.s1 import s1_work

    out = tmp_path_factory.mktemp("dswork") / "work"
    patch_products([archive / p["path"] for p in manifest["products"]], out=out)
    s1_results, _ = s1_work(out, archive / "s1")
    assert all(r.status == "done" for r in s1_results)
    clc = archive / manifest["clc"]["path"]
    results, _ = run_reference(out, clc)
    assert all(r.status == "done" for r in results)
    return out


@pytest.fixture(scope="session")
def dataset(reference_work, archive, manifest, tmp_path_factory) -> Path:
    """``rsprep metadata`` of the demo work store with the synthetic country file."""
    from rsprep.stages.metadata import MetadataOptions, build_metadata

    out = tmp_path_factory.mktemp("dataset") / "ds"
    build_metadata(reference_work, out, MetadataOptions(countries=archive / manifest["countries"]["path"]))
    return out


@pytest.fixture(scope="session")
def full_dataset(dataset, tmp_path_factory) -> Path:
    """The demo dataset with every output: a mixed noise variant, LMDB, Zarr (--stack) and GeoTIFFs.

    Read-only: tests that damage it work on ``shutil.copytree(full_dataset, tmp_path / "ds")`` (the
    copy's build.json still names the same work store).
    """
    import shutil

    from rsprep.core.noise import NoiseOptions
    from rsprep.formats.resumable import ConvertOptions
    from rsprep.stages.convert import convert
    from rsprep.stages.noise import make_noise

    out = tmp_path_factory.mktemp("full-dataset") / "ds"
    shutil.copytree(dataset, out)
    make_noise(out, NoiseOptions(mode="mixed", sub_rate=0.2, add_rate=0.1))
    convert("lmdb", out, None, ConvertOptions())
    convert("zarr", out, None, ConvertOptions(stack=True, shard_patches=8))
    convert("tiff", out, None, ConvertOptions())
    return out


@pytest.fixture()
def official_copy(shared_data, tmp_path) -> Path:
    """The official sample tables in a writable folder (the shared files are read-only)."""
    import shutil

    out = tmp_path / "official"
    out.mkdir()
    for name in ("metadata.parquet", "metadata_for_patches_with_snow_cloud_or_shadow.parquet"):
        shutil.copyfile(shared_data("reben-v2-metadata-sample") / name, out / name)
    return out


@pytest.fixture(scope="session")
def overlap_work(tmp_path_factory) -> Path:
    """Two neighbouring 12 × 12-patch tiles (whose complete patches overlap), two dates each, no S1."""
    from rsprep.stages.patch import patch_products
    from rsprep.stages.reference import reference_work as run_reference
    from rsprep.synth import SynthConfig, load_manifest, synthesize

    root = tmp_path_factory.mktemp("overlap")
    arch = root / "archive"
    synthesize(arch, SynthConfig(tiles=2, patches_per_side=12, acquisitions=2, s1=False, content="gtiff"))
    m = load_manifest(arch)
    work = root / "work"
    patch_products([arch / p["path"] for p in m["products"]], out=work)
    results, _ = run_reference(work, arch / m["clc"]["path"])
    assert all(r.status == "done" for r in results)
    return work


@pytest.fixture
def ds_copy(dataset, tmp_path) -> Path:
    """A private copy of the demo dataset folder without its converted outputs (a conversion records
    itself in the copy's build.json, which still names the work store)."""
    out = tmp_path / "ds"
    shutil.copytree(
        dataset, out, ignore=shutil.ignore_patterns("lmdb", "zarr", "BigEarthNet-*", "Reference_Maps")
    )
    return out
