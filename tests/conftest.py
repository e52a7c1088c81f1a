"""Shared fixtures: real sample data from ../shared/data and small seeded synthetic archives."""

from __future__ import annotations

import os
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
def full_archive(tmp_path_factory) -> Path:
    """Two real-size (10980 × 10980 px) neighbouring tiles, one date, GeoTIFF content, no S1 (slow)."""
    from rsprep.synth import SynthConfig, synthesize

    out = tmp_path_factory.mktemp("synth-full") / "full"
    synthesize(out, SynthConfig(tiles=2, acquisitions=1, full_size=True, s1=False, content="gtiff"))
    return out
