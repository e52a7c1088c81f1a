"""What a run of ``rsprep build`` writes into its record (``OUT/build.json`` or a shard's record):
the head (recipe, inputs, versions, plan), per product and stage the status, seconds and peak memory,
and where the per-product tasks ran (docs/build.md#the-build-record)."""

from __future__ import annotations

import os
import resource
from pathlib import Path
from typing import Any

from rsprep.build import record as rec
from rsprep.build.executor import threads_per_worker
from rsprep.build.plan import Plan
from rsprep.build.tasks import ProductOutcome, peak_mb


def input_fingerprints(products, s1, clc, countries, v1, *, s1_listing: bool = False) -> dict[str, Any]:
    """Every input with its fingerprint (size and mtime of its files, one digest).

    ``s1_listing``: the S1 input is a BigEarthNet-S1-v1.0 folder, fingerprinted by its top-level
    entries (:func:`~rsprep.build.record.fingerprint_listing`; the v1 S1 stage fingerprints the files
    each store reads), not by stat-ing its 1.8 million files on every run and every shard.
    """

    def short(path, fingerprint=rec.fingerprint_tree):
        fp = fingerprint(path)
        if fp is None:
            return None
        out = {"path": str(path), "digest": fp["digest"], "files": len(fp["files"])}
        return {**out, "scope": fp["scope"]} if "scope" in fp else out

    return {
        "s2": [short(p) for p in products],
        "s1": short(s1, rec.fingerprint_listing if s1_listing else rec.fingerprint_tree),
        "clc": short(clc),
        "countries": short(countries),
        "v1": short(v1),
    }


def describe_executor(executor, workers: int) -> dict[str, Any]:
    describe = getattr(executor, "describe", None)
    return describe() if describe is not None else {"kind": "local", "workers": workers}


def new_record(recipe, plan: Plan, inputs: dict, previous: dict, workers: int) -> dict[str, Any]:
    return {
        "recipe": recipe.resolved(),
        "inputs": inputs,
        "versions": rec.versions(),
        "work": rec.WORK,
        "dataset": rec.DATASET,
        "workers": workers,
        "threads_per_worker": threads_per_worker(workers),
        "plan": {p: {e.stage: e.status for e in es} for p, es in plan.entries.items()},
        "products": {},
        "failures": [],
        "missing": [],
        "steps": dict(previous.get("steps", {})),
        "dataset_record": previous.get("dataset_record"),
    }


def record_products(record: dict, result, outcomes: list[ProductOutcome]) -> None:
    for o in outcomes:
        stages = {}
        for r, mb in zip(o.results, o.peak_mb, strict=True):
            stages[r.stage] = {"status": r.status, "seconds": round(r.seconds, 3), "peak_rss_mb": mb}
            result.seconds[r.stage] = result.seconds.get(r.stage, 0.0) + r.seconds
        record["products"][o.product] = {"store": _relative(o.store, result.out), "stages": stages}
        if o.failure:
            f = o.failure
            result.failures.append({"file": o.product, "stage": f.stage, "message": f.error or ""})
    record["failures"] = result.failures
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    record["peak_rss_mb"] = {"build": peak_mb(), "largest_worker": round(children, 1)}


def _relative(path: str | None, base: Path) -> str | None:
    if path is None:
        return None
    try:
        return os.path.relpath(Path(path).resolve(), base.resolve())
    except ValueError:  # another drive
        return str(Path(path).resolve())
