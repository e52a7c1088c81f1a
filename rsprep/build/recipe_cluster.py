"""The recipe's ``cluster:`` section: where the per-product tasks run (docs/build.md#distributed).

It describes a Dask cluster that the build starts and scales: a ``LocalCluster`` of this machine, or a
dask-jobqueue ``SLURMCluster`` / ``PBSCluster`` whose batch jobs each run ``processes`` Dask workers on
``cores`` cores and ``memory`` of memory. It is not part of what is built: no stage option, plan status
or step key depends on it, and the outputs are the same bytes wherever the tasks ran. Precedence:
``--cluster`` / ``--cluster-option key=value`` > ``--set cluster.key=value`` > the recipe.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal

import yaml
from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from rsprep.build.recipe_sections import STAGE_ERROR, Section
from rsprep.errors import InvalidParameterError

KINDS = ("local", "slurm", "pbs")
_MEMORY = re.compile(r"^\s*\d+(\.\d+)?\s*([kKmMgGtT]i?[bB]?)?\s*$")
_WALLTIME = re.compile(r"^(\d+-)?\d{1,3}(:\d{2}){0,2}$")


class ClusterSection(Section):
    """A Dask cluster for the per-product tasks (the dataset-wide steps run on the build's own machine)."""

    kind: Literal["local", "slurm", "pbs"] = Field(
        description="local: a Dask LocalCluster of this machine; slurm / pbs: dask-jobqueue batch jobs."
    )
    cores: int | None = Field(
        None, ge=1, description="Cores per batch job (slurm, pbs: required; local: unused)."
    )
    memory: str | None = Field(
        None,
        description="Memory per batch job (slurm, pbs: required, e.g. 64GB); local: per worker "
        "(default: no limit, like --workers).",
    )
    processes: int | None = Field(
        None,
        ge=1,
        description="Dask worker processes per batch job (default: one per core: each task one thread); "
        "local: the number of workers (default: --workers).",
    )
    jobs: int = Field(1, ge=1, description="Batch jobs to scale to (slurm, pbs).")
    walltime: str | None = Field(None, description="Wall-time limit per batch job, e.g. 04:00:00.")
    queue: str | None = Field(None, description="The SLURM partition or PBS queue.")
    account: str | None = Field(None, description="The account (project) the jobs are charged to.")
    job_extra_directives: list[str] = Field(
        [], description="More #SBATCH / #PBS directives, e.g. ['--exclusive', '--constraint=amd']."
    )
    job_script_prologue: list[str] = Field(
        [], description="Shell lines run before each worker starts, e.g. ['module load gdal']."
    )
    interface: str | None = Field(
        None, description="Network interface the workers and scheduler use, e.g. ib0."
    )
    local_directory: str | None = Field(
        None, description="Scratch folder of each worker (Dask's own files, not the work store)."
    )
    python: str | None = Field(None, description="The Python that runs the workers (default: this one).")
    wait: float = Field(
        600.0, gt=0, description="Seconds to wait for the first worker to join (batch queues can be slow)."
    )

    @model_validator(mode="after")
    def _complete(self) -> ClusterSection:
        if self.kind in ("slurm", "pbs"):
            for name in ("cores", "memory"):
                if getattr(self, name) is None:
                    _fail(
                        name,
                        f"is required for kind {self.kind} (per batch job, e.g. cores: 16, memory: 64GB)",
                    )
            if self.processes is not None and self.processes > self.cores:
                _fail("processes", f"{self.processes} is more than the {self.cores} cores of a job")
        if self.memory is not None and not _MEMORY.match(self.memory):
            _fail("memory", f"{self.memory!r} is no amount of memory; give e.g. 64GB or 512MiB")
        if self.walltime is not None and not _WALLTIME.match(self.walltime):
            _fail("walltime", f"{self.walltime!r} is no wall time; give HH:MM:SS, e.g. 04:00:00")
        return self


def _fail(field: str, message: str) -> None:
    raise PydanticCustomError(STAGE_ERROR, "{message}", {"message": message, "field": field})


#: ``--cluster-option`` names that mean a field of another name.
ALIASES = {"partition": "queue"}


def with_cluster(recipe, kind: str | None, options: Sequence[str]):
    """``recipe`` with ``--cluster KIND`` and ``--cluster-option key=value`` (a YAML value) applied.

    Raises:
        RecipeError: an option without ``=``, an unknown key or a value the section refuses.
        InvalidParameterError: options without a cluster kind (neither ``--cluster`` nor the recipe's).
    """
    values: dict[str, Any] = {}
    for item in options:
        key, sep, text = item.partition("=")
        key = ALIASES.get(key.strip(), key.strip())
        if not sep or not key:
            raise InvalidParameterError(f"--cluster-option {item!r}: give key=value, e.g. cores=16")
        try:
            values[f"cluster.{key}"] = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as exc:
            raise InvalidParameterError(f"--cluster-option {item!r}: the value is no YAML ({exc})") from None
    if kind is not None:
        if kind not in KINDS:
            raise InvalidParameterError(f"--cluster {kind!r}: give one of {', '.join(KINDS)}")
        values["cluster.kind"] = kind
    if not values:
        return recipe
    if recipe.cluster is None and kind is None:
        raise InvalidParameterError(
            "--cluster-option needs a cluster: pass --cluster local|slurm|pbs or give the recipe "
            "a cluster: section"
        )
    return recipe.with_overrides(values)
