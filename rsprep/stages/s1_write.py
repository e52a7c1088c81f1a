"""What both S1 stages write into a tile store (the scene pairing of :mod:`rsprep.stages.s1` and the
BigEarthNet v1.0 patches of :mod:`rsprep.stages.s1_v1`): ``s1.zarr`` and ``s1.parquet``
(docs/workstore.md)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rsprep.core.grid import TileGrid
from rsprep.inputs.s1 import FIX
from rsprep.stages.runner import StageResult
from rsprep.stages.s1_pair import Pairing
from rsprep.store.workstore import TileStore, consolidate, create_patch_array

STAGE = "s1"


def result(
    store: TileStore, status: str, valid: int, paired: int, t0: float, excluded: Sequence[str]
) -> StageResult:
    """What an S1 stage reports of a store: ``patches`` counts the valid S2 patches (those that can have
    a partner); ``counts`` paired and valid; warnings: the patches excluded by ``--skip-bad-s1``."""
    path, seconds = str(store.path), time.perf_counter() - t0
    warnings = [f"excluded (--skip-bad-s1): {e.removesuffix('; ' + FIX)}" for e in excluded]
    counts = {"paired": paired, "valid": valid}
    return StageResult(STAGE, path, status, path, valid, seconds, counts=counts, warnings=warnings)


def write_arrays(
    path: Path, pairing: Pairing, pols: Sequence[str], grid: TileGrid, m: int, attrs: dict[str, Any]
) -> None:
    """The ``m`` paired patches of every polarisation as a zarr v3 group at ``path``; ``attrs`` (e.g.
    ``resampling``, ``source``) join every array's polarisation, units and resolution."""
    import zarr

    root = zarr.open_group(path, mode="w", zarr_format=3)
    for pol in pols:
        arr = create_patch_array(
            root,
            pol,
            shape=(m, grid.pixels(10), grid.pixels(10)),
            dtype="float32",
            chunk_patches=grid.n,
            fill_value=np.nan,
            attrs={"polarisation": pol, "units": "dB", "resolution_m": 10, **attrs},
        )
        if m:
            arr[:] = pairing.arrays[pol]
    consolidate(path)


def write_table(path: Path, table, pairing: Pairing) -> None:
    """The per-patch pairing table (partner, its product, time gap, array row, status) as Parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = pa.table(
        {
            "index": table["index"],
            "patch_id": table["patch_id"],
            "s1_name": pa.array(pairing.s1_name, pa.string()),
            "s1_product": pa.array(pairing.scene, pa.string()),
            "s1_delta_hours": pa.array(pairing.delta_hours, pa.float64()),
            "s1_index": pa.array(pairing.array_index, pa.int32()),
            "s1_status": pa.array(pairing.status, pa.string()),
        }
    )
    pq.write_table(out, path, compression="zstd")
