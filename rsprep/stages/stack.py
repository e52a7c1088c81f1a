"""``rsprep stack``: resample 20 m and 60 m bands to 10 m and stack them in the documented order.

Reads the patch stage's native-resolution arrays and writes ``stack.zarr/s2_stacked`` of shape
(N, 12, P/10, P/10) in the order B01 … B08, B8A, B09, B11, B12, with the resampling method in the
attributes (never silent). Upsampling works within each patch (``rsprep.core.kernels``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rsprep.core.bands import BANDS_BY_NAME, SPECTRAL_BANDS
from rsprep.core.kernels import RESAMPLING, to_side
from rsprep.errors import InvalidParameterError
from rsprep.stages.runner import DONE, SKIPPED, StageResult, check_workers, execute, store_tasks
from rsprep.store.atomic import building, digest
from rsprep.store.workstore import (
    S2_ARRAYS,
    STACK_ARRAYS,
    TileStore,
    WorkStoreError,
    consolidate,
    create_patch_array,
    find_stores,
    stage_record,
)

STAGE = "stack"


@dataclass(frozen=True)
class StackOptions:
    """How the 20 m and 60 m bands are brought to 10 m."""

    resampling: str = "bilinear"

    def validate(self) -> None:
        """Raises:
        InvalidParameterError: an unknown resampling method.
        """
        if self.resampling not in RESAMPLING:
            raise InvalidParameterError(
                f"resampling {self.resampling!r} is not one of {', '.join(RESAMPLING)}"
            )


def stack_store(
    store: TileStore,
    options: StackOptions | None = None,
    *,
    force: bool = False,
    progress: Callable[[int], None] | None = None,
) -> StageResult:
    """Write ``stack.zarr`` for one tile store.

    Args:
        store: the tile store (its patch stage must have kept all 12 bands).
        options: the resampling method.
        force: redo even when the stored result is current.
        progress: called with the number of patches just stacked.

    Raises:
        WorkStoreError: the patch stage is missing or did not keep all 12 bands, or a chunk of
            ``s2.zarr`` is missing or cannot be decoded (checked against the manifest's inventory).
        InvalidParameterError: unknown resampling method.
    """
    t0 = time.perf_counter()
    opts = options or StackOptions()
    opts.validate()
    resampling = opts.resampling
    patch_rec = store.require_stage("patch", "run `rsprep patch` first")
    _require_all_bands(store, patch_rec)
    params = {"resampling": resampling}
    inputs = digest(patch_rec)
    if not force and store.is_current(STAGE, params, inputs) and (store.path / STACK_ARRAYS).is_dir():
        return _result(store, SKIPPED, store.grid.count, t0)

    grid = store.grid
    src = store.zarr(S2_ARRAYS)
    dtype = src[SPECTRAL_BANDS[0]].dtype
    with building(store.path / STACK_ARRAYS) as tmp:
        _write_stack(tmp, src, dtype, grid, resampling, progress)
        consolidate(tmp)
    store.record_stage(STAGE, stage_record(params, inputs, outputs=[STACK_ARRAYS], patches=grid.count))
    return _result(store, DONE, grid.count, t0)


def _require_all_bands(store: TileStore, patch_rec: dict) -> None:
    """Refuse a store whose patch stage did not keep all 12 spectral bands."""
    missing = [b for b in SPECTRAL_BANDS if b not in patch_rec["parameters"]["bands"]]
    if missing:
        raise WorkStoreError(
            f"{store.path}: stacking needs all 12 spectral bands, but the patch stage kept only "
            f"{','.join(patch_rec['parameters']['bands'])} (missing {','.join(missing)}); "
            "re-run `rsprep patch` without --bands"
        )


def _write_stack(
    tmp: Path, src, dtype, grid, resampling: str, progress: Callable[[int], None] | None
) -> None:
    """Create ``s2_stacked`` in the folder ``tmp`` and fill it, one row of patches at a time."""
    import zarr

    n_patches, side = grid.count, grid.pixels(10)
    is_float = np.dtype(dtype).kind == "f"
    nodata = np.nan if is_float else 0
    root = zarr.open_group(tmp, mode="w", zarr_format=3)
    arr = create_patch_array(
        root,
        "s2_stacked",
        shape=(n_patches, len(SPECTRAL_BANDS), side, side),
        dtype=dtype,
        chunk_patches=grid.n,
        fill_value=nodata,
        attrs={
            "bands": list(SPECTRAL_BANDS),
            "resampling": resampling,
            "resampling_convention": "pixel centres aligned (half-pixel), clamped at the patch border; "
            "nodata neighbours get no weight",
            "native_resolution_m": {b: BANDS_BY_NAME[b].resolution for b in SPECTRAL_BANDS},
            "resolution_m": 10,
            "nodata": None if is_float else 0,
            "units": src[SPECTRAL_BANDS[0]].attrs.get("units", "DN"),
        },
    )
    # One row of patches at a time keeps memory at ~n * 12 * side² values.
    for r0 in range(0, n_patches, grid.n):
        r1 = min(r0 + grid.n, n_patches)
        block = np.empty((r1 - r0, len(SPECTRAL_BANDS), side, side), dtype=dtype)
        for bi, name in enumerate(SPECTRAL_BANDS):
            block[:, bi] = to_side(src[name][r0:r1], side, resampling, nodata)
        arr[r0:r1] = block
        if progress:
            progress(r1 - r0)


def _result(store: TileStore, status: str, patches: int, t0: float) -> StageResult:
    return StageResult(STAGE, str(store.path), status, str(store.path), patches, time.perf_counter() - t0)


def stack_work(
    work: str | Path,
    options: StackOptions | None = None,
    *,
    workers: int = 1,
    force: bool = False,
    on_result: Callable[[StageResult], None] | None = None,
) -> list[StageResult]:
    """Stack every store of ``work`` (in ``workers`` processes); a failing store never stops the others."""
    opts = options or StackOptions()
    opts.validate()
    check_workers(workers)
    tasks = store_tasks(STAGE, _stack_one, find_stores(work), opts, force)
    return execute(tasks, workers=workers, on_result=on_result)


def _stack_one(path: str, options: StackOptions, force: bool) -> StageResult:
    return stack_store(TileStore.open(path), options, force=force)
