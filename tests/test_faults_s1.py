"""S1 faults are failures (issue 14, item 5): a bad S1 file fails the stores it could serve.

Each fault is made on a copy of the synthetic archive's real GeoTIFFs: a file cut short, a damaged
header, bytes overwritten in the middle of one DEFLATE block, a scene whose VH file is missing. The
bad scene is the same-day partner of the two summer stores; the winter stores never need it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import rasterio
from typer.testing import CliRunner

from rsprep.cli.main import app
from rsprep.inputs.s1 import BadS1Error, find_scenes
from rsprep.stages.patch import patch_products
from rsprep.stages.s1 import pair_tile
from rsprep.store.workstore import TileStore

FAULTS = ("truncated", "header", "tile", "no-vh")


@pytest.fixture(scope="module")
def patched(archive, manifest, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("s1faults") / "work"
    patch_products([archive / p["path"] for p in manifest["products"]], out=out)
    return out


@pytest.fixture()
def paired(patched, archive, tmp_path) -> tuple[Path, Path]:
    """A work store paired once with intact scenes, and its own copy of the scenes."""
    work, s1 = tmp_path / "work", tmp_path / "s1"
    shutil.copytree(patched, work)
    shutil.copytree(archive / "s1", s1)
    r = _s1(work, s1)
    assert r.exit_code == 0, r.output
    return work, s1


def _s1(work: Path, s1: Path, *extra: str):
    return CliRunner().invoke(app, ["s1", "--s1", str(s1), "--work", str(work), "--workers", "1", *extra])


def _scenes(manifest) -> tuple[str, str]:
    """(the summer same-day scene, the complete scene 2.5 days earlier)."""
    bad = next(s["name"] for s in manifest["s1"] if "_20170613T" in s["name"])
    other = next(s["name"] for s in manifest["s1"] if s["full_coverage"])
    return bad, other


def _stores(work: Path, manifest) -> tuple[list[Path], list[Path]]:
    """(the summer stores, in the order T33UUP, T33UVP; the winter stores)."""
    summer = [work / p["patch_prefix"] for p in manifest["products"] if p["season"] == "summer"]
    winter = [work / p["patch_prefix"] for p in manifest["products"] if p["season"] != "summer"]
    return sorted(summer), winter


def _damage(s1: Path, scene: str, fault: str) -> Path:
    """Make ``fault`` in ``scene``; returns the file the error must name."""
    vv, vh = s1 / scene / f"{scene}_VV.tif", s1 / scene / f"{scene}_VH.tif"
    if fault == "truncated":
        os.truncate(vv, vv.stat().st_size * 6 // 10)
        return vv
    if fault == "header":
        with open(vv, "r+b") as fh:
            fh.write(os.urandom(16))
        return vv
    if fault == "tile":  # block (0, 0): only the T33UUP store's patches read it
        with rasterio.open(vh) as ds:
            off = int(ds.get_tag_item("BLOCK_OFFSET_0_0", "TIFF", bidx=1))
            n = int(ds.get_tag_item("BLOCK_SIZE_0_0", "TIFF", bidx=1))
        with open(vh, "r+b") as fh:
            fh.seek(off + n // 2)
            fh.write(b"\xff" * 64)
        return vh
    vh.unlink()
    return vv


def _hashes(store: Path) -> dict[str, str]:
    files = [store / "manifest.json", store / "s1.parquet", *sorted((store / "s1.zarr").rglob("*"))]
    return {str(f): hashlib.sha256(f.read_bytes()).hexdigest() for f in files if f.is_file()}


def _record(store: Path) -> dict:
    return json.loads((store / "manifest.json").read_text())["stages"]["s1"]


@pytest.mark.parametrize("fault", FAULTS)
def test_bad_s1_file_fails_its_stores_only(paired, manifest, fault):
    work, s1 = paired
    scene, _ = _scenes(manifest)
    summer, winter = _stores(work, manifest)
    failing = summer[:1] if fault == "tile" else summer
    before = {s: _hashes(s) for s in failing}
    bad = _damage(s1, scene, fault)

    r = _s1(work, s1)
    assert r.exit_code == 1, r.output
    assert f"{len(failing)} of 4 store(s) failed" in r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("  ")]
    assert len(errors) == len(failing)
    for store, line in zip(failing, errors, strict=True):
        assert f"store {store.name}: Sentinel-1 file {bad}" in line
        assert "re-download it or pass --skip-bad-s1" in line
    assert "Traceback" not in r.output
    for store in failing:
        assert _hashes(store) == before[store], f"{store.name}: previous s1 outputs changed"
    for store in [s for s in summer + winter if s not in failing]:
        assert f"done    {store}:" in r.stdout
        assert _record(store)["excluded"] == []


@pytest.mark.parametrize("fault", FAULTS)
def test_skip_bad_s1_records_the_exclusion(paired, manifest, fault):
    work, s1 = paired
    scene, other = _scenes(manifest)
    summer, winter = _stores(work, manifest)
    affected = summer[:1] if fault == "tile" else summer
    bad = _damage(s1, scene, fault)

    r = _s1(work, s1, "--skip-bad-s1")
    assert r.exit_code == 0, r.output
    for store in affected:
        rec = _record(store)
        assert len(rec["excluded"]) == 1 and str(bad) in rec["excluded"][0]
        assert f"rsprep: warning: {store}: excluded (--skip-bad-s1): Sentinel-1 file {bad}" in r.stderr
        # without the bad scene its patches are paired with the scene days away, as recorded
        t = TileStore.open(store).table("s1.parquet").to_pandas()
        assert set(t.s1_product.dropna()) == {other}
        assert t.s1_delta_hours.dropna().abs().min() > 48
    for store in [s for s in summer + winter if s not in affected]:
        assert _record(store)["excluded"] == [] and f"{store}:" not in r.stderr

    # the exclusion is no licence for later runs: without the flag the stores fail again
    r = _s1(work, s1)
    assert r.exit_code == 1 and f"store {affected[0].name}: Sentinel-1 file {bad}" in r.stderr
    r = _s1(work, s1, "--skip-bad-s1")
    assert r.exit_code == 0 and f"warning: {affected[0]}: excluded" in r.stderr


def test_corrupt_tile_in_worker_processes(paired, manifest):
    work, s1 = paired
    scene, _ = _scenes(manifest)
    summer, winter = _stores(work, manifest)
    before = _hashes(summer[0])
    bad = _damage(s1, scene, "tile")
    r = CliRunner().invoke(app, ["s1", "--s1", str(s1), "--work", str(work), "--workers", "2"])
    assert r.exit_code == 1 and "1 of 4 store(s) failed" in r.stderr
    assert f"store {summer[0].name}: Sentinel-1 file {bad}: block (0, 0) is corrupt" in r.stderr
    assert _hashes(summer[0]) == before
    assert all(f"done    {s}:" in r.stdout for s in [summer[1], *winter])


def test_gdal_read_error_while_warping_names_the_file(paired, manifest):
    """A block GDAL fails to decode inside its warper (LZW, not checked before): WarpOperationError."""
    work, s1 = paired
    scene, _ = _scenes(manifest)
    summer, _ = _stores(work, manifest)
    vv = s1 / scene / f"{scene}_VV.tif"
    with rasterio.open(vv) as ds:
        profile, data, tags = ds.profile, ds.read(1), ds.tags()
    profile.update(compress="lzw", predictor=1)
    with rasterio.open(vv, "w", **profile) as ds:
        ds.update_tags(**tags)
        ds.write(data, 1)
    with rasterio.open(vv) as ds:
        off = int(ds.get_tag_item("BLOCK_OFFSET_0_0", "TIFF", bidx=1))
    with open(vv, "r+b") as fh:
        fh.seek(off + 500)
        fh.write(np.random.default_rng(0).bytes(3000))
    disc = find_scenes(s1)
    assert not disc.bad  # its layout is whole
    store = TileStore.open(summer[0])
    sensing = datetime.fromisoformat(store.product["sensing_time"].replace("Z", "+00:00"))
    valid = np.ones(store.grid.count, bool)
    with pytest.raises(BadS1Error, match=f"Sentinel-1 file {vv}: cannot be read .*--skip-bad-s1"):
        pair_tile(store.grid, valid, sensing, disc.scenes)
    pairing = pair_tile(store.grid, valid, sensing, disc.scenes, skip_bad=True)
    assert len(pairing.excluded) == 1 and str(vv) in pairing.excluded[0]
    assert scene not in set(pairing.scene) and any(pairing.scene)
