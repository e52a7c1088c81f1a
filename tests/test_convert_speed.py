"""Conversion at the speed of the disk (issue 16): the fast writers give the bytes of the writers before.

LMDB: values read in threads straight into safetensors buffers, written into a writable map without a
sync per transaction, and that environment is the output; its values must stay those of the previous
writer (worker processes, ``safetensors.numpy.save``, default LMDB flags), and its file must depend on
the data alone: the same bytes at any worker count and ``--chunk``, and after any interruption.
"""

from __future__ import annotations

import hashlib
import shutil
from collections import Counter
from pathlib import Path

import lmdb
import pytest

from rsprep.formats import lmdb as writer
from rsprep.formats import lmdb_build
from rsprep.formats.resumable import PROGRESS, ConvertOptions, group_plan
from rsprep.formats.sources import open_source, read_items
from rsprep.formats.store_values import RowChunks, StoreValues
from rsprep.stages.convert import convert

#: data.mdb of the demo dataset (tests/conftest.py ``dataset``) as this writer writes it, and the digest
#: of its keys and values (:func:`items_digest`, the same as the writer at e1f9f50, before issue 16):
#: while the values are these, the file must be these bytes.
NEW_MDB = "a292a91d2b95adde21e24612f6f7fd8ba252f07e4cca973689c36869b128e057"
DEMO_ITEMS = "9efa2f43d670d46da24cec2a77c93c987f4b22227fcbff9fd81d48588ea59f7d"


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def items_digest(path: Path) -> str:
    h = hashlib.sha256()
    with lmdb.open(str(path), readonly=True, lock=False) as env, env.begin() as txn:
        for k, v in txn.cursor():
            h.update(hashlib.sha256(k).digest() + hashlib.sha256(v).digest())
    return h.hexdigest()


def reference_lmdb(src: Path, dest: Path, chunk: int) -> None:
    """The writer before issue 16, in one process: ``safetensors.numpy.save`` of each value, one
    transaction per write unit in sorted key order (appending past the last key), default flags."""
    from safetensors.numpy import save

    source = open_source(src)
    tasks, per_unit, _ = group_plan("lmdb", source, chunk)
    env = lmdb.open(str(dest), map_size=1 << 30, meminit=True, max_dbs=0)
    last, units = None, {}
    for unit, group, items in tasks:
        arrays = read_items(source.spec, group, items)
        units.setdefault(unit, []).extend(
            (it.key.encode(), save(a)) for it, a in zip(items, arrays, strict=True)
        )
    for unit in range(len(per_unit)):
        with env.begin(write=True) as txn:
            for k, v in sorted(units[unit]):
                append = last is None or k > last
                txn.put(k, v, append=append)
                last = k if append else last
    env.close()


def test_lmdb_values_equal_the_previous_writer_and_its_file_the_data_alone(ds_copy, tmp_path):
    reference_lmdb(ds_copy, tmp_path / "reference", 1024)
    digests = set()
    for workers, chunk in ((1, 4), (2, 0), (2, 7)):
        dest = tmp_path / f"new-{workers}-{chunk}"
        result = convert("lmdb", ds_copy, dest, ConvertOptions(workers=workers, chunk=chunk))
        assert items_digest(dest) == items_digest(tmp_path / "reference")
        digests.add(sha(dest / "data.mdb"))
        # the file ends at its last page; the map size in its meta pages is that rounded up to 1 MiB
        used = result.extra["used_bytes"]
        assert (dest / "data.mdb").stat().st_size == used
        with lmdb.open(str(dest), readonly=True, lock=False) as env:
            assert env.info()["map_size"] == result.extra["map_size"] == -(-used >> 20) << 20
        assert sorted(p.name for p in dest.iterdir()) == ["data.mdb"]
    assert len(digests) == 1
    # the demo's values as recorded (upstream stages may change them): then the recorded file
    if items_digest(dest) == DEMO_ITEMS:
        assert digests == {NEW_MDB}


def test_every_s2_and_map_chunk_is_decompressed_once(ds_copy, tmp_path, monkeypatch):
    reads: Counter = Counter()
    real = RowChunks.read

    def counted(self, k):
        reads[(self.store.name, self.group, self.array, k)] += 1
        return real(self, k)

    monkeypatch.setattr(RowChunks, "read", counted)
    convert("lmdb", ds_copy, tmp_path / "lmdb", ConvertOptions(workers=2))
    # S2 and maps: a unit is a store, so each chunk once; S1: once per S1 scene and tile it holds
    s2 = [key for key in reads if key[1] == "s2.zarr"]
    assert s2 and max(n for key, n in reads.items() if key[1] != "s1.zarr") == 1, reads.most_common(3)
    stores = {key[0] for key in s2}
    assert stores == {it.store for it in open_source(ds_copy).items["s2"]} and {key[2] for key in s2} == {
        "B01",
        "B02",
        "B03",
        "B04",
        "B05",
        "B06",
        "B07",
        "B08",
        "B8A",
        "B09",
        "B11",
        "B12",
    }


def test_store_values_are_safetensors_save(ds_copy):
    from safetensors.numpy import save

    source = open_source(ds_copy)
    values = StoreValues(source.spec.work)
    for group in ("s1", "s2", "map"):
        items = source.items[group]
        for store, part in values.pieces(group, items):
            keys, buf = values.read(group, store, part)
            expected = [save(a) for a in read_items(source.spec, group, part)]
            assert keys == [it.key.encode() for it in part]
            assert [bytes(row) for row in buf] == expected


def test_a_partial_build_of_an_earlier_boot_is_discarded_unless_synced(ds_copy, tmp_path, monkeypatch):
    """Unsynced pages survive a killed process (the page cache keeps them), not a restart of the
    machine: a partial build recorded under another boot is rebuilt; one synced at an orderly stop
    (an error, Ctrl-C) is resumed."""
    clean, dest = tmp_path / "clean", tmp_path / "lmdb"
    convert("lmdb", ds_copy, clean, ConvertOptions(chunk=4))
    real, calls = writer.read_piece, {"n": 0}

    def failing(payload):
        calls["n"] += 1
        if calls["n"] == 8:
            raise KeyboardInterrupt
        return real(payload)

    partial = tmp_path / ".lmdb.partial"
    for boot, resumed in (("synced", True), ("0e0e0e0e-another-boot", False)):
        shutil.rmtree(partial, ignore_errors=True)
        calls["n"] = 0
        monkeypatch.setattr(writer, "read_piece", failing)
        with pytest.raises(KeyboardInterrupt):
            convert("lmdb", ds_copy, dest, ConvertOptions(chunk=4, overwrite=True))
        monkeypatch.setattr(writer, "read_piece", real)
        assert (partial / lmdb_build.BOOT).read_text().strip() == "synced"  # the orderly stop synced it
        assert (partial / PROGRESS).read_text().split()
        (partial / lmdb_build.BOOT).write_text(boot + "\n")
        said: list[str] = []
        result = convert("lmdb", ds_copy, dest, ConvertOptions(chunk=4, overwrite=True), say=said.append)
        assert (result.resumed_tasks > 0) == resumed, said
        assert any("machine restarted" in m for m in said) != resumed
        assert sha(dest / "data.mdb") == sha(clean / "data.mdb")


def test_resumes_replay_the_interrupted_runs_and_end_in_the_same_bytes(ds_copy, tmp_path, monkeypatch):
    """Interrupted after some units, again while replaying them, and again after the replay, with a
    room estimate so short that units abort on a full map and are written again: every resume
    replays the committed units into a fresh environment and ends in the clean run's bytes."""
    real_pages = lmdb_build.pages_needed
    monkeypatch.setattr(lmdb_build, "pages_needed", lambda v, psize: max(1, real_pages(v, psize) // 6))
    clean, dest = tmp_path / "clean", tmp_path / "lmdb"
    convert("lmdb", ds_copy, clean, ConvertOptions(workers=2))
    partial = tmp_path / ".lmdb.partial"
    real_read, real_write = writer.read_piece, lmdb_build.write_unit
    calls = {"read": 0, "replayed": 0}

    def read_until(n):
        def read(payload):
            calls["read"] += 1
            if calls["read"] == n:
                raise KeyboardInterrupt
            return real_read(payload)

        return read

    def write(env, psize, state, where, values, kept):
        if where.name.startswith(lmdb_build.REPLAY):
            calls["replayed"] += 1
            if calls["replayed"] == 2:
                raise KeyboardInterrupt  # killed in the middle of a replay
        return real_write(env, psize, state, where, values, kept)

    monkeypatch.setattr(lmdb_build, "write_unit", write)
    logged = []
    # the demo's 10 units are read in 36 pieces: stopping at the 9th read leaves 2 units written
    for stop in (9, None, 10, None):  # None: the replay is interrupted instead
        calls["read"], calls["replayed"] = 0, 0 if stop is None else 10
        monkeypatch.setattr(writer, "read_piece", read_until(stop) if stop else real_read)
        with pytest.raises(KeyboardInterrupt):
            convert("lmdb", ds_copy, dest, ConvertOptions(workers=2, overwrite=True))
        logged.append(len((partial / PROGRESS).read_text().split()))
    calls["replayed"] = 10
    assert logged[0] == logged[1] >= 1 and logged[3] == logged[2] > logged[0], logged
    assert [p.name for p in partial.glob(f"{lmdb_build.REPLAY}*")] == ["replay-0"]  # the active one
    junk = partial / f"{lmdb_build.REPLAY}1"  # what a replay killed with -9 leaves: dropped
    junk.mkdir()
    (junk / "data.mdb").write_bytes(b"half a replay")
    said: list[str] = []
    monkeypatch.setattr(writer, "read_piece", real_read)
    result = convert("lmdb", ds_copy, dest, ConvertOptions(workers=2, overwrite=True), say=said.append)
    assert result.resumed_tasks > 0, said
    assert sha(dest / "data.mdb") == sha(clean / "data.mdb")
    assert not partial.exists()
