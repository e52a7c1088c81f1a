"""Reading values out of Sentinel-2 metadata XML (namespaces already dropped by ``SafeArchive.read_xml``).

Small lookups (a child's text, the first element of a tag anywhere), the time formats the
products use, the tile geocoding of ``MTD_TL.xml`` (:class:`Geocoding`), and the product-level
blocks of ``MTD_MSIL2A.xml`` / ``MTD_MSIL1C.xml``: radiometry, special values and quality checks
(docs/inputs.md#sentinel-2).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from xml.etree import ElementTree

from rsprep.core.bands import BANDS_BY_ID, SPECTRAL_BANDS
from rsprep.errors import InvalidProductError


@dataclass(frozen=True)
class Geocoding:
    """Tile geocoding at one resolution, from ``MTD_TL.xml``."""

    resolution: int
    ulx: float
    uly: float
    xdim: float
    ydim: float
    nrows: int
    ncols: int

    @property
    def transform(self) -> tuple[float, float, float, float, float, float]:
        """GDAL-order affine coefficients (a, b, c, d, e, f) for ``rasterio.Affine``."""
        return (self.xdim, 0.0, self.ulx, 0.0, self.ydim, self.uly)


def child_text(root: ElementTree.Element, path: str, default: str | None = None) -> str | None:
    """The stripped text of the element at ``path`` below ``root``, or ``default``."""
    el = root.find(path)
    if el is None or el.text is None:
        return default
    return el.text.strip()


def iter_local(root: ElementTree.Element, tag: str) -> list[ElementTree.Element]:
    """Every element called ``tag`` in the tree of ``root``, in document order."""
    return [el for el in root.iter() if el.tag == tag]


def first_text(root: ElementTree.Element, tag: str) -> str | None:
    """The stripped text of the first element called ``tag`` that has non-blank text, or None."""
    for el in root.iter():
        if el.tag == tag and el.text is not None and el.text.strip():
            return el.text.strip()
    return None


def float_or_none(value: str | None) -> float | None:
    """``value`` as a float, or None when it is absent or not a number."""
    try:
        return None if value is None else float(value)
    except ValueError:
        return None


def parse_time(value: str | None) -> datetime | None:
    """An ISO 8601 metadata time (any number of fractional digits; UTC when no zone), or None."""
    if not value:
        return None
    v = value.strip().replace("Z", "+00:00")
    # Some products carry microseconds with more or fewer than 6 digits.
    m = re.match(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?(.*)$", v)
    if m is None:
        return None
    frac = (m[2] or "0")[:6].ljust(6, "0")
    tz = m[3] or "+00:00"
    return datetime.fromisoformat(f"{m[1]}.{frac}{tz}")


def compact_time(value: str) -> datetime:
    """A ``YYYYMMDDTHHMMSS`` time from a product name, in UTC."""
    return datetime.strptime(value + "+0000", "%Y%m%dT%H%M%S%z")


def parse_geocoding(tl: ElementTree.Element, shown: str) -> tuple[dict[int, Geocoding], int, str]:
    """The tile geocoding of ``MTD_TL.xml`` ``tl``: (geocoding by resolution, EPSG code, CRS name).

    Raises:
        InvalidProductError: no Tile_Geocoding, a CRS that is not an EPSG code, malformed or no sizes.
    """
    tg = tl.find(".//Tile_Geocoding")
    if tg is None:
        raise InvalidProductError(f"{shown} has no Tile_Geocoding")
    code = child_text(tg, "HORIZONTAL_CS_CODE") or ""
    mm = re.fullmatch(r"EPSG:(\d+)", code)
    if mm is None:
        raise InvalidProductError(f"{shown}: HORIZONTAL_CS_CODE {code!r} is not an EPSG code")
    sizes = {}
    for s in tg.findall("Size"):
        try:
            sizes[int(s.get("resolution", "0"))] = (
                int(child_text(s, "NROWS") or 0),
                int(child_text(s, "NCOLS") or 0),
            )
        except ValueError as exc:
            raise InvalidProductError(f"{shown}: malformed Size element ({exc})") from exc
    geocoding: dict[int, Geocoding] = {}
    for g in tg.findall("Geoposition"):
        res = int(g.get("resolution", "0"))
        if res not in sizes:
            continue
        try:
            geocoding[res] = Geocoding(
                resolution=res,
                ulx=float(child_text(g, "ULX") or "nan"),
                uly=float(child_text(g, "ULY") or "nan"),
                xdim=float(child_text(g, "XDIM") or "nan"),
                ydim=float(child_text(g, "YDIM") or "nan"),
                nrows=sizes[res][0],
                ncols=sizes[res][1],
            )
        except ValueError as exc:
            raise InvalidProductError(f"{shown}: malformed Geoposition at {res} m ({exc})") from exc
    if not geocoding:
        raise InvalidProductError(f"{shown} declares no Size/Geoposition pairs")
    return geocoding, int(mm[1]), child_text(tg, "HORIZONTAL_CS_NAME") or ""


def iso(value: datetime | None) -> str | None:
    """``value`` as ISO 8601 with ``Z`` for UTC, or None."""
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def parse_radiometry(mtd: ElementTree.Element, level: str, shown: str) -> tuple[float, dict[str, int], bool]:
    """The quantification value and per-band add offsets of product metadata ``mtd``.

    L2A products carry ``BOA_QUANTIFICATION_VALUE`` and ``BOA_ADD_OFFSET``, L1C products
    ``QUANTIFICATION_VALUE`` and ``RADIO_ADD_OFFSET``. Returns (quantification value, offset per band
    name, 0 where absent, whether the metadata has any offset element).

    Raises:
        InvalidProductError: no positive quantification value.
    """
    if level == "L2A":
        quant = float_or_none(first_text(mtd, "BOA_QUANTIFICATION_VALUE"))
        offset_tag = "BOA_ADD_OFFSET"
    else:
        quant = float_or_none(first_text(mtd, "QUANTIFICATION_VALUE"))
        offset_tag = "RADIO_ADD_OFFSET"
    if quant is None or quant <= 0:
        raise InvalidProductError(
            f"{shown} has no valid {'BOA_' if level == 'L2A' else ''}QUANTIFICATION_VALUE"
        )
    offsets = {b: 0 for b in (*SPECTRAL_BANDS, "B10")}
    offset_elements = iter_local(mtd, offset_tag)
    for el in offset_elements:
        bid = el.get("band_id")
        if bid is None or el.text is None or int(bid) not in BANDS_BY_ID:
            continue
        offsets[BANDS_BY_ID[int(bid)].name] = int(float(el.text))
    return quant, offsets, bool(offset_elements)


def parse_special_values(mtd: ElementTree.Element) -> dict[str, int]:
    """The ``Special_Values`` of product metadata ``mtd``: label → pixel value, NODATA and SATURATED set."""
    special: dict[str, int] = {}
    for sv in iter_local(mtd, "Special_Values"):
        label, idx = child_text(sv, "SPECIAL_VALUE_TEXT"), child_text(sv, "SPECIAL_VALUE_INDEX")
        if label and idx is not None:
            special[label] = int(idx)
    special.setdefault("NODATA", 0)
    special.setdefault("SATURATED", 65535)
    return special


def parse_quality(mtd: ElementTree.Element) -> dict[str, str]:
    """Every quality check listed in product metadata ``mtd`` (check → PASSED / FAILED / ...), sorted."""
    checks: dict[str, str] = {}
    for el in iter_local(mtd, "quality_check"):
        kind = el.get("checkType")
        if kind and el.text:
            checks[kind] = el.text.strip()
    # Older products: <GEOMETRIC_QUALITY_FLAG>PASSED</GEOMETRIC_QUALITY_FLAG> inside Quality_Inspections.
    for qi in iter_local(mtd, "Quality_Inspections"):
        for el in qi:
            if el.tag.endswith("_FLAG") and el.text:
                checks.setdefault(el.tag.removesuffix("_FLAG"), el.text.strip())
    return dict(sorted(checks.items()))
