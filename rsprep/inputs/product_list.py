"""Input lists: the Sentinel-2 products a dataset is built from (docs/build.md#the-input-list).

A list is a CSV file with the columns ``name`` (the product name, ``S2A_MSIL1C_…_<generation>.SAFE``),
``product_id`` (its id in the Copernicus Data Space, what a downloader asks for) and ``sha256`` (of the
product's zip as downloaded; may be empty). A product on disk matches a listed one by satellite,
datatake (the sensing start time) and tile: an L2A made from a listed L1C keeps those three, so it
counts, although its processing level, baseline and generation time differ. Reading, matching and
hashing only; what a build does with the result is :mod:`rsprep.build.input_list`.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from rsprep.core.grid import parse_product_uri
from rsprep.errors import InputNotFoundError, InvalidParameterError

COLUMNS = ("name", "product_id", "sha256")
#: Bytes hashed at a time (streamed: a 1 GB zip never sits in memory).
CHUNK = 8 << 20
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_ID = re.compile(r"^[0-9A-Za-z][0-9A-Za-z-]*$")


@dataclass(frozen=True)
class ListedProduct:
    """One line of an input list."""

    name: str
    product_id: str
    sha256: str | None  # None: the list gives no hash

    @property
    def key(self) -> tuple[str, str, str]:
        """(satellite, datatake, tile): what a product on disk is matched by."""
        return product_key(self.name)


@dataclass
class ListMatch:
    """The products found against a list: per listed product the found ones, the missing, the extra."""

    present: dict[str, list[str]] = field(default_factory=dict)  # listed name -> found products
    missing: list[ListedProduct] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)  # found products on no line of the list


def product_key(name: str) -> tuple[str, str, str]:
    """(satellite, datatake, tile) of a product name (a ``.SAFE`` or ``.zip`` suffix is allowed).

    Raises:
        InvalidParameterError: ``name`` is no Sentinel-2 product name.
    """
    p = parse_product_uri(product_stem(name))
    return p.mission, p.datatake, f"T{p.tile}"


def key_or_none(name: str) -> tuple[str, str, str] | None:
    """:func:`product_key`, or None when ``name`` is no Sentinel-2 product name."""
    try:
        return product_key(name)
    except InvalidParameterError:
        return None


def product_stem(name: str) -> str:
    """A product's name without ``.zip`` and ``.SAFE`` (any case): ``X.SAFE.zip`` → ``X``."""
    for suffix in (".zip", ".safe"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return name


def read_product_list(path: str | Path) -> list[ListedProduct]:
    """The lines of the input list at ``path``, in file order.

    Raises:
        InputNotFoundError: ``path`` does not exist.
        InvalidParameterError: not the three columns, an empty or malformed value (line named), or two
            lines for one product (the same satellite, datatake and tile).
    """
    path = Path(path)
    if not path.is_file():
        raise InputNotFoundError(f"input list {path} does not exist; give a CSV file with columns {_cols()}")
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows or tuple(c.strip() for c in rows[0]) != COLUMNS:
        got = ",".join(rows[0]) if rows else "(an empty file)"
        raise InvalidParameterError(f"input list {path}: the header is {got!r}; it must be {_cols()}")
    listed: list[ListedProduct] = []
    first: dict[tuple[str, str, str], int] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue
        entry = _entry(path, line, row)
        key = entry.key
        if key in first:
            raise InvalidParameterError(
                f"input list {path}, line {line}: {entry.name} is the product of line {first[key]} again "
                "(same satellite, datatake and tile); list each product once"
            )
        first[key] = line
        listed.append(entry)
    if not listed:
        raise InvalidParameterError(f"input list {path} lists no product; add lines of {_cols()}")
    return listed


def _entry(path: Path, line: int, row: list[str]) -> ListedProduct:
    where = f"input list {path}, line {line}"
    if len(row) != len(COLUMNS):
        raise InvalidParameterError(f"{where}: {len(row)} values; give {len(COLUMNS)} ({_cols()})")
    name, product_id, sha = (c.strip() for c in row)
    try:
        product_key(name)
    except InvalidParameterError as exc:
        raise InvalidParameterError(f"{where}: {exc}") from None
    if not _ID.match(product_id):
        raise InvalidParameterError(f"{where}: product_id {product_id!r} is empty or not an id")
    if sha and not _SHA256.match(sha):
        raise InvalidParameterError(
            f"{where}: sha256 {sha!r} is not 64 lowercase hex digits (leave it empty for no hash)"
        )
    return ListedProduct(name, product_id, sha or None)


def _cols() -> str:
    return ",".join(COLUMNS)


def match_products(
    listed: Iterable[ListedProduct], found: Iterable[tuple[str, tuple[str, str, str]]]
) -> ListMatch:
    """Match ``found`` products (``(label, key)`` pairs, e.g. a path and :func:`product_key` of its
    name) against ``listed``; every list keeps its order."""
    listed = list(listed)
    by_key = {e.key: e for e in listed}
    match = ListMatch()
    for label, key in found:
        entry = by_key.get(key)
        if entry is None:
            match.extra.append(label)
        else:
            match.present.setdefault(entry.name, []).append(label)
    match.missing = [e for e in listed if e.name not in match.present]
    match.present = {e.name: match.present[e.name] for e in listed if e.name in match.present}
    return match


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes, read in :data:`CHUNK` pieces."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()
