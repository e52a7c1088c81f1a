"""Read access to the files of a Sentinel-2 SAFE product, as a folder or inside a ``.zip``.

The product metadata is found here (``MTD_MSIL2A.xml`` / ``MTD_MSIL1C.xml``, at most a few folders
deep), XML files are read with their namespaces dropped, and files get the path GDAL opens them by
(``/vsizip/`` inside zips). What the metadata says is interpreted by ``rsprep.inputs.safe`` and
``rsprep.inputs.safe_xml``; band files are checked and read by ``rsprep.inputs.safe_bands``
(docs/inputs.md#sentinel-2).
"""

from __future__ import annotations

import posixpath
import zipfile
from pathlib import Path
from typing import BinaryIO
from xml.etree import ElementTree

from rsprep.errors import InvalidProductError

#: The product metadata file of each processing level.
PRODUCT_MTD = {"L2A": "MTD_MSIL2A.xml", "L1C": "MTD_MSIL1C.xml"}
#: How many folders deep the product metadata is looked for.
MAX_SEARCH_DEPTH = 4


class SafeArchive:
    """Read access to the files of a SAFE product, as a folder or inside a zip."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._zip: zipfile.ZipFile | None = None
        self._names: set[str] = set()
        if path.is_file():
            if not zipfile.is_zipfile(path):
                raise InvalidProductError(
                    f"{path} is neither a SAFE folder nor a readable .zip archive; "
                    "pass the product's .SAFE folder or the .zip as downloaded"
                )
            try:
                self._zip = zipfile.ZipFile(path)
                self._names = {n for n in self._zip.namelist() if not n.endswith("/")}
            except (zipfile.BadZipFile, OSError) as exc:
                raise InvalidProductError(
                    f"{path}: corrupted zip archive ({exc}); download it again"
                ) from exc

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()

    def find_metadata(self) -> tuple[str, str]:
        """Return (safe_root, level) of the single product metadata file in this source."""
        hits: list[tuple[str, str]] = []
        if self._zip is not None:
            for name in self._names:
                base = posixpath.basename(name)
                for level, mtd in PRODUCT_MTD.items():
                    if base == mtd and name.count("/") <= MAX_SEARCH_DEPTH:
                        hits.append((posixpath.dirname(name), level))
        else:
            for level, mtd in PRODUCT_MTD.items():
                if (self.path / mtd).is_file():
                    hits.append(("", level))
            if not hits:
                for level, mtd in PRODUCT_MTD.items():
                    for depth in range(1, MAX_SEARCH_DEPTH + 1):
                        pattern = "/".join(["*"] * depth) + "/" + mtd
                        hits.extend(
                            (p.parent.relative_to(self.path).as_posix(), level)
                            for p in self.path.glob(pattern)
                        )
        hits = sorted(set(hits))
        if not hits:
            raise InvalidProductError(
                f"{self.path}: no MTD_MSIL2A.xml or MTD_MSIL1C.xml found; "
                "pass a Sentinel-2 .SAFE folder or its .zip"
            )
        if len(hits) > 1:
            listed = ", ".join(h[0] or "." for h in hits)
            raise InvalidProductError(
                f"{self.path} holds {len(hits)} Sentinel-2 products ({listed}); pass one of them"
            )
        return hits[0]

    def _join(self, root: str, rel: str) -> str:
        return posixpath.join(root, rel) if root else rel

    def exists(self, root: str, rel: str) -> bool:
        if self._zip is not None:
            return self._join(root, rel) in self._names
        return (self.path / self._join(root, rel)).is_file()

    def shown(self, root: str, rel: str) -> str:
        """How a file of this product is named in messages (``zip!member`` inside zips)."""
        full = self._join(root, rel)
        return f"{self.path}/{full}" if self._zip is None else f"{self.path}!{full}"

    def size(self, root: str, rel: str) -> int | None:
        """The size in bytes of a file (uncompressed, for a zip member), or None when it is missing."""
        full = self._join(root, rel)
        if self._zip is not None:
            return self._zip.getinfo(full).file_size if full in self._names else None
        try:
            return (self.path / full).stat().st_size
        except FileNotFoundError:
            return None

    def open_binary(self, root: str, rel: str) -> BinaryIO:
        """A binary reader of a file; a zip member's CRC is checked when it is read to its end."""
        full = self._join(root, rel)
        if self._zip is not None:
            return self._zip.open(full)
        return open(self.path / full, "rb")  # the caller closes it

    def read_xml(self, root: str, rel: str) -> ElementTree.Element:
        full = self._join(root, rel)
        shown = f"{self.path}/{full}" if self._zip is None else f"{self.path}!{full}"
        try:
            if self._zip is not None:
                data = self._zip.read(full)
            else:
                data = (self.path / full).read_bytes()
        except KeyError as exc:
            raise InvalidProductError(
                f"{shown} is missing; the product is incomplete, download it again"
            ) from exc
        except FileNotFoundError as exc:
            raise InvalidProductError(
                f"{shown} is missing; the product is incomplete, download it again"
            ) from exc
        except (zipfile.BadZipFile, OSError) as exc:
            raise InvalidProductError(f"{shown} cannot be read ({exc}); download the product again") from exc
        try:
            tree = ElementTree.fromstring(data)
        except ElementTree.ParseError as exc:
            raise InvalidProductError(
                f"{shown} is not well-formed XML ({exc}); download the product again"
            ) from exc
        for el in tree.iter():  # drop namespaces: the PSD versions differ only there
            if isinstance(el.tag, str) and "}" in el.tag:
                el.tag = el.tag.split("}", 1)[1]
        return tree

    def glob_granules(self, root: str) -> list[str]:
        prefix = self._join(root, "GRANULE/")
        if self._zip is not None:
            return sorted(
                {
                    n[len(prefix) :].split("/", 1)[0]
                    for n in self._names
                    if n.startswith(prefix) and n.endswith("/MTD_TL.xml")
                }
            )
        base = self.path / prefix
        return sorted(p.parent.name for p in base.glob("*/MTD_TL.xml")) if base.is_dir() else []


def gdal_path(path: Path, root: str, rel: str) -> str:
    inner = posixpath.join(root, rel) if root else rel
    if path.is_file():
        return f"/vsizip/{path.resolve()}/{inner}"
    return str(path / inner)
