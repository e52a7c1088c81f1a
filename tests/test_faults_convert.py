"""Faults of `rsprep convert` (issue 14): concurrent runs, full disks, kills mid-switch and mid-write."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import lmdb
import numpy as np
import pytest

from rsprep.errors import ReaderError
from rsprep.formats import geotiff
from rsprep.formats.readers import TiffReader
from rsprep.formats.resumable import PROGRESS
from rsprep.store import dataset as ds

RSPREP = str(Path(sys.executable).with_name("rsprep"))


@pytest.fixture
def ds_copy(dataset, tmp_path) -> Path:
    out = tmp_path / "ds"
    shutil.copytree(dataset, out)
    return out


def run(*args: str, limit: int | None = None, wait: bool = True):
    """``rsprep -q ARGS`` in a subprocess (under a file-size limit: a full disk)."""

    def fsize() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    cmd = [RSPREP, "-q", *args]
    kw = {"preexec_fn": fsize if limit else None, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    proc = subprocess.Popen(cmd, text=True, **kw)
    if not wait:
        return proc
    _out, err = proc.communicate(timeout=120)
    return proc.returncode, err


def tree_hash(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def build_json(ds_dir: Path) -> str:
    return hashlib.sha256((ds_dir / ds.BUILD).read_bytes()).hexdigest()


def entries(path: Path) -> int:
    env = lmdb.open(str(path), readonly=True, lock=False)
    try:
        return env.stat()["entries"]
    finally:
        env.close()


def _pause_holder_until_the_other_exits(a, b, partial: Path, lock: Path) -> None:
    """Once one run holds the lock (its partial build exists), stop it (SIGSTOP) until the other has
    exited, so the two overlap however fast a conversion is; then let it finish (SIGCONT)."""
    while a.poll() is None and b.poll() is None and not partial.exists():
        time.sleep(0.001)
    try:
        holder = json.loads(lock.read_text() or "{}").get("pid")
    except (OSError, ValueError):
        holder = None
    procs = {a.pid: a, b.pid: b}
    if holder not in procs or procs[holder].poll() is not None:
        return  # one run finished before it could be paused: the assertions below tell
    other = b if holder == a.pid else a
    os.kill(holder, signal.SIGSTOP)
    try:
        other.wait(timeout=120)
    finally:
        os.kill(holder, signal.SIGCONT)


# --------------------------------------------------------------------------------------------
# Two runs at once
# --------------------------------------------------------------------------------------------
def test_two_concurrent_lmdb_conversions_never_lose_the_output(ds_copy):
    dest = ds_copy / "lmdb"
    args = ("convert", "lmdb", str(ds_copy), "--overwrite", "--workers", "1", "--chunk", "2")
    partial = ds_copy / ".lmdb.partial"
    for _trial in range(3):  # started together; the holder is paused while the other reaches the lock
        a, b = run(*args, wait=False), run(*args, wait=False)
        _pause_holder_until_the_other_exits(a, b, partial, ds_copy / ".lmdb.lock")
        (_, err_a), (_, err_b) = a.communicate(timeout=120), b.communicate(timeout=120)
        codes = sorted((a.returncode, b.returncode))
        refused = err_a if a.returncode else err_b
        loser = a if a.returncode else b
        winner = b if a.returncode else a
        assert codes == [0, 1], (err_a, err_b)
        assert "the LMDB output" in refused and f"in use by process {winner.pid}" in refused, refused
        assert loser.pid != winner.pid
        assert entries(dest) == 93
        assert not list(ds_copy.glob(".lmdb.*")), list(ds_copy.glob(".lmdb.*"))


# --------------------------------------------------------------------------------------------
# Full disks: one error naming the file, nothing recorded, the previous output untouched
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fmt", "limit", "named"), [("zarr", 40_000, "zarr/.dataset.zarr.partial/s2/B02 rows 0-30 failed")]
)
def test_a_full_disk_fails_the_conversion_and_keeps_the_previous_output(ds_copy, fmt, limit, named):
    assert run("convert", fmt, str(ds_copy), "--workers", "1")[0] == 0
    output = {"tiff": ds_copy, "zarr": ds_copy / "zarr" / "dataset.zarr"}[fmt]
    before, recorded = tree_hash(output), build_json(ds_copy)
    code, err = run("convert", fmt, str(ds_copy), "--workers", "1", "--overwrite", limit=limit)
    assert code == 1 and named in err and str(ds_copy) in err, err
    assert "Traceback" not in err and "run the same command again to resume" in err
    partial = {"tiff": ds_copy / geotiff.PARTIAL, "zarr": ds_copy / "zarr" / ".dataset.zarr.partial"}[fmt]
    assert build_json(ds_copy) == recorded
    after = {k: v for k, v in tree_hash(output).items() if not k.startswith(".rsprep-tiff")}
    assert after == before
    # the tasks finished before are kept: Zarr's first (s2/B01, whose shard fits under the limit)
    kept = {"zarr": ["0"]}.get(fmt, [])
    assert not (partial / PROGRESS).exists() or (partial / PROGRESS).read_text().split() == kept
    if fmt == "zarr":  # and the rerun resumes them to the same bytes
        assert run("convert", fmt, str(ds_copy), "--workers", "1", "--overwrite")[0] == 0
        assert tree_hash(output) == before
        assert json.loads((ds_copy / ds.BUILD).read_text())["stages"]["convert_zarr"]["resumed_tasks"] == 1


def _kill_after(args: tuple[str, ...], log: Path, units: int) -> None:
    """Run ``rsprep ARGS`` and ``kill -9`` it once ``log`` lists ``units`` finished units."""
    proc = run(*args, wait=False)
    while proc.poll() is None and (not log.exists() or len(log.read_text().split()) < units):
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL and len(log.read_text().split()) >= units


def test_lmdb_full_disk_and_kill_then_resume_give_the_same_bytes(ds_copy):
    """A full disk, then kill -9 mid-write: each time the resumed data.mdb is byte-identical."""
    dest, log = ds_copy / "lmdb", ds_copy / ".lmdb.partial" / PROGRESS
    args = ("convert", "lmdb", str(ds_copy), "--workers", "1", "--chunk", "4")
    assert run(*args)[0] == 0
    clean, recorded = (dest / "data.mdb").read_bytes(), build_json(ds_copy)
    code, err = run(*args, "--overwrite", limit=3_000_000)
    assert code == 1 and f"writing {ds_copy / '.lmdb.partial' / 'data.mdb'} failed" in err, err
    assert "unit(s) are kept" in err and "Traceback" not in err
    assert build_json(ds_copy) == recorded and (dest / "data.mdb").read_bytes() == clean
    assert log.read_text().split()  # finished units are kept for the resume
    assert run(*args, "--overwrite")[0] == 0
    assert (dest / "data.mdb").read_bytes() == clean
    stage = json.loads((ds_copy / ds.BUILD).read_text())["stages"]["convert_lmdb"]
    assert stage["resumed_tasks"] > 0
    _kill_after((*args, "--overwrite"), log, 5)
    assert (dest / "data.mdb").read_bytes() == clean  # the kill left the output alone
    assert run(*args, "--overwrite")[0] == 0
    assert (dest / "data.mdb").read_bytes() == clean
    assert not list(ds_copy.glob(".lmdb.*"))


def test_lmdb_a_full_disk_during_the_replay_keeps_the_partial_build(ds_copy):
    """kill -9 after 5 units, then a resume on a full disk: the replay into a fresh environment fails,
    naming its file; the interrupted build is kept whole, and the next run ends in the clean bytes."""
    dest, partial = ds_copy / "lmdb", ds_copy / ".lmdb.partial"
    args = ("convert", "lmdb", str(ds_copy), "--workers", "1", "--chunk", "4")
    assert run(*args)[0] == 0
    clean = (dest / "data.mdb").read_bytes()
    _kill_after((*args, "--overwrite"), partial / PROGRESS, 5)
    logged = (partial / PROGRESS).read_text()
    code, err = run(*args, "--overwrite", limit=1_000_000)
    assert code == 1 and f"writing {partial / 'replay-0' / 'data.mdb'} failed" in err, err
    assert "run the same command again to resume" in err and "Traceback" not in err
    assert (partial / PROGRESS).read_text() == logged and not (partial / "replay-0").exists()
    assert (dest / "data.mdb").read_bytes() == clean  # the finished output was never touched
    assert run(*args, "--overwrite")[0] == 0
    assert (dest / "data.mdb").read_bytes() == clean and not partial.exists()


# --------------------------------------------------------------------------------------------
# The GeoTIFF switch: renames only, a journal, rolled forward by the next run
# --------------------------------------------------------------------------------------------
def _layout(root: Path, tag: str) -> None:
    for d in geotiff.LAYOUT_DIRS:
        (root / d / "scene").mkdir(parents=True)
        (root / d / "scene" / "file").write_text(f"{tag} {d}")


def test_an_interrupted_switch_is_rolled_forward(tmp_path):
    root = tmp_path / "root"
    _layout(root, "old")
    built = root / geotiff.PARTIAL
    _layout(built, "new")
    # the state a kill leaves after the S2 folder was switched: journal, S2 new, S1 + maps old
    (root / geotiff.SWITCH).write_text(
        json.dumps({"from": geotiff.PARTIAL, "folders": list(geotiff.LAYOUT_DIRS)})
    )
    dead = root / ".rsprep-tiff.old-999999"
    dead.mkdir()
    os.rename(root / geotiff.S2_DIR, dead / geotiff.S2_DIR)
    os.rename(built / geotiff.S2_DIR, root / geotiff.S2_DIR)
    with pytest.raises(ReaderError, match=r"\.rsprep-tiff\.switch\.json records an unfinished switch"):
        TiffReader(root)
    said = []
    assert geotiff.finish_switch(root, say=said.append)
    assert said == [f"finished the interrupted switch of the GeoTIFF layout in {root}"]
    for d in geotiff.LAYOUT_DIRS:
        assert (root / d / "scene" / "file").read_text() == f"new {d}"
    assert sorted(p.name for p in root.iterdir()) == sorted(geotiff.LAYOUT_DIRS)
    assert not geotiff.finish_switch(root)  # nothing left to do
    TiffReader(root)


def test_tiff_full_disk_and_a_kill_mid_switch(ds_copy):
    """Full disk: exit 1 naming the file, the layout untouched. kill -9 while switching: the next
    run finishes the switch and leaves one complete layout, no temporaries."""
    args = ("convert", "tiff", str(ds_copy), "--workers", "1")
    assert run(*args)[0] == 0
    layout = ds_copy / geotiff.S2_DIR
    before, recorded = tree_hash(ds_copy), build_json(ds_copy)
    code, err = run(*args, "--overwrite", limit=40_000)
    assert code == 1 and "_VV.tif failed (File too large" in err and str(ds_copy) in err, err
    assert "Traceback" not in err and "run the same command again to resume" in err
    assert build_json(ds_copy) == recorded
    assert {k: v for k, v in tree_hash(ds_copy).items() if not k.startswith(".rsprep-tiff")} == before
    assert not (ds_copy / geotiff.PARTIAL / PROGRESS).exists()  # no task finished: none recorded
    proc = run(*args, "--overwrite", wait=False)
    while proc.poll() is None and not (ds_copy / geotiff.SWITCH).exists():
        time.sleep(0.0005)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL and (ds_copy / geotiff.SWITCH).exists()  # killed mid-switch
    code, err = run(*args, "--overwrite")
    assert code == 0, err
    assert not [p.name for p in ds_copy.iterdir() if p.name.startswith(".rsprep-tiff.")]
    assert tree_hash(layout) == {
        k.split("/", 1)[1]: v for k, v in before.items() if k.startswith(geotiff.S2_DIR)
    }
    assert len(list((ds_copy / geotiff.MAPS_DIR).glob("*/*"))) == 31


@pytest.mark.parametrize("retries", [0, 6])
def test_a_full_map_grows_and_the_unit_is_written_again(tmp_path, monkeypatch, retries):
    """Where the room estimate falls short (middle inserts copy page paths), MDB_MAP_FULL does not
    fail the build: the map grows and the aborted transaction is written again."""
    from rsprep.formats import lmdb_build as writer

    real = writer.pages_needed
    monkeypatch.setattr(writer, "pages_needed", lambda values, psize: max(1, real(values, psize) // 8))
    monkeypatch.setattr(writer, "_MAP_RETRIES", retries)
    env, psize, last = writer.open_env(tmp_path)
    state, rng = {"last": last}, np.random.default_rng(0)
    units = [sorted((f"S1_{i:05d}_{u}".encode(), rng.bytes(3000)) for i in range(3000)) for u in range(2)]
    try:
        if retries == 0:  # the short estimate alone fills the map
            with pytest.raises(writer.ConvertError, match="MDB_MAP_FULL"):
                writer.write_unit(env, psize, state, tmp_path, units[0], 0)
            return
        for u, values in enumerate(units):
            writer.write_unit(env, psize, state, tmp_path, values, u)
        with env.begin() as txn:
            assert txn.stat()["entries"] == 6000
            assert all(bytes(txn.get(k)) == v for u in units for k, v in u)
    finally:
        env.close()
