"""Reading a recipe file: YAML errors with file and line, duplicate keys refused, and a line per key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from rsprep.build.recipe_paths import RecipeError

#: The line (1-based) where each key path of a recipe file is written, e.g. ("split", "fractions") → 31.
Lines = dict[tuple[str | int, ...], int]


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (it would keep the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} given twice (first on line {seen[key]})", key_node.start_mark
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path) -> tuple[dict[str, Any], Lines]:
    """The top-level mapping of a recipe file and the line of every key path in it.

    Raises:
        RecipeError: unreadable file, YAML syntax error or a duplicate key (file, line and column named),
            or a document that is not a mapping.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"recipe {path}: cannot be read ({exc})") from None
    try:
        node = yaml.compose(text, Loader=_Loader)
        data = yaml.load(text, Loader=_Loader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
        problem = exc.problem or str(exc)
        context = f" ({exc.context})" if exc.context else ""
        raise RecipeError(f"recipe {path.name}: {where}: {problem}{context}") from None
    except yaml.YAMLError as exc:
        raise RecipeError(f"recipe {path.name}: no valid YAML: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RecipeError(
            f"recipe {path.name}: the file holds a {type(data).__name__}, not a mapping of sections "
            "(name:, patch:, split:, ...)"
        )
    lines: Lines = {}
    if node is not None:
        _index(node, (), lines)
    return data, lines


def _index(node: yaml.Node, prefix: tuple[str | int, ...], lines: Lines) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            path = (*prefix, key_node.value)
            lines[path] = key_node.start_mark.line + 1
            _index(value_node, path, lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[(*prefix, i)] = item.start_mark.line + 1
            _index(item, (*prefix, i), lines)


def line_of(lines: Lines, path: tuple[str | int, ...]) -> int | None:
    """The line of the longest prefix of ``path`` written in the file."""
    for n in range(len(path), 0, -1):
        if path[:n] in lines:
            return lines[path[:n]]
    return None
