"""Running the checks: which ones, on how many patches, and the report they make."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

from rsprep.errors import InvalidParameterError, RsprepError
from rsprep.validation.checks import checksums, completeness, labels, noise, schema, split, values
from rsprep.validation.report import CheckOutcome, Recorder, Report
from rsprep.validation.view import DatasetView, open_view

#: Every check, in the order they run: name -> (function, what it covers).
CHECKS: dict[str, tuple[Callable[[DatasetView, Recorder, Sampling], None], str]] = {
    "schema": (schema.run, "official Arrow schema, sorting, unique ids, split and label names, GeoParquet"),
    "completeness": (completeness.run, "every patch and S1 name in every output, with the right bands"),
    "values": (values.run, "no nodata in S2, finite S1, CLC codes in maps, outputs equal to each other"),
    "labels": (labels.run, "labels re-derived from the reference maps with the recorded rule"),
    "split": (split.run, "the recorded split method re-derived, leakage report recomputed"),
    "noise": (noise.run, "clean labels unchanged, flip logs consistent with the noisy labels"),
    "checksums": (checksums.run, "checksums.sha256 matches (LMDB hashed per key)"),
}
#: Patches whose pixels are read by the value checks unless ``full`` or ``sample`` says otherwise.
DEFAULT_SAMPLE = 1000


class Sampling:
    """Which rows the value checks read: all, a number, or a fraction of the patches (seeded)."""

    def __init__(self, view: DatasetView, sample: int | float | None, full: bool, seed: int) -> None:
        total = len(view.patch_ids)
        if full:
            n = None
        elif sample is None:
            n = DEFAULT_SAMPLE
        elif isinstance(sample, float) and 0 < sample <= 1:
            n = max(1, round(sample * total))
        elif isinstance(sample, int) and sample >= 1:
            n = sample
        else:
            raise InvalidParameterError(
                f"--sample {sample!r}: give a number of patches (>= 1) or a fraction in (0, 1]"
            )
        self.rows = view.sample(n, seed)
        self.total, self.seed = total, seed
        self.limit = n  # patches to read (None: all); used where names come from the outputs, not tables
        self.full = len(self.rows) == total

    def describe(self) -> dict:
        if not self.total:  # no tables: the outputs' own names are sampled, up to ``limit`` per kind
            return {"patches": 0, "of": 0, "seed": self.seed, "full": self.limit is None, "limit": self.limit}
        return {"patches": len(self.rows), "of": self.total, "seed": self.seed, "full": self.full}


def validate(
    dataset: str | Path,
    *,
    checks: Sequence[str] | None = None,
    skip: Sequence[str] = (),
    sample: int | float | None = None,
    full: bool = False,
    seed: int = 0,
) -> Report:
    """Check ``dataset`` (a folder built by rsprep, or an official reBEN folder) and return the report.

    Args:
        dataset: the dataset folder.
        checks: the checks to run (default: all of :data:`CHECKS`).
        skip: checks not to run.
        sample: patches (int) or fraction of them (float) whose pixels the value checks read.
        full: read every patch (overrides ``sample``).
        seed: which patches a sample holds.

    Raises:
        InputNotFoundError: ``dataset`` is no dataset folder.
        InvalidParameterError: an unknown check name or a bad sample size.
    """
    t0 = time.perf_counter()
    chosen = _choose(checks, skip)
    view = open_view(dataset)
    sampling = Sampling(view, sample, full, seed)
    report = Report(str(Path(dataset)), view.kind, view.outputs, sample=sampling.describe())
    for name in CHECKS:
        outcome = CheckOutcome(name)
        report.checks.append(outcome)
        if name not in chosen:
            outcome.status, outcome.note = "skipped", "not selected"
            continue
        fn, _ = CHECKS[name]
        t1 = time.perf_counter()
        rec = Recorder(outcome, report.problems)
        try:
            fn(view, rec, sampling)
        except (RsprepError, OSError) as exc:  # a check that cannot finish is itself an error
            rec.error(f"the check could not finish: {exc}")
        outcome.seconds = round(time.perf_counter() - t1, 3)
        if outcome.status != "skipped":
            outcome.status = "errors" if outcome.errors else ("warnings" if outcome.warnings else "ok")
    report.seconds = round(time.perf_counter() - t0, 3)
    return report


def _choose(checks: Sequence[str] | None, skip: Sequence[str]) -> set[str]:
    unknown = [c for c in [*(checks or ()), *skip] if c not in CHECKS]
    if unknown:
        raise InvalidParameterError(f"unknown check(s) {', '.join(unknown)}; choose from {', '.join(CHECKS)}")
    return set(checks or CHECKS) - set(skip)
