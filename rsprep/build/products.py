"""Find the Sentinel-2 products a build works on (docs/build.md#inputs).

``--s2`` names SAFE folders, ``.zip`` files, or folders searched recursively for them (a SAFE folder
is not searched inside). The processing level is read from the product name (``MSIL2A`` or
``MSIL1C``); L1C products go through sen2cor in the patch stage.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rsprep.errors import InputNotFoundError, InvalidParameterError

LEVELS = ("L2A", "L1C")


def product_level(path: Path) -> str | None:
    """``L2A`` or ``L1C`` from a product's name, or None when the name says neither."""
    name = path.name.upper()
    for level in LEVELS:
        if f"MSI{level}" in name:
            return level
    return None


def _is_product(path: Path) -> bool:
    if path.is_dir():
        return path.suffix.upper() == ".SAFE"
    return path.is_file() and path.suffix.lower() == ".zip" and product_level(path) is not None


def _search(folder: Path) -> list[Path]:
    found = []
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            continue
        if _is_product(p):
            found.append(p)
        elif p.is_dir():
            found.extend(_search(p))
    return found


def find_products(paths: Sequence[Path], level: str = "any") -> list[Path]:
    """The products under ``paths`` (sorted, each once) of processing ``level`` (``L2A``, ``L1C`` or ``any``).

    Raises:
        InputNotFoundError: a path does not exist, or no product was found.
        InvalidParameterError: an unknown ``level``.
    """
    if level not in (*LEVELS, "any"):
        raise InvalidParameterError(f"inputs.s2_level {level!r} is not one of L2A, L1C, any")
    found: dict[Path, Path] = {}
    for given in paths:
        given = Path(given)
        if not given.exists():
            raise InputNotFoundError(
                f"--s2 {given} does not exist; pass SAFE folders, .zip files or folders of them"
            )
        for p in [given] if _is_product(given) else _search(given) if given.is_dir() else []:
            if level == "any" or product_level(p) in (level, None):
                found.setdefault(p.resolve(), p)
    if not found:
        what = "L2A or L1C" if level == "any" else f"{level}, as inputs.s2_level asks"
        shown = ", ".join(str(p) for p in paths) or "(none given)"
        raise InputNotFoundError(
            f"no Sentinel-2 products (*.SAFE folders or .zip files, {what}) under {shown}; "
            "pass the folders that hold them with --s2"
        )
    return [found[k] for k in sorted(found)]
