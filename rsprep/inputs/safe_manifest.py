"""Check the files of a Sentinel-2 SAFE product against its ``manifest.safe`` (docs/inputs.md#integrity).

ESA's ``manifest.safe`` lists every file of a product as a ``<dataObject>`` with its size
(``<byteStream size="...">``) and a checksum (``<checksum checksumName="MD5">``; ``SHA3-256`` from
processing baseline 04.00 on). A bit flipped in a JPEG2000 code stream decodes without complaint into
wrong pixels, so the files rsprep reads are compared with these figures; members of a zipped product
are read through :mod:`zipfile`, which checks their CRC as well (GDAL's ``/vsizip/`` does not).

:func:`verify_files` checks a list of files and returns the problems (``rsprep inspect``);
:class:`Verification` checks them in a background thread while the caller decodes the same files
(``rsprep patch``), so hashing costs little more than nothing: ``hashlib`` and file reads release the GIL.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import threading
import zipfile
import zlib
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from xml.etree import ElementTree

from rsprep.errors import InvalidProductError
from rsprep.inputs.safe_archive import PRODUCT_MTD, SafeArchive

MANIFEST_SAFE = "manifest.safe"
#: Bytes read and hashed at a time (large enough for hashlib to release the GIL, small enough to stream).
CHUNK = 4 << 20
#: checksumName in manifest.safe → hashlib name.
ALGORITHMS = {"MD5": "md5", "SHA3-256": "sha3_256", "SHA-256": "sha256", "SHA256": "sha256", "SHA-1": "sha1"}
REDOWNLOAD = "the product is corrupt or incomplete: download it again"


class IntegrityError(InvalidProductError):
    """Files of a product differ from its ``manifest.safe`` (size, checksum, zip CRC) or are missing."""

    def __init__(self, message: str, *, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = list(problems or [])


class _Product(Protocol):  # what is needed of rsprep.inputs.safe.S2Product
    path: Path
    safe_root: str
    level: str


@dataclass(frozen=True)
class ManifestEntry:
    """What ``manifest.safe`` says about one file."""

    path: str  # relative to the SAFE root, normalised ("GRANULE/.../B02_10m.jp2")
    size: int | None
    algorithm: str | None  # as written in the manifest ("MD5", "SHA3-256")
    checksum: str | None  # lower-case hex


@dataclass(frozen=True)
class Checked:
    """The outcome of checking files against ``manifest.safe``."""

    files: int  # how many files were compared
    problems: list[str]  # one line per file that differs (empty: all match)


def parse_manifest(data: bytes, shown: str) -> dict[str, ManifestEntry]:
    """The files listed in the ``manifest.safe`` text ``data`` (``shown`` names it in errors).

    Raises:
        IntegrityError: not well-formed XML, or no ``<dataObject>`` with a file location.
    """
    try:
        tree = ElementTree.fromstring(data)
    except ElementTree.ParseError as exc:
        raise IntegrityError(f"{shown} is not well-formed XML ({exc}); {REDOWNLOAD}") from exc
    entries: dict[str, ManifestEntry] = {}
    for obj in tree.iter():
        if _local(obj.tag) != "dataObject":
            continue
        for stream in (el for el in obj.iter() if _local(el.tag) == "byteStream"):
            entry = _entry(stream, shown)
            if entry is not None:
                entries[entry.path] = entry
    if not entries:
        raise IntegrityError(f"{shown} lists no files (no <dataObject> with a <fileLocation>); {REDOWNLOAD}")
    return entries


def _local(tag: Any) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _entry(stream: ElementTree.Element, shown: str) -> ManifestEntry | None:
    loc = next((el for el in stream.iter() if _local(el.tag) == "fileLocation"), None)
    href = loc.get("href") if loc is not None else None
    if not href:
        return None
    size_text = stream.get("size")
    try:
        size = int(size_text) if size_text is not None else None
    except ValueError as exc:
        raise IntegrityError(f"{shown}: size {size_text!r} of {href} is not a number; {REDOWNLOAD}") from exc
    check = next((el for el in stream.iter() if _local(el.tag) == "checksum"), None)
    algorithm = (check.get("checksumName") or "").strip().upper() if check is not None else ""
    value = (check.text or "").strip().lower() if check is not None else ""
    return ManifestEntry(
        path=posixpath.normpath(href.strip()).lstrip("/"),
        size=size,
        algorithm=algorithm or None,
        checksum=value or None,
    )


def read_manifest(source: SafeArchive, root: str) -> dict[str, ManifestEntry]:
    """The entries of the ``manifest.safe`` of the product in ``source`` at SAFE folder ``root``.

    Raises:
        IntegrityError: the manifest is missing, unreadable or malformed.
    """
    shown = source.shown(root, MANIFEST_SAFE)
    if source.size(root, MANIFEST_SAFE) is None:
        raise IntegrityError(
            f"{shown} is missing, so the product's files cannot be checked; download the product "
            "again, or pass --no-verify to use it unchecked",
            problems=[f"{MANIFEST_SAFE}: missing"],
        )
    try:
        with source.open_binary(root, MANIFEST_SAFE) as f:
            data = f.read()
    except (OSError, zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise IntegrityError(f"{shown} cannot be read ({exc}); {REDOWNLOAD}") from exc
    return parse_manifest(data, shown)


def product_inputs(product: _Product, band_paths: Iterable[str]) -> list[str]:
    """The files a stage reads to use ``band_paths``: product and tile metadata, then the band files."""
    bands = list(band_paths)
    granules = sorted({"/".join(p.split("/")[:2]) for p in bands if p.startswith("GRANULE/")})
    return [PRODUCT_MTD[product.level], *(f"{g}/MTD_TL.xml" for g in granules), *bands]


def check_size(source: SafeArchive, root: str, rel: str, entry: ManifestEntry | None) -> str | None:
    """What is wrong with the presence or size of file ``rel``, or None (cheap: no reading)."""
    if entry is None:
        return f"{rel}: not listed in {MANIFEST_SAFE}"
    found = source.size(root, rel)
    if found is None:
        return f"{rel}: missing ({MANIFEST_SAFE} lists it with {entry.size} bytes)"
    if entry.size is not None and found != entry.size:
        return f"{rel}: {found} bytes, {MANIFEST_SAFE} says {entry.size} bytes"
    return None


def check_content(
    source: SafeArchive, root: str, rel: str, entry: ManifestEntry, cancel: threading.Event | None = None
) -> str | None:
    """What is wrong with the content of file ``rel`` (checksum; CRC of a zip member), or None."""
    name = ALGORITHMS.get(entry.algorithm or "")
    h = hashlib.new(name) if name and entry.checksum else None
    read = 0
    try:
        with source.open_binary(root, rel) as f:
            while chunk := f.read(CHUNK):
                read += len(chunk)
                if h is not None:
                    h.update(chunk)
                if cancel is not None and cancel.is_set():
                    return None
    except zipfile.BadZipFile as exc:  # "Bad CRC-32 for file ..."
        return f"{rel}: zip member fails its CRC check ({exc})"
    except (zlib.error, EOFError) as exc:
        return f"{rel}: zip member cannot be decompressed ({exc})"
    except OSError as exc:
        return f"{rel}: cannot be read ({exc})"
    if entry.size is not None and read != entry.size:
        return f"{rel}: {read} bytes read, {MANIFEST_SAFE} says {entry.size} bytes"
    if h is not None and h.hexdigest() != entry.checksum:
        return f"{rel}: {entry.algorithm} {h.hexdigest()}, {MANIFEST_SAFE} says {entry.checksum}"
    return None


def integrity_error(product: _Product, problems: Sequence[str]) -> IntegrityError:
    """One error naming the product and every file that differs from its manifest."""
    return IntegrityError(
        f"{product.path}: {len(problems)} file(s) differ from {MANIFEST_SAFE}: "
        + "; ".join(problems)
        + f"; {REDOWNLOAD}",
        problems=list(problems),
    )


def verify_files(product: _Product, rels: Sequence[str], *, workers: int | None = None) -> Checked:
    """Compare the files ``rels`` (relative to the SAFE root) with the product's ``manifest.safe``.

    Problems are returned, not raised (a missing or malformed manifest is one problem too).
    """
    source = SafeArchive(product.path)
    try:
        entries = read_manifest(source, product.safe_root)
    except IntegrityError as exc:
        return Checked(0, [str(exc)])
    finally:
        source.close()

    def one(rel: str) -> str | None:
        src = SafeArchive(product.path)
        try:
            entry = entries.get(rel)
            return check_size(src, product.safe_root, rel, entry) or check_content(
                src, product.safe_root, rel, entry
            )
        finally:
            src.close()

    n = workers or min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=max(1, n)) as pool:
        found = list(pool.map(one, rels))
    return Checked(len(rels), [p for p in found if p is not None])


class Verification:
    """Check files against ``manifest.safe`` in a background thread; a context manager.

    Presence and sizes are checked at once (the constructor raises); contents are hashed in file
    order in a thread, so that each file is read while the caller decodes it. Leaving the ``with``
    block waits for the thread and raises :class:`IntegrityError` for any difference, also when the
    block failed (a corrupt file often fails to decode first: the mismatch is the better message).

    Raises:
        IntegrityError: the manifest is missing or malformed, or a file is missing or wrongly sized.
    """

    def __init__(self, product: _Product, rels: Sequence[str]) -> None:
        self._product = product
        self._problems: list[str] = []
        self._cancel = threading.Event()
        source = SafeArchive(product.path)
        try:
            entries = read_manifest(source, product.safe_root)
            sizes = [check_size(source, product.safe_root, r, entries.get(r)) for r in rels]
        except BaseException:
            source.close()
            raise
        if problems := [p for p in sizes if p is not None]:
            source.close()
            raise integrity_error(product, problems)
        self._thread = threading.Thread(
            target=self._run, args=(source, [entries[r] for r in rels]), name="rsprep-verify", daemon=True
        )
        self._thread.start()

    def _run(self, source: SafeArchive, entries: list[ManifestEntry]) -> None:
        try:
            for e in entries:
                if self._cancel.is_set():
                    return
                problem = check_content(source, self._product.safe_root, e.path, e, self._cancel)
                if problem is not None:
                    self._problems.append(problem)
        except Exception as exc:  # a problem of the product, not lost in a thread
            self._problems.append(f"{MANIFEST_SAFE}: check failed ({exc})")
        finally:
            source.close()

    def __enter__(self) -> Verification:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None and not issubclass(exc_type, Exception):  # KeyboardInterrupt, SystemExit
            self._cancel.set()
            self._thread.join()
            return False
        self._thread.join()
        if self._problems:
            raise integrity_error(self._product, self._problems) from exc
        return False
