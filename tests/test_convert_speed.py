"""Conversion at the speed of the disk (issue 16): the fast writers give the bytes of the writers before.

LMDB: values read in threads straight into safetensors buffers, written into a writable map without a
sync per transaction, copied through the page cache; the file must stay byte for byte what the
previous writer (worker processes, ``safetensors.numpy.save``, default LMDB flags, ``env.copy``) gave.
"""

from __future__ import annotations

import hashlib
import shutil
from collections import Counter
from pathlib import Path

import lmdb
import numpy as np
import pytest

from rsprep.formats import lmdb as writer
from rsprep.formats.lmdb_pages import zero_gaps
from rsprep.formats.resumable import PROGRESS, ConvertOptions, group_plan
from rsprep.formats.sources import open_source, read_items
from rsprep.formats.store_values import RowChunks, StoreValues
from rsprep.stages.convert import convert

#: data.mdb of the demo dataset (tests/conftest.py ``dataset``) as the writer at e1f9f50 (before
#: issue 16) wrote it (`rsprep convert lmdb DS --chunk 4`, also 1024), and the digest of its keys and
#: values (:func:`items_digest`): while the values are these, the file must be these bytes.
HEAD_MDB = "62358e8fc03554208bfdfc97533c69e89f1b51ae71300766aed266f126746d4f"
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
    transaction per write unit in sorted key order (appending past the last key), default flags
    (``meminit``, no writemap, a sync per commit), ``env.copy(compact=True)``, the gaps zeroed."""
    from safetensors.numpy import save

    source = open_source(src)
    tasks, per_unit, _ = group_plan("lmdb", source, chunk)
    build = dest.with_name(dest.name + ".build")
    env = lmdb.open(str(build), map_size=1 << 30, meminit=True, max_dbs=0)
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
    info, psize = env.info(), env.stat()["psize"]
    env.set_mapsize(-(-(info["last_pgno"] + 1) * psize // (1 << 20)) * (1 << 20))
    dest.mkdir()
    env.copy(str(dest), compact=True)
    env.close()
    zero_gaps(dest / "data.mdb", psize)
    shutil.rmtree(build)


@pytest.mark.parametrize(("workers", "chunk"), [(1, 4), (2, 0)])
def test_lmdb_bytes_equal_the_previous_writer(ds_copy, tmp_path, workers, chunk):
    reference_lmdb(ds_copy, tmp_path / "reference", chunk or 1024)
    convert("lmdb", ds_copy, tmp_path / "new", ConvertOptions(workers=workers, chunk=chunk))
    assert items_digest(tmp_path / "new") == items_digest(tmp_path / "reference")
    assert sha(tmp_path / "new" / "data.mdb") == sha(tmp_path / "reference" / "data.mdb")
    # the demo's values as recorded (upstream stages may change them): then the recorded file
    if items_digest(tmp_path / "new") == DEMO_ITEMS:
        assert sha(tmp_path / "new" / "data.mdb") == HEAD_MDB


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
        assert (partial / writer.BOOT).read_text().strip() == "synced"  # the orderly stop synced it
        assert (partial / PROGRESS).read_text().split()
        (partial / writer.BOOT).write_text(boot + "\n")
        said: list[str] = []
        result = convert("lmdb", ds_copy, dest, ConvertOptions(chunk=4, overwrite=True), say=said.append)
        assert (result.resumed_tasks > 0) == resumed, said
        assert any("machine restarted" in m for m in said) != resumed
        assert sha(dest / "data.mdb") == sha(clean / "data.mdb")


def test_zero_gaps_zeroes_overflow_tails_and_header_padding(tmp_path):
    """A writable map leaves old bytes in an overflow run's last page and in ``mp_pad``: zeroed."""
    import struct

    src, dst = tmp_path / "src", tmp_path / "dst"
    rng = np.random.default_rng(1)
    values = {f"k{i:03d}".encode(): rng.bytes(int(rng.integers(5000, 30000))) for i in range(40)}
    with lmdb.open(str(src), map_size=64 << 20) as env:
        with env.begin(write=True) as txn:
            for k, v in values.items():
                txn.put(k, v, append=True)
        psize = env.stat()["psize"]
        dst.mkdir()
        env.copy(str(dst), compact=True)
    data = dst / "data.mdb"
    zero_gaps(data, psize)
    clean = data.read_bytes()
    raw, planted, pgno = bytearray(clean), 0, 2
    while pgno < len(raw) // psize:
        base = pgno * psize
        raw[base + 8 : base + 10] = b"\x5a\x5a"  # mp_pad
        flags, pages = (
            struct.unpack_from("<H", raw, base + 10)[0],
            struct.unpack_from("<I", raw, base + 12)[0],
        )
        if flags & 0x04:  # an overflow run: garbage after its value, at the very end of its last page
            end = base + pages * psize
            if raw[end - 1] == 0:
                raw[end - 1] = 0xCD
                planted += 1
            pgno += pages
        else:
            pgno += 1
    assert planted > 10
    data.write_bytes(bytes(raw))
    zero_gaps(data, psize)
    assert data.read_bytes() == clean
    with lmdb.open(str(dst), readonly=True, lock=False) as env, env.begin() as txn:
        assert {k: bytes(v) for k, v in txn.cursor()} == values
