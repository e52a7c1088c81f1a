"""Where recipes come from and how ``key.path`` overrides reach into them (docs/recipes.md).

Built-in recipes are the YAML files of the top-level ``recipes/`` folder. ``rsprep/recipes`` is a
symbolic link to it, which pyproject.toml ships as package data: a wheel (or an sdist) holds the files
themselves, so an installed package has them under ``rsprep/recipes/``, and there is one copy of each in
the source tree. A checkout without the link (symlinks off in git) falls back to ``../recipes``.
"""

from __future__ import annotations

import difflib
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from rsprep.errors import RsprepError


class RecipeError(RsprepError, ValueError):
    """A recipe that cannot be used: not found, no valid YAML, or a field the model or its stage refuses.

    ``str()`` is one line per problem, each naming the recipe, the field path (or file line), the bad
    value and what is allowed; ``problems`` holds the same lines without the recipe name.
    """

    def __init__(self, message: str, *, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = list(problems or [message])


def recipe_dirs() -> list[Path]:
    """The folders searched for built-in recipes: the package's ``recipes/``, then the source tree's."""
    package = Path(__file__).resolve().parents[1]
    return [package / "recipes", package.parent / "recipes"]


def builtin_recipes() -> dict[str, Path]:
    """``{name: path}`` of the built-in recipes, sorted by name.

    Raises:
        RecipeError: no recipe folder exists (an installation without its package data).
    """
    for folder in recipe_dirs():
        files = sorted(folder.glob("*.yaml")) if folder.is_dir() else []
        if files:
            return {f.stem: f for f in files}
    where = " or ".join(str(d) for d in recipe_dirs())
    raise RecipeError(
        f"no built-in recipes found in {where}; reinstall rsprep (its recipes/ folder is missing)"
    )


def locate(source: str | Path) -> Path:
    """The YAML file of ``source``: a built-in name (``reben``) or a path.

    A bare name without a ``.yaml``/``.yml`` suffix or a path separator is looked up among the built-in
    recipes first.

    Raises:
        RecipeError: neither a built-in recipe nor an existing file.
    """
    text = str(source)
    bare = isinstance(source, str) and "/" not in text and "\\" not in text and Path(text).suffix == ""
    if bare:
        builtins = builtin_recipes()
        if text in builtins:
            return builtins[text]
    path = Path(text).expanduser()
    if path.is_file():
        return path
    names = list(builtin_recipes())
    if not bare:
        raise RecipeError(f"recipe file {text} does not exist (built-in recipes: {', '.join(names)})")
    hint = difflib.get_close_matches(text, names, n=1)
    maybe = f"; did you mean {hint[0]}?" if hint else ""
    raise RecipeError(
        f"recipe {text!r} is neither a built-in recipe ({', '.join(names)}) nor an existing file{maybe}"
    )


# --------------------------------------------------------------------------------------------
# Walking the model along a key path
# --------------------------------------------------------------------------------------------
def model_of(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model an annotation holds (also inside ``X | None``), else None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation) if _is_union(annotation) else ():
        if model_of(arg) is not None:
            return model_of(arg)
    return None


def item_of(annotation: Any) -> Any:
    """The item annotation of a ``list[...]`` (also inside a union), else None."""
    if typing.get_origin(annotation) is list:
        return typing.get_args(annotation)[0]
    for arg in typing.get_args(annotation) if _is_union(annotation) else ():
        if typing.get_origin(arg) is list:
            return typing.get_args(arg)[0]
    return None


def _is_union(annotation: Any) -> bool:
    import types

    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def allowed_keys(model: type[BaseModel]) -> str:
    return ", ".join(model.model_fields)


def unknown_key(model: type[BaseModel], key: str) -> str:
    close = difflib.get_close_matches(key, list(model.model_fields), n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    return f"unknown key (allowed: {allowed_keys(model)}){hint}"


def set_path(raw: dict[str, Any], dotted: str, value: Any, root: type[BaseModel], *, origin: str) -> None:
    """Set ``raw[a][b]... = value`` for ``dotted`` = ``"a.b..."``, checking every key against the model.

    List items are addressed by index (``noise.0.rate``); the index one past the end appends an item.
    Missing sections are created.

    Raises:
        RecipeError: a key the model does not have, a bad index, or a path through a plain value.
    """
    parts = dotted.split(".")
    if not dotted or any(not p for p in parts):
        raise RecipeError(f"{origin}: empty key in the path {dotted!r}")
    node: Any = raw
    annotation: Any = root
    for i, part in enumerate(parts):
        here = ".".join(parts[: i + 1])
        last = i == len(parts) - 1
        model, item = model_of(annotation), item_of(annotation)
        if model is not None and isinstance(node, dict):
            if part not in model.model_fields:
                raise RecipeError(f"{origin}: {here}: {unknown_key(model, part)}")
            annotation = model.model_fields[part].annotation
            key: Any = part
        elif item is not None and isinstance(node, list):
            if not part.isdigit() or int(part) > len(node):
                raise RecipeError(f"{origin}: {here}: index {part!r} is not one of 0..{len(node)}")
            annotation, key = item, int(part)
            if key == len(node):
                node.append({})
        else:
            above = ".".join(parts[:i]) or "the recipe"
            raise RecipeError(f"{origin}: {here}: {above} is a plain value, it has no key {part!r}")
        if last:
            node[key] = value
            return
        child = node.get(key) if isinstance(node, dict) else node[key]
        if child is None:
            child = [] if item_of(annotation) is not None and model_of(annotation) is None else {}
            node[key] = child
        node = child
