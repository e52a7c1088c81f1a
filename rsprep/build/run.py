"""``rsprep build``: the plan, the per-product stages in parallel, then the dataset-wide steps.

Layout of ``OUT``: ``work/`` (the work store), ``dataset/`` (the dataset folder) and ``build.json``
(:mod:`rsprep.build.record`). The build holds the lock of ``OUT`` from start to end, so a second
build into the same ``OUT`` refuses, naming the holder; a build killed at any moment is resumed by
the next one, which redoes only what is not up to date. The build reports through ``on_event``
(:class:`BuildEvent`) and never prints.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rsprep.build import finalize, shards
from rsprep.build import record as rec
from rsprep.build.executor import Executor, LocalExecutor, run_all
from rsprep.build.input_list import check_inputs
from rsprep.build.plan import CURRENT, Plan, make_plan, step_entries, step_keys
from rsprep.build.products import find_products
from rsprep.build.progress import PROGRESS, StageWatcher
from rsprep.build.run_record import describe_executor, input_fingerprints, new_record, record_products
from rsprep.build.shards import Shard
from rsprep.build.steps import StepInputs, run_step
from rsprep.build.tasks import STAGE, STAGE_ERRORS, ProductOutcome, peak_mb, product_chain
from rsprep.errors import InvalidParameterError, RsprepError
from rsprep.stages.runner import FAILED, SKIPPED, StageResult
from rsprep.store.lock import sweep_temporaries

KEPT = "work-kept"  # --keep-going: a folder of links to the stores of the products that succeeded


class WorkerDiedError(RsprepError, RuntimeError):
    """A worker process was killed (e.g. by the kernel's out-of-memory killer)."""


@dataclass
class BuildEvent:
    """``plan`` (the plan), ``product_stage`` (a running product starts ``stage``), ``product`` (one
    product finished: ``outcome``), ``step`` (a dataset-wide step starts), ``step_progress`` (``done``
    of ``total``), ``step_done`` (``seconds``)."""

    kind: str
    name: str = ""
    plan: Plan | None = None
    outcome: ProductOutcome | None = None
    done: int = 0
    total: int = 0
    seconds: float = 0.0
    stage: str = ""


@dataclass
class BuildResult:
    out: Path
    dataset: Path
    plan: Plan
    failures: list[dict[str, str]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # products left out (--keep-going)
    steps_run: bool = False
    seconds: dict[str, float] = field(default_factory=dict)  # stage -> seconds, summed over products

    @property
    def ok(self) -> bool:
        return not self.failures


def prepare(
    recipe,
    *,
    s2,
    s1,
    clc,
    countries=None,
    v1=None,
    out: Path,
    allow_extra=False,
    verify_inputs=False,
    shard: Shard | None = None,
) -> tuple[Plan, dict]:
    """The plan and the input fingerprints of a build (nothing is written: ``--dry-run``).

    ``shard``: the plan of that shard's products only, without the dataset-wide steps.

    ``allow_extra``, ``verify_inputs``: the input-list check (:mod:`rsprep.build.input_list`).
    """
    need = recipe.inputs
    for flag, given, option in (
        (need.s1, s1, "--s1 DIR"),
        (need.countries, countries, "--countries FILE"),
        (need.v1, v1, "--v1 FILE"),
    ):
        if flag and given is None:
            raise InvalidParameterError(
                f"recipe {recipe.name} needs {option.split()[0][2:]} input; pass {option}"
            )
    recipe.metadata_options(countries=countries, v1=v1).require_inputs()  # e.g. --v1 with v1 alignment
    s1 = s1 if need.s1 else None  # a recipe without S1 runs no s1 stage
    products = find_products(s2, need.s2_level)
    mine = products if shard is None else shards.select(products, shard)
    listed = check_inputs(
        recipe, products, allow_extra=allow_extra, verify=verify_inputs, verify_only=mine
    )  # every shard checks the whole list, but hashes only its own zips
    products = mine
    inputs = input_fingerprints(products, s1, clc, countries, v1, s1_listing=recipe.s1.source == "v1")
    plan = make_plan(recipe, products, Path(out), s1=s1, clc=clc, inputs=_step_inputs(inputs))
    if listed is not None:
        plan.input_list, inputs["product_list"] = listed, listed.to_dict()
    if shard is not None:
        plan.steps = []  # the dataset-wide steps are --finalize's
    return plan, inputs


def _step_inputs(inputs: dict) -> dict:
    """The inputs of the dataset-wide steps not already in the store manifests."""
    return {k: (inputs[k] or {}).get("digest") for k in ("countries", "v1")}


def build(
    recipe,
    *,
    s2: list[Path],
    s1: Path | None,
    clc: Path,
    countries: Path | None = None,
    v1: Path | None = None,
    out: Path,
    workers: int,
    keep_going: bool = False,
    on_event: Callable[[BuildEvent], None] | None = None,
    allow_extra: bool = False,
    verify_inputs: bool = False,
    executor: Executor | None = None,
    shard: Shard | None = None,
    finalize: bool = False,
) -> BuildResult:
    """Build the dataset of ``recipe`` into ``out`` (see the module docstring).

    ``executor`` runs the per-product tasks (default: a :class:`LocalExecutor` of ``workers``); the
    dataset-wide steps run here, after them. ``shard``: only that shard's per-product tasks, recorded
    in ``OUT/shards/I-of-N.json``; ``finalize``: only the dataset-wide steps, once every product is
    done (:mod:`rsprep.build.shards`).

    Raises:
        LockedError: another build holds ``out`` (or, for a full build or ``finalize``, a shard runs).
        ShardsNotDoneError: ``finalize`` while products are not done (without ``keep_going``).
        RsprepError: unusable inputs (no products, a bad CLC or S1 folder) or a failing dataset-wide step.
    """
    out = Path(out)
    emit = on_event or (lambda _e: None)
    if shard is not None and finalize:
        raise InvalidParameterError("--shard and --finalize are separate runs: every shard, then --finalize")
    out.parent.mkdir(parents=True, exist_ok=True)
    what = "--finalize" if finalize else "a full build"
    with shards.shard_lock(out, shard) if shard is not None else shards.whole_lock(out, what):
        plan, inputs = prepare(
            recipe,
            s2=s2,
            s1=s1,
            clc=clc,
            countries=countries,
            v1=v1,
            out=out,
            allow_extra=allow_extra,
            verify_inputs=verify_inputs,
            shard=shard,
        )
        emit(BuildEvent("plan", plan=plan))
        previous = rec.read_record(out)
        record = new_record(recipe, plan, inputs, previous, workers)
        result = BuildResult(out, plan.dataset, plan)
        if finalize:
            stores = _finalize_products(recipe, plan, inputs, record, result, keep_going)
        else:
            visible = [*plan.products, clc, *([s1] if recipe.inputs.s1 and s1 else [])]
            outcomes = _run_products(recipe, plan, workers, emit, executor, visible)
            record["executor"] = describe_executor(executor, workers)
            if hasattr(executor, "close"):
                executor.close()  # a cluster the build started: its workers are not needed any more
            record_products(record, result, outcomes)
            if shard is not None:
                for key in ("steps", "dataset_record", "missing"):
                    del record[key]
                shards.write_record(out, shard, record)
                return result
            if result.failures and not keep_going:
                rec.write_record(out, record)
                return result
            result.missing = [o.product for o in outcomes if o.failure]
            stores = [o.store for o in outcomes if not o.failure and o.store]
        record["missing"] = result.missing
        if not result.missing and (out / KEPT).exists():
            shutil.rmtree(out / KEPT)  # left by an earlier --keep-going build
        work = _kept_work(out, stores) if result.missing else plan.work
        steps = StepInputs(work, plan.dataset, countries, v1, workers)
        _run_steps(recipe, plan, previous, _step_inputs(inputs), steps, record, result, emit)
        return result


def _finalize_products(
    recipe, plan: Plan, inputs, record, result: BuildResult, keep_going: bool
) -> list[str]:
    """--finalize: the stores to build from, the shards' product records in ``record``; refuses
    (:class:`ShardsNotDoneError`) when a product is not done, unless ``keep_going`` leaves it out."""
    records = shards.read_records(result.out)
    missing = finalize.unfinished(plan, recipe, inputs, records)
    if missing and not keep_going:
        raise finalize.refusal(missing, len(plan.products))
    record["products"] = merged = finalize.merged_products(records, plan)
    record["shards"] = {s.label: rec_.get("executor") for s, rec_ in records.items()}
    record["executor"] = {"kind": "finalize", "shards": len(records)}
    result.missing = [m["product"] for m in missing]
    gone = set(result.missing)
    stores = {p: (merged.get(p) or {}).get("store") for p in map(str, plan.products) if p not in gone}
    # the store a shard recorded (an L1C product's is named after sen2cor's L2A), else the plan's
    return [str(result.out / s) if s else str(plan.work / plan.prefixes[p]) for p, s in stores.items()]


def _run_products(recipe, plan: Plan, workers: int, emit, executor, visible) -> list[ProductOutcome]:
    """The per-product chains of every product, in product order (products sharing a store fail).

    ``executor`` (None: local processes) first checks that its workers see the work store and the
    ``visible`` inputs, when it can (``check_visible``)."""
    plan.work.mkdir(parents=True, exist_ok=True)
    sweep_temporaries(plan.work)
    options = {
        "patch": recipe.patch_options(),
        "stack": recipe.stack_options(),
        "s1": recipe.s1_options(),
        "reference": recipe.reference_options(),
    }
    outcomes: dict[str, ProductOutcome] = {}
    tasks, first_of = [], {}
    for p in map(str, plan.products):
        prefix = plan.prefixes.get(p)
        if prefix is not None and prefix in first_of:
            error = f"{p} gives the same patch names ({prefix}_x_y) as {first_of[prefix]}; pass only one"
            outcomes[p] = ProductOutcome(p, [StageResult("patch", p, FAILED, error=error)], [0.0])
            continue
        first_of.setdefault(prefix, p)
        if all(e.status == CURRENT for e in plan.entries[p]):  # nothing to do: not even a worker
            store = str(plan.work / prefix) if prefix else None
            results = [StageResult(e.stage, p, SKIPPED, store=store) for e in plan.entries[p]]
            outcomes[p] = ProductOutcome(p, results, [0.0] * len(results))
            emit(BuildEvent("product", p, outcome=outcomes[p]))
            continue
        args = (p, str(plan.work), options, plan.discovery, plan.clc, str(plan.work.parent / PROGRESS))
        tasks.append((STAGE, p, product_chain, args))

    def finished(r) -> None:
        o = r if isinstance(r, ProductOutcome) else ProductOutcome(r.target, [r], [0.0])
        outcomes[o.product] = o
        emit(BuildEvent("product", o.product, outcome=o))

    if tasks:
        from concurrent.futures.process import BrokenProcessPool

        runner = executor or LocalExecutor(max(1, min(workers, len(tasks))))
        if hasattr(runner, "check_visible"):
            runner.check_visible(plan.work, visible)

        def stage(product: str, name: str) -> None:
            emit(BuildEvent("product_stage", product, stage=name))

        try:
            with StageWatcher(plan.work.parent / PROGRESS, [t[1] for t in tasks], stage):
                run_all(runner, tasks, finished)
        except BrokenProcessPool as exc:
            raise WorkerDiedError(
                f"a worker process died while building the products in {plan.work} ({exc}); often it ran "
                "out of memory: run the same command again (finished products are kept) with fewer --workers"
            ) from exc
    return [outcomes[str(p)] for p in plan.products]


def _kept_work(out: Path, stores: list[str]) -> Path:
    """A folder of links to the stores of the products that succeeded (what --keep-going builds from)."""
    kept = out / KEPT
    if kept.exists():
        shutil.rmtree(kept)
    kept.mkdir()
    for store in stores:
        (kept / Path(store).name).symlink_to(os.path.relpath(Path(store).resolve(), kept.resolve()))
    return kept


def _run_steps(recipe, plan, previous, inputs, steps: StepInputs, record, result: BuildResult, emit) -> None:
    """Run the dataset-wide steps that are not up to date, recording each one as it finishes."""
    entries = step_entries(recipe, plan, previous, inputs, products_done=True)
    if steps.work != plan.work:
        entries = step_entries(recipe, plan, {}, inputs, products_done=True)  # another set of stores
    keys = step_keys(recipe, plan, inputs, [e.stage for e in entries])
    for e in entries:
        plan_status = record["steps"].get(e.stage, {}).get("status")
        if e.status == CURRENT and plan_status == "done":
            continue
        emit(BuildEvent("step", e.stage))
        t0 = time.perf_counter()
        record["steps"][e.stage] = {"key": keys[e.stage], "status": "running"}
        try:
            run_step(
                e.stage,
                recipe,
                steps,
                lambda d, t, n=e.stage: emit(BuildEvent("step_progress", n, done=d, total=t)),
            )
        except STAGE_ERRORS as exc:
            record["steps"][e.stage]["status"] = FAILED
            result.failures.append({"file": str(steps.dataset), "stage": e.stage, "message": str(exc)})
            record["failures"] = result.failures
            rec.write_record(result.out, record)
            return
        seconds = time.perf_counter() - t0
        result.seconds[e.stage] = seconds
        record["steps"][e.stage] = {"key": keys[e.stage], "status": "done", "seconds": round(seconds, 3)}
        record["steps"][e.stage]["peak_rss_mb"] = peak_mb()
        record["dataset_record"] = rec.file_digest(steps.dataset / "build.json")
        rec.write_record(result.out, record)
        emit(BuildEvent("step_done", e.stage, seconds=seconds))
    result.steps_run = True
    rec.write_record(result.out, record)
