"""Fault injection, work-store integrity (issue 14 item 4): a deleted, cut or corrupt Zarr chunk.

Each test damages a copy of the demo work store and its dataset (the fixtures are read-only), runs
the real CLI in a subprocess, and asserts exit 1, the one-line message (store, array, chunk, patches,
the stage to re-run) and that the outputs already there are unchanged.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rsprep.formats.resumable import ConvertOptions
from rsprep.stages.convert import convert
from rsprep.stages.stack import stack_store
from rsprep.store import dataset as ds
from rsprep.store.chunks import group_inventory
from rsprep.store.workstore import INVENTORY, MANIFEST, S1_ARRAYS, S2_ARRAYS, TileStore, find_stores

# Row 1 of this store holds patches of the dataset (metadata.parquet), so convert reads its chunk 1.
STORE = "S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP"
RSPREP = Path(sys.executable).with_name("rsprep")


@pytest.fixture()
def copy(reference_work, dataset, tmp_path) -> tuple[Path, Path]:
    """(work store, dataset) copied to ``tmp_path``, the dataset's build.json naming the copied store."""
    work, dset = tmp_path / "work", tmp_path / "ds"
    shutil.copytree(reference_work, work)
    shutil.copytree(dataset, dset)
    build = json.loads((dset / ds.BUILD).read_text())
    build["stages"]["metadata"]["work"] = str(work.resolve())
    (dset / ds.BUILD).write_text(json.dumps(build))
    return work, dset


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(RSPREP), *args], capture_output=True, text=True, check=False, timeout=300)


def sha(path: Path) -> str:
    """One digest of every file below ``path`` (names and bytes)."""
    h = hashlib.sha256()
    for p in sorted(q for q in path.rglob("*") if q.is_file()):
        h.update(str(p.relative_to(path)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def assert_refused(proc, array: str, key: str, what: str, fix: str) -> None:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    line = next(x for x in proc.stderr.splitlines() if f"{STORE}/{array}: chunk {key}" in x)
    assert what in line and fix in line and "--force" in line
    assert f"{STORE}_0_1 to {STORE}_3_1" in line or "of the paired patches" in line  # the patch range


def test_every_stage_records_its_chunk_inventory(reference_work):
    for store in find_stores(reference_work):
        inventory = store.manifest[INVENTORY]
        assert set(inventory) == {S2_ARRAYS, S1_ARRAYS, "reference.zarr"}
        for group, arrays in inventory.items():
            assert arrays == group_inventory(store.path / group)
            assert all(chunks for chunks in arrays.values()) or group == S1_ARRAYS


def test_deleted_chunk_fails_stack_and_convert_naming_it(copy):
    work, dset = copy
    convert("lmdb", dset, None, ConvertOptions())
    lmdb_before, s2_before = sha(dset / "lmdb"), sha(work / STORE / S2_ARRAYS)
    (work / STORE / S2_ARRAYS / "B04" / "c" / "1" / "0" / "0").unlink()

    stack = run("stack", str(work), "-j", "1")
    assert_refused(stack, "s2.zarr/B04", "c/1/0/0", "is missing", "rsprep patch ")
    assert "1 of 4 store(s) failed" in stack.stderr
    assert stack.stdout.count("done") == 3  # the other stores finished
    assert not (work / STORE / "stack.zarr").exists()
    assert "stack" not in TileStore.open(work / STORE).manifest["stages"]

    conv = run("convert", "lmdb", str(dset), "-j", "1", "--overwrite")
    assert_refused(conv, "s2.zarr/B04", "c/1/0/0", "is missing", "rsprep patch ")
    assert sha(dset / "lmdb") == lmdb_before
    assert sha(work / STORE / S2_ARRAYS) != s2_before  # only the deleted chunk differs


def test_corrupt_chunk_fails_without_traceback_and_keeps_outputs(copy):
    work, dset = copy
    stack_store(TileStore.open(work / STORE))
    convert("lmdb", dset, None, ConvertOptions())
    lmdb_before, stack_before = sha(dset / "lmdb"), sha(work / STORE / "stack.zarr")
    chunk = work / STORE / S2_ARRAYS / "B04" / "c" / "1" / "0" / "0"
    raw = bytearray(chunk.read_bytes())
    raw[16:] = bytes(b ^ 0xFF for b in raw[16:])  # same size: only decoding finds it
    chunk.write_bytes(bytes(raw))

    stack = run("stack", str(work / STORE), "-j", "1", "--force")
    assert_refused(stack, "s2.zarr/B04", "c/1/0/0", "cannot be decoded", "rsprep patch ")
    assert sha(work / STORE / "stack.zarr") == stack_before
    conv = run("convert", "lmdb", str(dset), "-j", "2", "--overwrite")
    assert_refused(conv, "s2.zarr/B04", "c/1/0/0", "cannot be decoded", "rsprep patch ")
    assert sha(dset / "lmdb") == lmdb_before


def test_cut_or_extra_chunk_of_a_later_stage_is_refused(copy):
    work, dset = copy
    maps = work / STORE / "reference.zarr" / "reference_map" / "c"
    chunk = maps / "1" / "0" / "0"
    size = chunk.stat().st_size
    chunk.write_bytes(chunk.read_bytes()[: size // 2])
    conv = run("convert", "lmdb", str(dset), "-j", "1")
    what = f"holds {size // 2} bytes, not the {size} that the reference stage wrote"
    assert_refused(conv, "reference.zarr/reference_map", "c/1/0/0", what, "rsprep reference --work")
    assert not (dset / "lmdb").exists()

    chunk.unlink()
    vv = work / STORE / S1_ARRAYS / "VV" / "c"
    shutil.copyfile(vv / "0" / "0" / "0", vv / "0" / "0" / "9")  # a stray file among the chunks
    s1 = TileStore.open(work / STORE)
    with pytest.raises(ValueError, match=r"s1\.zarr/VV: chunk c/0/0/9 .* is not in the inventory"):
        s1.zarr(S1_ARRAYS)


def test_intact_store_converts_byte_identically_to_unchecked_reading(copy, tmp_path, monkeypatch):
    _work, dset = copy
    convert("lmdb", dset, tmp_path / "checked", ConvertOptions())
    import zarr

    def unchecked(self, name):  # the reader before inventories: plain zarr, no listing
        return zarr.open_group(self.path / name, mode="r")

    monkeypatch.setattr(TileStore, "zarr", unchecked)
    convert("lmdb", dset, tmp_path / "plain", ConvertOptions())
    assert sha(tmp_path / "checked") == sha(tmp_path / "plain")


def test_store_without_inventory_is_checked_against_its_valid_patches(copy):
    work, dset = copy
    for store in find_stores(work):  # as written before inventories existed
        manifest = json.loads((store.path / MANIFEST).read_text())
        del manifest[INVENTORY]
        (store.path / MANIFEST).write_text(json.dumps(manifest))
    other = sorted(p for p in work.iterdir() if p.name != STORE)[0]
    assert stack_store(TileStore.open(other)).status == "done"
    adopted = TileStore.open(other).manifest[INVENTORY]  # the stack stage took the earlier ones too
    assert set(adopted) == {S2_ARRAYS, S1_ARRAYS, "reference.zarr", "stack.zarr"}

    (work / STORE / S2_ARRAYS / "B11" / "c" / "1" / "0" / "0").unlink()  # 4 valid patches
    stack = run("stack", str(work / STORE), "-j", "1")
    assert_refused(stack, "s2.zarr/B11", "c/1/0/0", "is missing (it holds valid patches)", "rsprep patch ")
    conv = run("convert", "lmdb", str(dset), "-j", "1")
    assert_refused(conv, "s2.zarr/B11", "c/1/0/0", "is missing (it holds valid patches)", "rsprep patch ")
    assert not (dset / "lmdb").exists()
