"""Recipes: what ``rsprep build`` makes, as one validated model (docs/recipes.md).

A recipe is a YAML file (built-in ones live in the top-level ``recipes/`` folder) that names the
options of every stage, the dataset-wide steps (noise variants, output formats) and what it expects of
its inputs. :func:`load_recipe` reads it, applies ``--set key.path=value`` overrides to the raw
mapping and validates it field by field; every problem becomes one line of a :class:`RecipeError`
naming the field path, the bad value and what is allowed. Precedence: CLI option (applied by the
caller with :meth:`Recipe.with_overrides`) > ``--set`` > recipe > default.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from rsprep.build.recipe_cluster import ClusterSection
from rsprep.build.recipe_errors import problems
from rsprep.build.recipe_paths import RecipeError, builtin_recipes, locate, set_path
from rsprep.build.recipe_sections import (
    STAGE_ERROR,
    Inputs,
    MetadataSection,
    PatchSection,
    ReferenceSection,
    S1Section,
    SplitSection,
    StackSection,
)
from rsprep.build.recipe_steps import FORMATS, NoiseSection, Outputs
from rsprep.build.recipe_yaml import read_yaml
from rsprep.core.bands import SPECTRAL_BANDS
from rsprep.core.splits import SplitOptions
from rsprep.formats.resumable import ConvertOptions
from rsprep.stages.metadata import MetadataOptions
from rsprep.stages.noise import NoiseOptions
from rsprep.stages.patch import PatchOptions
from rsprep.stages.reference import ReferenceOptions
from rsprep.stages.s1 import S1Options
from rsprep.stages.stack import StackOptions

__all__ = ["Recipe", "RecipeError", "builtin_recipes", "load_recipe", "recipe_schema"]


class Recipe(BaseModel):
    """A whole build: inputs expected, the options of every stage, the dataset-wide steps."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Recipe name (default: the file name without .yaml).")
    description: str = Field("", description="What the recipe builds, in one or two sentences.")
    licence: str | None = Field(
        None, description="Licence of the dataset built (SPDX id, e.g. CDLA-Permissive-1.0)."
    )
    inputs: Inputs = Field(default_factory=Inputs, description="What the recipe expects of its inputs.")
    patch: PatchSection = Field(default_factory=PatchSection, description="The patch stage.")
    stack: StackSection = Field(default_factory=StackSection, description="The stack stage (off by default).")
    s1: S1Section = Field(default_factory=S1Section, description="The s1 stage (Sentinel-1 pairing).")
    reference: ReferenceSection = Field(default_factory=ReferenceSection, description="The reference stage.")
    metadata: MetadataSection = Field(default_factory=MetadataSection, description="The metadata stage.")
    split: SplitSection = Field(default_factory=SplitSection, description="The split stage.")
    noise: list[NoiseSection] = Field([], description="Label-noise variants, one `rsprep noise` run each.")
    outputs: Outputs = Field(default_factory=Outputs, description="Output formats and closing steps.")
    cluster: ClusterSection | None = Field(
        None, description="A Dask cluster for the per-product tasks (not part of what is built)."
    )

    _origin: str = PrivateAttr("recipe")
    _folder: Path | None = PrivateAttr(None)  # the recipe file's folder (for inputs.product_list)

    @model_validator(mode="after")
    def _across_sections(self) -> Recipe:
        if not self.inputs.s1 and not self.metadata.keep_unpaired:
            _fail(
                "metadata.keep_unpaired", "must be true when inputs.s1 is false (no patch has an S1 partner)"
            )
        all_bands = tuple(self.patch.bands) == SPECTRAL_BANDS
        if self.stack.enabled and not all_bands:
            _fail(
                "stack.enabled",
                f"the stack stage needs all 12 bands, patch.bands has {len(self.patch.bands)}",
            )
        if "zarr" in self.outputs.formats and self.outputs.zarr.stack and not all_bands:
            _fail("outputs.zarr.stack", "s2_stacked needs all 12 bands in patch.bands")
        names = [n or o.default_name() for n, o in self.noise_variants()]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            _fail("noise", f"two variants are called {', '.join(twice)}; give each a distinct name")
        return self

    # ---- the stage options ------------------------------------------------------------------
    def patch_options(self) -> PatchOptions:
        p = self.patch
        return PatchOptions(
            patch_size=p.patch_size, bands=tuple(p.bands), harmonize=p.harmonize, verify=p.verify
        )

    def stack_options(self) -> StackOptions | None:
        """The stack stage's options, or None when the recipe does not run it."""
        return StackOptions(resampling=self.stack.resampling) if self.stack.enabled else None

    def s1_options(self) -> S1Options:
        return self.s1.options()

    def reference_options(self) -> ReferenceOptions:
        return ReferenceOptions(
            nomenclature=self.reference.nomenclature, max_unlabeled=self.reference.max_unlabeled
        )

    def metadata_options(self, *, countries: Path | None, v1: Path | None) -> MetadataOptions:
        return self.metadata.options(countries=countries, v1=v1, split=self.split_options())

    def split_options(self) -> SplitOptions:
        return self.split.options(patch_size=self.patch.patch_size)

    def noise_variants(self) -> list[tuple[str | None, NoiseOptions]]:
        """(name or None for the stage's default name, options) per variant, in recipe order."""
        return [(n.name, n.options()) for n in self.noise]

    def convert_options(self, fmt: str, *, workers: int, overwrite: bool = False) -> ConvertOptions:
        """``rsprep convert FORMAT``'s options; the zarr section applies to ``zarr`` only.

        Raises:
            RecipeError: ``fmt`` is not one of lmdb, zarr, tiff.
        """
        if fmt not in FORMATS:
            raise RecipeError(f"{self._origin}: format {fmt!r} is not one of {', '.join(FORMATS)}")
        method = self.outputs.zarr.stack_method or self.stack.resampling
        return self.outputs.zarr.options(fmt, workers=workers, stack_method=method, overwrite=overwrite)

    # ---- whole-recipe views -------------------------------------------------------------------
    def resolved(self) -> dict[str, Any]:
        """The full resolved recipe (every default filled in) as plain JSON-able data."""
        return self.model_dump(mode="json")

    def with_overrides(self, values: Mapping[str, Any]) -> Recipe:
        """A copy with ``{"key.path": value}`` applied (CLI options), validated again.

        Raises:
            RecipeError: an unknown path, or a value the field (or its stage) refuses.
        """
        raw = self.resolved()
        for path, value in values.items():
            set_path(raw, path, value, Recipe, origin=self._origin)
        recipe = _validate(raw, self._origin, lines={}, overridden={p: "an option" for p in values})
        recipe._folder = self._folder
        return recipe

    def product_list_path(self) -> Path | None:
        """The input list (``inputs.product_list``, relative to the recipe file), or None."""
        name = self.inputs.product_list
        return None if name is None else (self._folder or Path.cwd()) / name


def _fail(path: str, message: str) -> None:
    raise PydanticCustomError(STAGE_ERROR, "{message}", {"message": message, "field": path})


def recipe_schema() -> dict[str, Any]:
    """The JSON schema of :class:`Recipe` (``schemas/recipe.schema.json`` is this, as written by
    ``rsprep recipe schema``)."""
    schema = Recipe.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema, "title": "rsprep recipe"}


def load_recipe(source: str | Path, sets: Sequence[str] = ()) -> Recipe:
    """Read a recipe (a built-in name or a YAML file), apply ``sets`` and validate it.

    Args:
        source: ``reben``, ``demo``, ... (see :func:`builtin_recipes`) or the path of a YAML file.
        sets: ``"key.path=value"`` overrides; each value is parsed as YAML (``0.3``, ``true``,
            ``[lmdb, zarr]``) and replaces that key of the raw mapping before validation.

    Raises:
        RecipeError: the recipe is not found, is no valid YAML (file and line named), has an unknown
            key, a value of the wrong type or one its stage refuses (field path named), or a ``--set``
            names an unknown path or has no ``=``.
    """
    path = locate(source)
    raw, lines = read_yaml(path)
    raw.setdefault("name", path.stem)
    _resolve_files(raw, path.parent)
    overridden: dict[str, str] = {}
    for item in sets:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise RecipeError(f"recipe {path.name}: --set {item!r}: give key.path=value, e.g. split.seed=1")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as exc:
            raise RecipeError(f"recipe {path.name}: --set {item!r}: the value is no YAML ({exc})") from None
        set_path(raw, key.strip(), value, Recipe, origin=f"recipe {path.name}: --set")
        overridden[key.strip()] = f"--set {key.strip()}"
    recipe = _validate(raw, f"recipe {path.name}", lines=lines, overridden=overridden)
    recipe._folder = path.resolve().parent
    return recipe


def _resolve_files(raw: dict[str, Any], base: Path) -> None:
    """Noise matrices named relative to the recipe file are read from beside it."""
    for variant in raw.get("noise") or []:
        if isinstance(variant, dict) and isinstance(variant.get("matrix"), str):
            variant["matrix"] = str((base / variant["matrix"]).resolve())


def _validate(
    raw: dict[str, Any], origin: str, *, lines: Mapping[tuple, int], overridden: Mapping[str, str]
) -> Recipe:
    try:
        recipe = Recipe.model_validate(raw)
    except ValidationError as exc:
        found = problems(exc, Recipe, lines=lines, overridden=overridden)
        raise RecipeError("\n".join(f"{origin}: {p}" for p in found), problems=found) from None
    recipe._origin = origin
    return recipe
