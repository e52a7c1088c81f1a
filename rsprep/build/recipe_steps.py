"""The dataset-wide steps of a recipe: noise variants and outputs (docs/recipes.md).

As in :mod:`rsprep.build.recipe_sections`, each section runs its stage options' own ``validate()``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from rsprep.build.recipe_sections import Section, check_with
from rsprep.formats.resumable import ConvertOptions
from rsprep.stages.noise import NoiseOptions

#: The pixel formats ``rsprep convert`` writes, in the order a build runs them.
FORMATS = ("lmdb", "zarr", "tiff")


class NoiseSection(Section):
    """One label-noise variant (rsprep.stages.noise.NoiseOptions)."""

    name: str | None = Field(None, description="Variant name (default: from mode, rates and seed).")
    mode: str = Field(description="subtractive, additive, mixed, uniform, sample, swap or matrix.")
    rate: float | None = Field(
        None, description="subtractive/additive: share of P_c; uniform: p; swap: patches."
    )
    sub_rate: float | None = Field(None, description="mixed: removals, share of P_c.")
    add_rate: float | None = Field(None, description="mixed: additions, share of P_c.")
    patch_rate: float | None = Field(None, description="sample: share of patches.")
    class_rate: float | None = Field(None, description="sample: share of classes flipped per patch.")
    matrix: str | None = Field(None, description="matrix: JSON or CSV file (relative to the recipe file).")
    sampling: str = Field("exact", description="exact counts or independent bernoulli draws.")
    splits: list[str] = Field(["train"], description="Splits to corrupt.")
    min_labels: int = Field(0, description="Never leave a patch with fewer labels (0 or 1).")
    seed: int = Field(0, description="Seed of the draws.")
    cap: float = Field(0.95, description="Additions keep each class's prevalence at most this.")
    classes: list[str] | None = Field(None, description="Classes to corrupt (default: all).")

    @model_validator(mode="after")
    def _stage(self) -> NoiseSection:
        check_with(self, self.options)
        return self

    def options(self) -> NoiseOptions:
        return NoiseOptions(
            mode=self.mode,
            rate=self.rate,
            sub_rate=self.sub_rate,
            add_rate=self.add_rate,
            patch_rate=self.patch_rate,
            class_rate=self.class_rate,
            matrix=Path(self.matrix) if self.matrix is not None else None,
            sampling=self.sampling,
            splits=tuple(self.splits),
            min_labels=self.min_labels,
            seed=self.seed,
            cap=self.cap,
            classes=tuple(self.classes) if self.classes else None,
        )


class ZarrSection(Section):
    """Zarr-only options of ``rsprep convert zarr`` (rsprep.formats.resumable.ConvertOptions)."""

    stack: bool = Field(False, description="Also write s2_stacked (N, 12, P/10, P/10) at 10 m.")
    stack_method: str | None = Field(
        None, description="Resampling of s2_stacked (default: stack.resampling)."
    )
    compressor: str = Field("none", description="Image arrays: none (fastest reads), lz4 or zstd (Blosc).")
    shard_patches: int = Field(1024, description="Patches per shard file.")
    class_order: str = Field("alphabetical", description="Multi-hot label columns: alphabetical or paper.")

    @model_validator(mode="after")
    def _stage(self) -> ZarrSection:
        check_with(
            self, lambda: self.options("zarr", workers=1, stack_method=self.stack_method or "bilinear")
        )
        return self

    def options(
        self, fmt: str, *, workers: int, stack_method: str, overwrite: bool = False
    ) -> ConvertOptions:
        if fmt != "zarr":  # the zarr fields do not apply: as `rsprep convert` gives them by default
            return ConvertOptions(workers=workers, overwrite=overwrite)
        return ConvertOptions(
            workers=workers,
            overwrite=overwrite,
            stack=self.stack,
            stack_method=stack_method,
            shard_patches=self.shard_patches,
            class_order=self.class_order,
            compressor=self.compressor,
        )


class ValidateSection(Section):
    """``rsprep validate`` after the build."""

    enabled: bool = Field(True, description="Validate the dataset at the end of the build.")
    full: bool = Field(False, description="Read the pixels of every patch (default: a sample).")
    checksums: bool = Field(True, description="Write checksums.sha256 first.")


class Outputs(Section):
    """What the dataset-wide steps write."""

    formats: list[Literal["lmdb", "zarr", "tiff"]] = Field(
        ["lmdb"], description="Pixel formats written by `rsprep convert`: lmdb, zarr, tiff."
    )
    zarr: ZarrSection = Field(default_factory=ZarrSection, description="Zarr-only options.")
    stats: bool = Field(True, description="Write stats.json (train-split band statistics).")
    card: bool = Field(True, description="Write the dataset card (README.md, figures, croissant.json).")
    validation: ValidateSection = Field(
        default_factory=ValidateSection, description="`rsprep validate` at the end."
    )

    @field_validator("formats")
    @classmethod
    def _unique(cls, value: Sequence[str]) -> list[str]:
        twice = sorted({f for f in value if list(value).count(f) > 1})
        if twice:
            raise ValueError(f"{', '.join(twice)} given more than once")
        return list(value)
