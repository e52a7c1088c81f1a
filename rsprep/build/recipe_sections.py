"""The sections of a recipe (docs/recipes.md): one pydantic model per stage, checked by the stage itself.

Every section that maps to a stage's options dataclass runs that dataclass's own ``validate()`` in an
``after`` validator, so a recipe can never hold a value the stage would refuse. The stage's message
names its CLI flag; :func:`stage_error` attaches the section field it is about, so a recipe error
reads ``s1.max_days: --max-days -1.0 must not be negative``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from rsprep.core.bands import SPECTRAL_BANDS, parse_bands
from rsprep.core.splits import SplitOptions
from rsprep.errors import InvalidParameterError
from rsprep.stages.metadata import MetadataOptions
from rsprep.stages.patch import PatchOptions
from rsprep.stages.reference import ReferenceOptions
from rsprep.stages.s1 import S1Options
from rsprep.stages.stack import StackOptions

#: The error type of a value that a stage's ``validate()`` refused (its context names the field).
STAGE_ERROR = "stage_option"


class Section(BaseModel):
    """Base of every section: unknown keys are errors, values are immutable once validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def stage_error(section: BaseModel, exc: InvalidParameterError) -> PydanticCustomError:
    """The stage's refusal as a pydantic error on the field its message is about.

    The field is the one whose name (``max_days``), flag (``--max-days``) or words (``max days``)
    come first in the message; when none does, the error stays on the section.
    """
    message = str(exc)
    lowered = message.lower()
    best: tuple[int, str] | None = None
    for name in type(section).model_fields:
        for token in _tokens(name):
            match = re.search(rf"(?<![\w-]){re.escape(token)}", lowered)
            if match and (best is None or match.start() < best[0]):
                best = (match.start(), name)
    return PydanticCustomError(STAGE_ERROR, "{message}", {"message": message, "field": best and best[1]})


def _tokens(name: str) -> tuple[str, ...]:
    words = name.replace("_", " ")
    singular = words[:-1] if words.endswith("s") else words
    return tuple(dict.fromkeys((f"--{name.replace('_', '-')}", name, words, singular)))


def check_with(section: BaseModel, make: Callable[[], Any]) -> None:
    """Build the stage options with ``make`` and run their ``validate()``; a refusal is a field error."""
    try:
        options = make()
        options.validate()
    except InvalidParameterError as exc:
        raise stage_error(section, exc) from None


class Inputs(Section):
    """What the recipe expects of its inputs (checked by ``rsprep build`` before anything runs)."""

    s2_level: Literal["L2A", "L1C", "any"] = Field(
        "any",
        description="Sentinel-2 processing level of the products: L2A, L1C (run through sen2cor) or any.",
    )
    s1: bool = Field(True, description="Sentinel-1 scenes are required (`--s1`); false: no s1 stage runs.")
    countries: bool = Field(False, description="A country polygon file is required (`--countries`).")
    v1: bool = Field(False, description="BigEarthNet v1 tables are required (`--v1`, for s2v1_name).")
    product_list: str | None = Field(
        None,
        min_length=1,
        description="The products the dataset is made of: a CSV file (name, product_id, sha256), relative "
        "to the recipe file; `rsprep build` reports the missing ones and refuses others unless "
        "`--allow-extra` (reben: reben-inputs.csv).",
    )


class PatchSection(Section):
    """The patch stage (rsprep.stages.patch.PatchOptions)."""

    patch_size: int = Field(
        1200, description="Patch side in metres; a positive multiple of 60 (reBEN: 1200)."
    )
    bands: list[str] = Field(
        list(SPECTRAL_BANDS), description="Spectral bands kept, by name (default: all 12 L2A bands)."
    )
    harmonize: str = Field("none", description="Radiometry: none (L2A DN as stored), to-old or reflectance.")
    verify: bool = Field(True, description="Check the inputs against manifest.safe (sizes, checksums).")

    @field_validator("bands")
    @classmethod
    def _bands(cls, value: list[str]) -> list[str]:
        try:
            return list(parse_bands(value))
        except InvalidParameterError as exc:
            raise PydanticCustomError(
                STAGE_ERROR, "{message}", {"message": str(exc), "field": None}
            ) from None

    @model_validator(mode="after")
    def _stage(self) -> PatchSection:
        check_with(
            self, lambda: PatchOptions(self.patch_size, tuple(self.bands), self.harmonize, self.verify)
        )
        return self


class StackSection(Section):
    """The stack stage (rsprep.stages.stack.StackOptions): 20 m and 60 m bands resampled to 10 m."""

    enabled: bool = Field(False, description="Run the stack stage (writes stack.zarr in every tile store).")
    resampling: str = Field(
        "bilinear", description="Upsampling of the 20 m and 60 m bands: bilinear or nearest."
    )

    @model_validator(mode="after")
    def _stage(self) -> StackSection:
        check_with(self, lambda: StackOptions(resampling=self.resampling))
        return self


class S1Section(Section):
    """The s1 stage (rsprep.stages.s1 / s1_v1): the scene that partners an S2 patch, or v1's S1 patch."""

    source: Literal["scenes", "v1"] = Field(
        "scenes",
        description="Where S1 comes from: scenes (`--s1 DIR`, paired and resampled) or v1 (`--s1-v1 DIR`: "
        "BigEarthNet v1.0's S1 patches, named by the v1 alignment, as the official reBEN; only "
        "polarisations and skip_bad apply).",
    )

    max_days: float = Field(
        10.0, description="Largest time between the S1 scene start and the S2 sensing time, in days."
    )
    same_season: bool = Field(False, description="Also require the S2 patch's meteorological season.")
    linear: bool = Field(False, description="Scenes hold linear backscatter: convert to dB.")
    polarisations: list[str] = Field(["VV", "VH"], description="Polarisations paired (VV, VH, HH, HV).")
    skip_bad: bool = Field(
        False, description="Leave bad scenes out of the pairing (recorded) instead of failing the stores."
    )

    @model_validator(mode="after")
    def _stage(self) -> S1Section:
        check_with(self, self.options)
        if self.source == "v1":
            from rsprep.stages.s1_v1 import S1V1Options

            check_with(self, lambda: S1V1Options.of(self.options()))
        return self

    def options(self) -> S1Options:
        return S1Options(
            max_days=self.max_days,
            same_season=self.same_season,
            linear=self.linear,
            polarisations=tuple(self.polarisations),
            skip_bad=self.skip_bad,
        )


class ReferenceSection(Section):
    """The reference stage (rsprep.stages.reference.ReferenceOptions) and how the CLC file is read."""

    nomenclature: str = Field("ben19", description="ben19 (reBEN) or ben43 (BigEarthNet v1, CLC level 3).")
    max_unlabeled: float = Field(
        0.25, description="A patch is labelled only below this UNLABELED pixel fraction (reBEN: 0.25)."
    )
    code_field: str | None = Field(None, description="Field with the CLC codes (default: Code_18, any case).")
    layer: str | None = Field(None, description="Layer of the CLC file when it has several.")
    clc_crs: str | None = Field(
        None, description="CRS of the CLC file when it declares none (e.g. EPSG:3035)."
    )

    @model_validator(mode="after")
    def _stage(self) -> ReferenceSection:
        check_with(
            self, lambda: ReferenceOptions(nomenclature=self.nomenclature, max_unlabeled=self.max_unlabeled)
        )
        return self


class MetadataSection(Section):
    """The metadata stage (rsprep.stages.metadata.MetadataOptions): entry rule, flags, countries."""

    country_candidates: Literal["reben", "all"] | list[str] = Field(
        "all", description="Countries a patch may get: reben (its ten), all, or a list of names."
    )
    country_field: str | None = Field(
        None, description="Name field of the country file (default: NAME, ...)."
    )
    country_layer: str | None = Field(None, description="Layer of the country file.")
    snow_threshold: float = Field(
        0.0, description="Flag seasonal snow when the SCL snow fraction exceeds this."
    )
    cloud_threshold: float = Field(
        0.0, description="Flag cloud/shadow when the SCL cloud + shadow fraction exceeds this."
    )
    keep_unpaired: bool = Field(
        False, description="Keep patches without a Sentinel-1 partner (s1_name null)."
    )
    v1_alignment: bool = Field(
        False,
        description="s2v1_name, s1_name and both flags from BigEarthNet v1.0 (bigearthnet-common's tables, "
        "from the patch id alone); the SCL flags and v1's country go to the sidecar (reben: true).",
    )
    require_quality_passed: Literal[True] = Field(
        True,
        description="The quality filter: patches of products failing any of the four quality checks get no "
        "labels and do not enter the dataset (reBEN; the stages always apply it).",
    )

    @field_validator("country_candidates")
    @classmethod
    def _candidates(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and not [v for v in value if v.strip()]:
            raise ValueError("names no country; give reben, all or a list of names")
        return value

    @model_validator(mode="after")
    def _stage(self) -> MetadataSection:
        check_with(self, lambda: self.options(countries=None, v1=None, split=SplitOptions()))
        return self

    def candidates(self) -> tuple[str, ...] | None:
        from rsprep.inputs.countries import parse_candidates

        if isinstance(self.country_candidates, list):
            return tuple(v.strip() for v in self.country_candidates if v.strip())
        return parse_candidates(self.country_candidates)

    def options(self, *, countries: Path | None, v1: Path | None, split: SplitOptions) -> MetadataOptions:
        return MetadataOptions(
            snow_threshold=self.snow_threshold,
            cloud_threshold=self.cloud_threshold,
            countries=countries,
            country_layer=self.country_layer,
            country_field=self.country_field,
            country_candidates=self.candidates(),
            v1=v1,
            v1_alignment=self.v1_alignment,
            keep_unpaired=self.keep_unpaired,
            split=split,
        )


class SplitSection(Section):
    """The split stage (rsprep.core.splits.SplitOptions)."""

    method: str = Field("tile-border", description="tile-border (reBEN), block, tile or random.")
    fractions: list[float] = Field([0.5, 0.25, 0.25], description="train, validation, test fractions; sum 1.")
    seed: int = Field(0, description="Seed of the block, tile and random rankings.")
    block_km: float = Field(10.0, description="method block: block side in km.")
    buffer: int = Field(0, description="method block: drop blocks within this many blocks of another split.")
    crs: str = Field(
        "auto", description="Equal-area CRS for blocks and distances (auto: EPSG:3035 in Europe)."
    )

    @model_validator(mode="after")
    def _stage(self) -> SplitSection:
        check_with(self, lambda: self.options(patch_size=1200))
        return self

    def options(self, *, patch_size: float) -> SplitOptions:
        return SplitOptions(
            method=self.method,
            fractions=tuple(self.fractions),
            seed=self.seed,
            block_km=self.block_km,
            buffer=self.buffer,
            patch_size=float(patch_size),
            crs=self.crs,
        )
