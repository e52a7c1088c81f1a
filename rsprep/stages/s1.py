"""``rsprep s1``: pair every valid Sentinel-2 patch with a Sentinel-1 scene (docs/inputs.md, docs/grid.md).

The pairing rule is in :mod:`rsprep.stages.s1_pair`. Scenes are found by
``rsprep.inputs.s1.find_scenes`` (GeoTIFFs in any CRS, one file per polarisation). A bad scene (a
file truncated or corrupt, a requested polarisation missing) fails the stores it could serve, or
with ``skip_bad`` (``--skip-bad-s1``) is left out of their pairing and recorded in their manifest.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from rsprep.errors import InvalidParameterError
from rsprep.inputs.s1 import POLARISATIONS, BadS1Error, S1Discovery, find_scenes
from rsprep.stages.runner import DONE, SKIPPED, StageResult, check_workers, execute, store_tasks
from rsprep.stages.s1_pair import (  # noqa: F401  (the stage's public pairing API)
    INVALID_S2,
    NO_SCENE_IN_TIME,
    NOT_COVERED,
    PAIRED,
    Pairing,
    in_reach,
    pair_tile,
)
from rsprep.stages.s1_write import result as _result
from rsprep.stages.s1_write import write_arrays, write_table
from rsprep.store.atomic import building, digest, fingerprint_files
from rsprep.store.workstore import (
    PATCH_TABLE,
    S1_ARRAYS,
    S1_TABLE,
    TileStore,
    find_stores,
    stage_record,
)

log = logging.getLogger(__name__)

STAGE = "s1"


@dataclass(frozen=True)
class S1Options:
    """Which scene may partner an S2 patch, and how its values are read."""

    max_days: float = 10.0  # largest |S1 start - S2 sensing time|
    same_season: bool = False  # also require the S2 patch's meteorological season
    linear: bool = False  # scenes hold linear backscatter: convert to dB
    polarisations: tuple[str, ...] = ("VV", "VH")
    skip_bad: bool = False  # leave bad scenes out of the pairing (recorded) instead of failing the store

    def __post_init__(self) -> None:
        object.__setattr__(self, "polarisations", tuple(p.upper() for p in self.polarisations))

    def validate(self) -> None:
        """Raises:
        InvalidParameterError: a negative ``--max-days``, or no / an unknown polarisation.
        """
        if not self.max_days >= 0:
            raise InvalidParameterError(f"--max-days {self.max_days} must not be negative")
        bad = [p for p in self.polarisations if p not in POLARISATIONS]
        if bad or not self.polarisations:
            raise InvalidParameterError(
                f"polarisation(s) {bad or self.polarisations} not among {', '.join(POLARISATIONS)}"
            )

    def parameters(self) -> dict:
        """What decides whether a stored pairing is current (as recorded in the manifest)."""
        return {
            "max_days": self.max_days,
            "same_season": self.same_season,
            "linear": self.linear,
            "polarisations": list(self.polarisations),
        }


# --------------------------------------------------------------------------------------------
# The stage on the work store
# --------------------------------------------------------------------------------------------
def s1_store(
    store: TileStore, discovery: S1Discovery, options: S1Options | None = None, *, force: bool = False
) -> StageResult:
    """Run the pairing for one tile store and write ``s1.zarr`` and ``s1.parquet``.

    Raises:
        WorkStoreError: the patch stage has not run.
        InvalidParameterError: an option out of range.
        BadS1Error: a scene that could partner this store's patches is bad (unless ``skip_bad``);
            the store's previous outputs are kept.
    """
    t0 = time.perf_counter()
    opts = options or S1Options()
    opts.validate()
    patch_rec = store.require_stage("patch", "run `rsprep patch` first")
    pols = list(opts.polarisations)
    params = opts.parameters()
    sensing = datetime.fromisoformat(store.product["sensing_time"].replace("Z", "+00:00"))
    excluded = _bad_in_reach(store, discovery, opts, sensing)
    scene_fp = fingerprint_files([f for s in discovery.scenes for f in s.files.values()])
    inputs = digest([patch_rec["inputs_digest"], patch_rec["parameters"], scene_fp["digest"]])
    rec = store.stage(STAGE) or {}
    if (
        not force
        and (opts.skip_bad or not rec.get("excluded"))
        and store.is_current(STAGE, params, inputs)
        and (store.path / S1_TABLE).is_file()
    ):
        return _result(store, SKIPPED, rec.get("valid", 0), rec.get("paired", 0), t0, rec.get("excluded", []))

    table = store.table(PATCH_TABLE)
    valid = np.asarray(table["valid"].to_numpy(zero_copy_only=False), dtype=bool)
    grid = store.grid
    try:
        pairing = pair_tile(
            grid,
            valid,
            sensing,
            discovery.scenes,
            max_days=opts.max_days,
            same_season=opts.same_season,
            linear=opts.linear,
            polarisations=pols,
            skip_bad=opts.skip_bad,
        )
    except BadS1Error as exc:
        raise BadS1Error(f"store {store.path.name}: {exc}") from exc
    excluded += pairing.excluded
    m = int((pairing.array_index >= 0).sum())
    # Both outputs are complete before either replaces its predecessor (table last, arrays first).
    with (
        building(store.path / S1_ARRAYS) as tmp_arrays,
        building(store.path / S1_TABLE, folder=False) as tmp_table,
    ):
        write_arrays(tmp_arrays, pairing, pols, grid, m, {"resampling": "bilinear"})
        write_table(tmp_table, table, pairing)
    store.record_stage(
        STAGE,
        stage_record(
            params,
            inputs,
            outputs=[S1_ARRAYS, S1_TABLE],
            scenes=scene_fp["files"],
            excluded=excluded,
            paired=m,
            valid=int(valid.sum()),
        ),
    )
    return _result(store, DONE, int(valid.sum()), m, t0, excluded)


def _bad_in_reach(store: TileStore, discovery: S1Discovery, opts: S1Options, sensing: datetime) -> list[str]:
    """The messages of the bad scenes that could partner this store (time and season), to exclude.

    Raises:
        BadS1Error: there is one and ``opts.skip_bad`` is off, naming its file.
    """
    bad = [b.message() for b in discovery.bad if in_reach(b.start, sensing, opts.max_days, opts.same_season)]
    if bad and not opts.skip_bad:
        more = f" (and {len(bad) - 1} more bad scene file(s))" if len(bad) > 1 else ""
        raise BadS1Error(f"store {store.path.name}: {bad[0]}{more}")
    return bad


def s1_work(
    work: str | Path,
    s1_dir: str | Path,
    options: S1Options | None = None,
    *,
    workers: int = 1,
    force: bool = False,
    on_result: Callable[[StageResult], None] | None = None,
) -> tuple[list[StageResult], S1Discovery]:
    """Pair every store of ``work`` (in ``workers`` processes); a failing store never stops the others.

    The scenes under ``s1_dir`` are found once, before any store is touched.
    """
    opts = options or S1Options()
    opts.validate()
    check_workers(workers)
    stores = find_stores(work)
    discovery = find_scenes(s1_dir, polarisations=opts.polarisations)
    for msg in discovery.skipped:
        log.warning("%s", msg)
    tasks = store_tasks(STAGE, _s1_one, stores, discovery, opts, force)
    return execute(tasks, workers=workers, on_result=on_result), discovery


def _s1_one(path: str, discovery: S1Discovery, options: S1Options, force: bool) -> StageResult:
    return s1_store(TileStore.open(path), discovery, options, force=force)
