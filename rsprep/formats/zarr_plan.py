"""The tasks of the Zarr writer: runs of consecutive shards per image array (docs/convert.md, "The Zarr
writer").

A work store keeps a row of 91 patches per chunk while sorted patch_ids run down the grid's columns,
so any ≥ 91 consecutive patches of a store touch (nearly) every chunk of it. A task therefore reads
one array for a *run* of shards, every work-store chunk it needs once, and writes each shard as soon
as all its rows are in (the stores of a run are read one after the other, in the order of their first
row). Runs hold at most :data:`RUN_PATCHES` rows, and at most :data:`RUN_MEMORY` bytes of shards are
held at once (:func:`peak_shards`, the same order as the task's). Where a store is split between two
runs its chunks touched on both sides are read by both: each cut is put where that costs least, within
the second half of the longest allowed run; :func:`chunk_reads` counts the reads exactly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: Rows (patches) of one run at most: 64 shards of 1024, about 8 full work stores (14 of average size).
RUN_PATCHES = 65536
#: The shard buffers one task holds at once, at most (a full store's S1 rows are ≈ 480 MB).
RUN_MEMORY = 640 * 2**20


@dataclass(frozen=True)
class GroupRows:
    """Where each output row's value of one group lies: store number (-1: none), row in that store's
    array, and its chunk as one number (store * 2**32 + chunk row; -1: none)."""

    store: np.ndarray
    src: np.ndarray
    key: np.ndarray

    @classmethod
    def of(cls, items, stores: list[str], per: dict[str, int]) -> GroupRows:
        """From the items of every row (None: no value), the stores' names and their rows per chunk."""
        number = {name: i for i, name in enumerate(stores)}
        store = np.array([-1 if it is None else number[it.store] for it in items], dtype=np.int64)
        src = np.array([-1 if it is None else it.row for it in items], dtype=np.int64)
        chunk_rows = np.array([per.get(name, 1) for name in stores] + [1], dtype=np.int64)
        key = np.where(store >= 0, store * 2**32 + src // chunk_rows[store], -1)
        return cls(store, src, key)


def chunk_rows(array: Path) -> int:
    """The rows per chunk of a work-store array (from its ``zarr.json``)."""
    meta = json.loads((array / "zarr.json").read_text())
    return int(meta["chunk_grid"]["configuration"]["chunk_shape"][0])


def peak_shards(store: np.ndarray, shard: int, s0: int, s1: int) -> int:
    """How many shards of the run ``[s0, s1)`` are held at once when its stores are read in the order of
    their first row and each shard is written after the last store it needs."""
    st = store[s0 * shard : s1 * shard]
    valid = st >= 0
    if not valid.any():
        return 0
    names, first = np.unique(st[valid], return_index=True)
    rank = np.empty(len(names), np.int64)
    rank[np.argsort(first)] = np.arange(len(names))
    pos = rank[np.searchsorted(names, st[valid])]
    sid = np.flatnonzero(valid) // shard
    lo = np.full(s1 - s0, len(names), np.int64)
    hi = np.full(s1 - s0, -1, np.int64)
    np.minimum.at(lo, sid, pos)
    np.maximum.at(hi, sid, pos)
    live = hi >= 0
    diff = np.zeros(len(names) + 1, np.int64)
    np.add.at(diff, lo[live], 1)
    np.add.at(diff, hi[live] + 1, -1)
    return int(np.cumsum(diff).max())


def _distinct(key: np.ndarray) -> np.ndarray:
    u = np.unique(key)
    return u[u >= 0]


def plan_runs(
    rows: GroupRows, shard: int, row_bytes: int, run_patches: int | None = None, memory: int | None = None
) -> list[tuple[int, int]]:
    """The runs ``(first shard, end shard)`` covering all shards of one group's arrays."""
    run_patches = RUN_PATCHES if run_patches is None else run_patches
    memory = RUN_MEMORY if memory is None else memory
    n = len(rows.store)
    shards = -(-n // shard)
    most = max(1, run_patches // shard)
    fit = max(1, memory // (shard * row_bytes))
    runs: list[tuple[int, int]] = []
    s0 = 0
    while s0 < shards:
        hi = min(shards, s0 + most)
        while hi > s0 + 1 and peak_shards(rows.store, shard, s0, hi) > fit:
            hi -= 1
        if hi == shards:
            runs.append((s0, hi))
            break

        def cost(j: int, s0: int = s0) -> tuple[int, int]:
            left = _distinct(rows.key[s0 * shard : j * shard])
            right = _distinct(rows.key[j * shard : min(shards, j + most) * shard])
            return len(np.intersect1d(left, right, assume_unique=True)), -j

        cut = min(range(max(s0 + 1, s0 + (hi - s0 + 1) // 2), hi + 1), key=cost)
        runs.append((s0, cut))
        s0 = cut
    return runs


def chunk_reads(rows: GroupRows, shard: int, runs: list[tuple[int, int]]) -> tuple[int, int]:
    """(chunk reads of one array over all runs, distinct chunks): their difference is read twice."""
    reads = sum(len(_distinct(rows.key[a * shard : b * shard])) for a, b in runs)
    return reads, len(_distinct(rows.key))
