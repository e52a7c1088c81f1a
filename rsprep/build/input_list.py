"""The input-list check of ``rsprep build`` (docs/build.md#the-input-list).

A recipe whose ``inputs.product_list`` names a list (the ``reben`` recipe: the 125 L1C products of the
official build, ``recipes/reben-inputs.csv``) says which products its dataset is made of. Before
anything runs, the build matches its ``--s2`` products against the list by satellite, datatake and tile
(:mod:`rsprep.inputs.product_list`), reports how many of the listed products are present and which are
missing (with their product ids, what to download), and refuses products that are not on the list
unless ``--allow-extra``. ``--verify-inputs`` also hashes every listed zip and compares it with the
official SHA-256. The report is part of the plan head and of ``OUT/build.json`` (``inputs.product_list``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rsprep.errors import InputNotFoundError, InvalidParameterError, RsprepError
from rsprep.inputs.product_list import (
    ListedProduct,
    file_sha256,
    key_or_none,
    match_products,
    product_stem,
    read_product_list,
)

#: How the missing products are listed for a downloader (shown in the report).
DOWNLOAD_HINT = "rsprep recipe inputs {recipe} --missing --s2 DIR --format txt"


class ExtraProductsError(InvalidParameterError):
    """``--s2`` holds products that are not on the recipe's input list (and no ``--allow-extra``)."""


class InputHashError(RsprepError, ValueError):
    """A listed zip does not have the official SHA-256 (``--verify-inputs``)."""


@dataclass
class InputListReport:
    """The products of a build against its recipe's input list."""

    recipe: str
    path: Path
    listed: list[ListedProduct]
    present: dict[str, list[str]]  # listed name -> the --s2 products that match it
    missing: list[ListedProduct]
    extra: list[str]  # --s2 products on no line of the list (only with --allow-extra)
    allow_extra: bool = False
    verified: list[str] | None = None  # zips with the official SHA-256; None: --verify-inputs not given
    warnings: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The report as text (the plan head)."""
        extra = f", {len(self.extra)} extra (--allow-extra)" if self.extra else ""
        out = [
            f"input list {self.path.name} (recipe {self.recipe}): {len(self.present)} of "
            f"{len(self.listed)} products present, {len(self.missing)} missing{extra}"
        ]
        if self.missing:
            hint = DOWNLOAD_HINT.format(recipe=self.recipe)
            out.append(f"  missing (download them by product id; `{hint}` lists the ids):")
            out += [f"    {e.name} (product id {e.product_id})" for e in self.missing]
        if self.extra:
            out.append("  extra, not on the list (built because of --allow-extra):")
            out += [f"    {p}" for p in self.extra]
        if self.verified is not None:
            out.append(f"  verified: {len(self.verified)} zip(s) have the official SHA-256")
        out += [f"  warning: {w}" for w in self.warnings]
        return out

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-able data (``OUT/build.json``)."""
        return {
            "file": str(self.path),
            "digest": hashlib.sha256(self.path.read_bytes()).hexdigest(),
            "listed": len(self.listed),
            "present": len(self.present),
            "present_products": self.present,
            "missing": [{"name": e.name, "product_id": e.product_id} for e in self.missing],
            "extra": self.extra,
            "allow_extra": self.allow_extra,
            "verified": self.verified,
            "warnings": self.warnings,
        }


def recipe_list(recipe) -> tuple[Path, list[ListedProduct]] | None:
    """The path and lines of ``recipe``'s input list, or None for a recipe without one.

    Raises:
        InputNotFoundError: the list file does not exist.
        InvalidParameterError: the list is malformed (file and line named).
    """
    path = recipe.product_list_path()
    if path is None:
        return None
    if not path.is_file():
        raise InputNotFoundError(
            f"recipe {recipe.name}: inputs.product_list {recipe.inputs.product_list!r} names {path}, which "
            "does not exist; put the list beside the recipe file or give its path (the reben recipe's list "
            "is reben-inputs.csv among the built-in recipes: rsprep recipe inputs reben)"
        )
    return path, read_product_list(path)


def require_list(recipe) -> tuple[Path, list[ListedProduct]]:
    """:func:`recipe_list`, for a recipe that must have one.

    Raises:
        InvalidParameterError: the recipe has no input list.
    """
    found = recipe_list(recipe)
    if found is None:
        raise InvalidParameterError(
            f"recipe {recipe.name} has no input list (inputs.product_list is not set); only a recipe that "
            "names its products has one, e.g. reben"
        )
    return found


def check_inputs(
    recipe,
    products: Sequence[Path],
    *,
    allow_extra: bool = False,
    verify: bool = False,
    verify_only: Sequence[Path] | None = None,
) -> InputListReport | None:
    """Match ``products`` against ``recipe``'s input list (None for a recipe without one).

    Raises:
        ExtraProductsError: products on no line of the list, without ``allow_extra`` (all named).
        InputHashError: with ``verify``, a listed zip whose SHA-256 is not the official one (all named).
        InvalidParameterError: ``verify`` for a recipe without a list; a product that cannot be identified.
    """
    found = recipe_list(recipe)
    if found is None:
        if verify:
            require_list(recipe)  # --verify-inputs asks for a check this recipe cannot make
        return None
    path, listed = found
    match = match_products(listed, [(str(p), _key(Path(p))) for p in products])
    if match.extra and not allow_extra:
        raise ExtraProductsError(
            f"{len(match.extra)} product(s) are not on the input list of recipe {recipe.name} ({path.name}; "
            f"matched by satellite, datatake and tile): {', '.join(match.extra)}; the dataset would not be "
            f"{recipe.name}: leave them out of --s2, or pass --allow-extra to build with them"
        )
    report = InputListReport(
        recipe.name, path, listed, match.present, match.missing, match.extra, allow_extra=allow_extra
    )
    by_name = {e.name: e for e in listed}
    for name, labels in match.present.items():
        entry = by_name[name]
        for label in labels:
            stem = product_stem(Path(label).name)
            if "_MSIL1C_" in stem.upper() and stem != product_stem(entry.name):
                report.warnings.append(
                    f"{label} matches {entry.name} by datatake and tile but is another L1C (processing "
                    "baseline or generation time differ): the dataset may differ from the official one"
                )
    if verify:
        only = None if verify_only is None else {str(p) for p in verify_only}
        _verify(recipe, report, by_name, only)
    return report


def _key(product: Path) -> tuple[str, str, str]:
    """The (satellite, datatake, tile) of a product: from its name, else from its metadata."""
    key = key_or_none(product.name)
    if key is not None:
        return key
    from rsprep.inputs.safe import read_product

    try:
        uri = read_product(product, check_files=False).product_uri
    except (RsprepError, OSError) as exc:
        raise InvalidParameterError(
            f"cannot tell which product {product} is: its name is no Sentinel-2 product name and its "
            f"metadata cannot be read ({exc}); name it after the product (S2A_MSIL1C_….SAFE or .zip)"
        ) from None
    key = key_or_none(uri)
    if key is None:
        raise InvalidParameterError(
            f"cannot tell which product {product} is: neither its name nor its PRODUCT_URI {uri!r} is a "
            "Sentinel-2 product name"
        )
    return key


def _verify(recipe, report: InputListReport, by_name: dict[str, ListedProduct], only=None) -> None:
    """Hash every present L1C zip (of ``only``, a shard's products, when given) against the official
    SHA-256; say which products cannot be checked."""
    folders, l2a, unhashed, differ = [], [], [], []
    report.verified = []
    for name, labels in report.present.items():
        entry = by_name[name]
        for label in labels:
            if only is not None and label not in only:
                continue  # another shard's product: that shard hashes it
            p = Path(label)
            if p.is_dir():
                folders.append(label)
            elif "_MSIL2A_" in p.name.upper():
                l2a.append(label)
            elif entry.sha256 is None:
                unhashed.append(label)
            else:
                got = file_sha256(p)
                if got == entry.sha256:
                    report.verified.append(label)
                else:
                    differ.append(
                        f"{label} has SHA-256 {got}, the official zip of {entry.name} (product id "
                        f"{entry.product_id}) has {entry.sha256}"
                    )
    if differ:
        raise InputHashError(
            f"{len(differ)} zip(s) are not the ones the official {recipe.name} was built from: "
            f"{'; '.join(differ)}. A changed hash means the dataset will differ from the official one (the "
            "Copernicus Data Space has re-packaged products before): download them again by product id, or "
            "build without --verify-inputs to accept the difference"
        )
    if folders:
        report.warnings.append(
            f"{len(folders)} SAFE folder(s) cannot be verified (the official SHA-256 is of the downloaded "
            f"zip; keep the zips to verify them): {', '.join(folders)}"
        )
    if l2a:
        report.warnings.append(
            f"{len(l2a)} L2A zip(s) cannot be verified (the official SHA-256 is of the L1C zip they were "
            f"made from): {', '.join(l2a)}"
        )
    if unhashed:
        report.warnings.append(f"the list gives no SHA-256 for {', '.join(unhashed)}: not verified")


def missing_products(recipe, s2: Sequence[Path]) -> list[ListedProduct]:
    """The listed products of ``recipe`` that none of the products under ``s2`` matches (an ``s2``
    folder without products misses them all).

    Raises:
        InvalidParameterError: the recipe has no input list.
        InputNotFoundError: an ``s2`` path does not exist.
    """
    from rsprep.build.products import find_products

    _path, listed = require_list(recipe)
    for given in s2:
        if not Path(given).exists():
            raise InputNotFoundError(
                f"--s2 {given} does not exist; pass SAFE folders, .zip files or folders of them"
            )
    try:
        products = find_products(s2, recipe.inputs.s2_level) if s2 else []
    except InputNotFoundError:  # every path exists: none holds a product yet
        products = []
    return match_products(listed, [(str(p), _key(Path(p))) for p in products]).missing
