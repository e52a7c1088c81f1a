"""The per-product task of a build: patch → (stack) → s1 → reference of one product, in one worker.

Each stage is the stage module's own function; a stage that fails ends the product's chain with a
failed :class:`~rsprep.stages.runner.StageResult` and never touches another product. The store's
lock is held from the stack stage to the reference stage (the patch stage takes it itself).
"""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass, field
from pathlib import Path

from rsprep.build.progress import mark
from rsprep.errors import RsprepError
from rsprep.stages.runner import FAILED, StageResult
from rsprep.store.atomic import LOCK_WAIT
from rsprep.store.lock import locked

STAGE = "product"
#: Errors that fail one product's stage (a corrupt file surfaces as one of these).
STAGE_ERRORS = (RsprepError, OSError, ValueError)


@dataclass
class ProductOutcome:
    """What the stages did to one product, with the worker's peak memory after each stage (MB)."""

    product: str
    results: list[StageResult] = field(default_factory=list)
    peak_mb: list[float] = field(default_factory=list)

    @property
    def store(self) -> str | None:
        return self.results[0].store if self.results and self.results[0].status != FAILED else None

    @property
    def failure(self) -> StageResult | None:
        return next((r for r in self.results if r.status == FAILED), None)

    @property
    def status(self) -> str:
        return FAILED if self.failure else "done"


def peak_mb() -> float:
    """This process's peak resident memory so far, in MB (``ru_maxrss`` is in KiB on Linux)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _guard(stage: str, target: str, fn) -> StageResult:
    t0 = time.perf_counter()
    try:
        return fn()
    except STAGE_ERRORS as exc:
        return StageResult(stage, target, FAILED, error=str(exc), seconds=time.perf_counter() - t0)


def product_chain(
    product: str, work: str, options: dict, discovery, clc, progress: str | None = None
) -> ProductOutcome:
    """Run every per-product stage of ``product`` into the work store ``work``.

    ``options`` holds the stage options: ``patch``, ``stack`` (None when disabled), ``s1``, ``reference``.
    ``discovery``: the S1 scenes, a :class:`~rsprep.stages.s1_v1.V1Source` (S1 from BigEarthNet v1.0)
    or None (no s1 stage). ``progress``: the folder where the current stage is shown
    (:mod:`rsprep.build.progress`).
    """
    from rsprep.stages.patch import patch_product

    outcome = ProductOutcome(product)
    mark(progress, product, "patch")

    def add(result: StageResult) -> bool:
        outcome.results.append(result)
        outcome.peak_mb.append(peak_mb())
        return result.status != FAILED

    if not add(_guard("patch", product, lambda: patch_product(product, out=work, options=options["patch"]))):
        return outcome
    path = outcome.results[0].store
    try:
        with locked(path, "tile store", wait=LOCK_WAIT):
            _store_stages(path, options, discovery, clc, add, lambda stage: mark(progress, product, stage))
    except STAGE_ERRORS as exc:  # the store could not be locked or opened
        add(StageResult("stack" if options["stack"] else "s1", path, FAILED, error=str(exc)))
    return outcome


def _store_stages(path: str, options: dict, discovery, clc, add, starting=lambda _stage: None) -> None:
    from rsprep.stages.reference import reference_store
    from rsprep.stages.s1 import s1_store
    from rsprep.stages.s1_v1 import S1V1Options, V1Source, s1_v1_store
    from rsprep.stages.stack import stack_store
    from rsprep.store.workstore import TileStore

    store = TileStore.open(Path(path))
    steps = []
    if options["stack"] is not None:
        steps.append(("stack", lambda: stack_store(store, options["stack"])))
    if isinstance(discovery, V1Source):  # recipe s1.source: v1 (BigEarthNet v1.0 S1 patches)
        steps.append(("s1", lambda: s1_v1_store(store, discovery.root, S1V1Options.of(options["s1"]))))
    elif discovery is not None:
        steps.append(("s1", lambda: s1_store(store, discovery, options["s1"])))
    steps.append(("reference", lambda: reference_store(store, clc, options["reference"])))
    for stage, fn in steps:
        starting(stage)
        if not add(_guard(stage, path, fn)):
            return
