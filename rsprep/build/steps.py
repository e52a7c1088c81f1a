"""The dataset-wide steps of a build, each one call of its stage's function (docs/build.md#steps).

metadata → split → noise variants → convert (the recipe's formats) → stats → card → validate, in the
order of the Makefile's chained ``demo-stages`` commands, with the options those commands use, so a
build and the chained commands write the same bytes. Every step replaces what an earlier run left
(``overwrite``); a conversion interrupted before resumes its partial build.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from rsprep.errors import RsprepError

Progress = Callable[[int, int], None]


class ValidationFailedError(RsprepError, ValueError):
    """The built dataset did not pass ``rsprep validate``."""


@dataclass(frozen=True)
class StepInputs:
    work: Path  # the work store the dataset is built from
    dataset: Path
    countries: Path | None
    v1: Path | None
    workers: int


def run_step(name: str, recipe, inp: StepInputs, progress: Progress | None) -> None:
    """Run the dataset-wide step ``name`` (as listed by :func:`rsprep.build.plan.dataset_steps`)."""
    section, _, arg = name.partition(":")
    if section == "metadata":
        from rsprep.stages.metadata import build_metadata

        options = recipe.metadata_options(countries=inp.countries, v1=inp.v1)
        build_metadata(inp.work, inp.dataset, options, overwrite=True)
    elif section == "split":
        from rsprep.stages.split import split_target

        split_target(inp.dataset, recipe.split_options(), overwrite=True)
    elif section == "noise":
        _noise(recipe, inp, name)
    elif section == "convert":
        from rsprep.stages.convert import convert

        options = replace(recipe.convert_options(arg, workers=inp.workers), overwrite=True)
        convert(arg, inp.dataset, None, options, lambda _msg: None, progress)
    elif section == "stats":
        from rsprep.stages.stats import StatsOptions, write_stats

        write_stats(inp.dataset, StatsOptions(), overwrite=True, progress=progress)
    elif section == "card":
        from rsprep.card import CardOptions, make_card

        make_card(inp.dataset, CardOptions(countries=inp.countries), overwrite=True, progress=progress)
    elif section == "validate":
        _validate(inp.dataset, recipe.outputs.validation)


def _noise(recipe, inp: StepInputs, step: str) -> None:
    from rsprep.build.plan import noise_steps
    from rsprep.stages.noise import make_noise

    for name_of_step, name, options in noise_steps(recipe):
        if name_of_step == step:
            make_noise(inp.dataset, options, name=name, overwrite=True)


def _validate(dataset: Path, how) -> None:
    """Write the checksums (when asked) and run every check; an error fails the step."""
    from rsprep.validation import validate
    from rsprep.validation.checks.checksums import write_checksums

    if how.checksums:
        write_checksums(dataset)
    report = validate(dataset, full=how.full)
    if report.error_count:
        first = report.errors[0].message if report.errors else "see the report"
        raise ValidationFailedError(
            f"{dataset}: rsprep validate found {report.error_count} error(s), first: {first}; "
            f"run `rsprep validate {dataset} --full` for the report"
        )
