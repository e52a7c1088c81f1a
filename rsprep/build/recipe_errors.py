"""pydantic's validation errors as recipe problems: one line each, naming the field path.

``patch.patch_szie: unknown key (allowed: patch_size, bands, harmonize, verify); did you mean
patch_size? (line 12)`` or ``split.fractions: split fractions must sum to 1, got (0.5, 0.3, 0.3) = 1.1
(line 31)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from rsprep.build.recipe_paths import item_of, model_of, unknown_key
from rsprep.build.recipe_sections import STAGE_ERROR
from rsprep.build.recipe_yaml import line_of

Path_ = tuple[str | int, ...]


def problems(
    exc: ValidationError, root: type[BaseModel], *, lines: Mapping[Path_, int], overridden: Mapping[str, str]
) -> list[str]:
    """One ``path: message (where)`` line per field in error, in the order pydantic found them."""
    merged: dict[Path_, list[str]] = {}
    for error in exc.errors(include_url=False):
        path, message = _describe(error, root)
        if message not in merged.setdefault(path, []):
            merged[path].append(message)
    out = []
    for path, messages in merged.items():
        name = ".".join(str(p) for p in path) or "(top level)"
        out.append(f"{name}: {'; or '.join(messages)}{_where(path, lines, overridden)}")
    return out


def _describe(error: Mapping[str, Any], root: type[BaseModel]) -> tuple[Path_, str]:
    path, parent = _walk(error["loc"], root)
    kind = error["type"]
    if kind == STAGE_ERROR:
        field = error.get("ctx", {}).get("field")
        if field:
            path = (*path, *field.split("."))
        return path, error["ctx"]["message"]
    if kind == "extra_forbidden" and parent is not None:
        return path, unknown_key(parent, str(path[-1]))
    if kind == "missing":
        return path, "required, but not given"
    message = str(error["msg"])
    message = message.removeprefix("Value error, ")
    message = message[:1].lower() + message[1:]
    return path, f"{message}, got {_short(error.get('input'))}"


def _walk(loc: Sequence[str | int], root: type[BaseModel]) -> tuple[Path_, type[BaseModel] | None]:
    """The field path in ``loc`` (union member tags dropped) and the model holding its last key."""
    path: list[str | int] = []
    annotation: Any = root
    parent: type[BaseModel] | None = None
    for part in loc:
        model, item = model_of(annotation), item_of(annotation)
        if isinstance(part, int) and item is not None:
            path.append(part)
            annotation = item
        elif isinstance(part, str) and model is not None:
            path.append(part)
            parent = model
            field = model.model_fields.get(part)
            annotation = field.annotation if field is not None else None
        # else: a tag pydantic adds for a member of a union ('list[str]', "literal['reben','all']")
    return tuple(path), parent


def _where(path: Path_, lines: Mapping[Path_, int], overridden: Mapping[str, str]) -> str:
    dotted = ".".join(str(p) for p in path)
    for key, label in overridden.items():
        if dotted == key or dotted.startswith(key + ".") or key.startswith(dotted + "."):
            return f" (from {label})"
    line = line_of(dict(lines), path)
    return f" (line {line})" if line else ""


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
