"""Read Sentinel-2 SAFE products (L2A or L1C, folder or ``.zip``) into a typed description.

``MTD_MSIL2A.xml`` / ``MTD_MSIL1C.xml`` (product) and ``GRANULE/*/MTD_TL.xml`` (tile geocoding) are
the sources of truth: radiometric constants are read from them, never inferred from dates or names.
Every band file that the metadata lists is checked for existence and declared size, because GDAL
silently returns zeros for a missing tile file.
"""

from __future__ import annotations

import logging
import posixpath
import re
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from rsprep.core.bands import BANDS_BY_ID, SCL, SCL_RESOLUTION, SPECTRAL_BANDS, band, normalize_band_name
from rsprep.core.grid import parse_product_uri
from rsprep.errors import (
    InputNotFoundError,
    InvalidParameterError,
    InvalidProductError,
    MissingBandFilesError,
)

log = logging.getLogger(__name__)

#: The quality checks that decide whether a product's patches may carry labels (docs/inputs.md#sentinel-2).
REQUIRED_QUALITY_CHECKS: tuple[str, ...] = (
    "GENERAL_QUALITY",
    "GEOMETRIC_QUALITY",
    "RADIOMETRIC_QUALITY",
    "SENSOR_QUALITY",
)
_PRODUCT_MTD = {"L2A": "MTD_MSIL2A.xml", "L1C": "MTD_MSIL1C.xml"}
_MAX_SEARCH_DEPTH = 4


# --------------------------------------------------------------------------------------------
# Typed description
# --------------------------------------------------------------------------------------------
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


@dataclass(frozen=True)
class BandFile:
    """One band file of the product and what was found on disk."""

    band: str  # B01 ... B12, B8A, or SCL
    resolution: int
    path: str  # relative to the SAFE root, with extension
    listed: bool  # the metadata lists this file
    exists: bool
    declared_shape: tuple[int, int] | None  # (rows, cols) from MTD_TL.xml
    actual_shape: tuple[int, int] | None = None
    error: str | None = None  # why the file could not be opened, if it exists but is unreadable

    @property
    def ok(self) -> bool:
        return (
            self.listed
            and self.exists
            and self.error is None
            and self.actual_shape is not None
            and self.actual_shape == self.declared_shape
        )

    @property
    def problem(self) -> str | None:
        """One line describing what is wrong with this file, or None."""
        where = f"{self.band} ({self.resolution} m)"
        if not self.listed:
            return f"{where}: not listed in the product metadata"
        if not self.exists:
            return f"{where}: file {self.path} is missing"
        if self.error is not None:
            return f"{where}: file {self.path} cannot be read: {self.error}"
        if self.declared_shape is None:
            return f"{where}: MTD_TL.xml declares no size for {self.resolution} m"
        if self.actual_shape != self.declared_shape:
            ar, ac = self.actual_shape or (0, 0)
            dr, dc = self.declared_shape
            return f"{where}: file {self.path} is {ac} × {ar} px but MTD_TL.xml declares {dc} × {dr} px"
        return None


@dataclass(frozen=True)
class S2Product:
    """Everything rsprep needs to know about one Sentinel-2 product before touching pixels."""

    path: Path  # what the user gave: SAFE folder or .zip
    safe_root: str  # the SAFE folder inside ``path`` ("" when ``path`` is the SAFE folder itself)
    level: str  # "L2A" or "L1C"
    product_uri: str
    patch_prefix: str
    mission: str
    tile_id: str  # "T33UUP"
    relative_orbit: int
    datatake_time: datetime
    sensing_time: datetime | None
    generation_time: datetime | None
    processing_baseline: str
    product_format: str
    epsg: int
    crs_name: str
    geocoding: dict[int, Geocoding]
    quantification_value: float
    add_offsets: dict[str, int]  # band name → BOA_ADD_OFFSET (L2A) / RADIO_ADD_OFFSET (L1C); 0 if absent
    offsets_in_metadata: bool
    special_values: dict[str, int]
    quality_checks: dict[str, str]  # every check listed in the metadata, PASSED / FAILED / ...
    cloud_cover_percent: float | None
    snow_ice_percent: float | None
    cloud_shadow_percent: float | None
    nodata_percent: float | None
    bands: tuple[BandFile, ...] = field(default_factory=tuple)

    # -- verdicts ------------------------------------------------------------------------------
    @property
    def failed_quality_checks(self) -> list[str]:
        """The required checks that are not PASSED (absent counts as not passed)."""
        return [c for c in REQUIRED_QUALITY_CHECKS if self.quality_checks.get(c, "ABSENT") != "PASSED"]

    @property
    def quality_passed(self) -> bool:
        return not self.failed_quality_checks

    @property
    def is_utm(self) -> bool:
        return 32601 <= self.epsg <= 32660 or 32701 <= self.epsg <= 32760

    @property
    def tile_size_m(self) -> float:
        g = self.geocoding[min(self.geocoding)]
        return g.ncols * g.xdim

    @property
    def nodata_value(self) -> int:
        return self.special_values.get("NODATA", 0)

    @property
    def problems(self) -> list[str]:
        """Every band-file problem, one line each."""
        return [p for b in self.bands if (p := b.problem) is not None]

    def band_file(self, name: str) -> BandFile:
        """The file of band ``name`` (``B02`` ... or ``SCL``) at its native resolution."""
        key = normalize_band_name(name)
        for b in self.bands:
            if b.band == key:
                return b
        raise KeyError(f"{self.product_uri} has no {key} band file (level {self.level})")

    def gdal_path(self, band_file: BandFile) -> str:
        """A path GDAL/rasterio can open for ``band_file`` (``/vsizip/`` inside zips)."""
        return _gdal_path(self.path, self.safe_root, band_file.path)

    def require_bands(self, names: Iterable[str]) -> list[BandFile]:
        """Return the band files of ``names``, all present with their declared size.

        Raises:
            MissingBandFilesError: listing every missing, unreadable or wrongly sized file.
        """
        files = [self.band_file(n) for n in names]
        problems = [p for f in files if (p := f.problem) is not None]
        if problems:
            raise MissingBandFilesError(
                f"{self.path}: {len(problems)} band file(s) unusable: "
                + "; ".join(problems)
                + ". Re-download the product, or restrict the run to the bands that exist (--bands).",
                problems=problems,
            )
        return files

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (the ``rsprep inspect --json`` output)."""
        d = asdict(self)
        d["path"] = str(self.path)
        for key in ("datatake_time", "sensing_time", "generation_time"):
            d[key] = _iso(getattr(self, key))
        d["geocoding"] = {str(k): asdict(v) for k, v in sorted(self.geocoding.items())}
        d["bands"] = [
            {
                **asdict(b),
                "declared_shape": list(b.declared_shape) if b.declared_shape else None,
                "actual_shape": list(b.actual_shape) if b.actual_shape else None,
                "ok": b.ok,
            }
            for b in self.bands
        ]
        d["quality_passed"] = self.quality_passed
        d["failed_quality_checks"] = self.failed_quality_checks
        d["problems"] = self.problems
        return d


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


# --------------------------------------------------------------------------------------------
# Sources: a SAFE folder or a zip
# --------------------------------------------------------------------------------------------
class _Source:
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
                for level, mtd in _PRODUCT_MTD.items():
                    if base == mtd and name.count("/") <= _MAX_SEARCH_DEPTH:
                        hits.append((posixpath.dirname(name), level))
        else:
            for level, mtd in _PRODUCT_MTD.items():
                if (self.path / mtd).is_file():
                    hits.append(("", level))
            if not hits:
                for level, mtd in _PRODUCT_MTD.items():
                    for depth in range(1, _MAX_SEARCH_DEPTH + 1):
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


def _gdal_path(path: Path, root: str, rel: str) -> str:
    inner = posixpath.join(root, rel) if root else rel
    if path.is_file():
        return f"/vsizip/{path.resolve()}/{inner}"
    return str(path / inner)


# --------------------------------------------------------------------------------------------
# XML helpers
# --------------------------------------------------------------------------------------------
def _text(root: ElementTree.Element, path: str, default: str | None = None) -> str | None:
    el = root.find(path)
    if el is None or el.text is None:
        return default
    return el.text.strip()


def _iter_local(root: ElementTree.Element, tag: str) -> list[ElementTree.Element]:
    return [el for el in root.iter() if el.tag == tag]


def _first_text(root: ElementTree.Element, tag: str) -> str | None:
    for el in root.iter():
        if el.tag == tag and el.text is not None and el.text.strip():
            return el.text.strip()
    return None


def _float_or_none(value: str | None) -> float | None:
    try:
        return None if value is None else float(value)
    except ValueError:
        return None


def _parse_time(value: str | None) -> datetime | None:
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


def _compact_time(value: str) -> datetime:
    return datetime.strptime(value + "+0000", "%Y%m%dT%H%M%S%z")


# --------------------------------------------------------------------------------------------
# The reader
# --------------------------------------------------------------------------------------------
def read_product(path: str | Path, *, check_files: bool = True) -> S2Product:
    """Describe the Sentinel-2 product at ``path`` (SAFE folder, a folder holding one, or ``.zip``).

    Args:
        path: the product.
        check_files: open every band file to compare its size with the declared size.

    Returns:
        The product description; band-file problems are reported in ``.problems``, not raised.

    Raises:
        InputNotFoundError: ``path`` does not exist.
        InvalidProductError: no or malformed product metadata.
    """
    p = Path(path)
    if p.name.endswith((".xml",)) and p.is_file():
        p = p.parent
    if not p.exists():
        raise InputNotFoundError(f"{p} does not exist; pass a Sentinel-2 .SAFE folder or .zip")
    source = _Source(p)
    try:
        return _read(source, check_files=check_files)
    finally:
        source.close()


def _read(source: _Source, *, check_files: bool) -> S2Product:
    root_dir, level = source.find_metadata()
    mtd_name = _PRODUCT_MTD[level]
    mtd = source.read_xml(root_dir, mtd_name)
    shown = f"{source.path}: {mtd_name}"

    product_uri = _first_text(mtd, "PRODUCT_URI")
    if not product_uri:
        raise InvalidProductError(
            f"{shown} has no PRODUCT_URI; is this a pre-2016 product? Those are not supported"
        )
    try:
        name = parse_product_uri(product_uri)
    except InvalidParameterError as exc:
        raise InvalidProductError(f"{shown}: {exc}") from exc
    product_format = _first_text(mtd, "PRODUCT_FORMAT") or "SAFE_COMPACT"
    image_files = [el.text.strip() for el in _iter_local(mtd, "IMAGE_FILE") if el.text]
    if not image_files:
        raise InvalidProductError(
            f"{shown} lists no IMAGE_FILE entries; only SAFE_COMPACT products are supported"
        )

    granule = image_files[0].split("/")[1] if image_files[0].startswith("GRANULE/") else None
    if granule is None:
        granules = source.glob_granules(root_dir)
        if len(granules) != 1:
            raise InvalidProductError(f"{shown}: cannot tell which GRANULE folder holds the tile")
        granule = granules[0]
    tl = source.read_xml(root_dir, f"GRANULE/{granule}/MTD_TL.xml")
    geocoding, epsg, crs_name = _parse_geocoding(tl, f"{source.path}: GRANULE/{granule}/MTD_TL.xml")

    datatake = _parse_time(
        _first_text(mtd, "DATATAKE_SENSING_START") or _first_text(mtd, "PRODUCT_START_TIME")
    )
    if datatake is None:
        datatake = _compact_time(name.datatake)

    if level == "L2A":
        quant = _float_or_none(_first_text(mtd, "BOA_QUANTIFICATION_VALUE"))
        offset_tag = "BOA_ADD_OFFSET"
    else:
        quant = _float_or_none(_first_text(mtd, "QUANTIFICATION_VALUE"))
        offset_tag = "RADIO_ADD_OFFSET"
    if quant is None or quant <= 0:
        raise InvalidProductError(
            f"{shown} has no valid {'BOA_' if level == 'L2A' else ''}QUANTIFICATION_VALUE"
        )
    offsets = {b: 0 for b in (*SPECTRAL_BANDS, "B10")}
    offset_elements = _iter_local(mtd, offset_tag)
    for el in offset_elements:
        bid = el.get("band_id")
        if bid is None or el.text is None or int(bid) not in BANDS_BY_ID:
            continue
        offsets[BANDS_BY_ID[int(bid)].name] = int(float(el.text))

    special: dict[str, int] = {}
    for sv in _iter_local(mtd, "Special_Values"):
        label, idx = _text(sv, "SPECIAL_VALUE_TEXT"), _text(sv, "SPECIAL_VALUE_INDEX")
        if label and idx is not None:
            special[label] = int(idx)
    special.setdefault("NODATA", 0)
    special.setdefault("SATURATED", 65535)

    bands = _band_files(source, root_dir, level, image_files, geocoding, name.tile, check_files=check_files)

    return S2Product(
        path=source.path,
        safe_root=root_dir,
        level=level,
        product_uri=product_uri,
        patch_prefix=name.patch_prefix,
        mission=name.mission,
        tile_id="T" + name.tile,
        relative_orbit=name.relative_orbit,
        datatake_time=datatake,
        sensing_time=_parse_time(_first_text(tl, "SENSING_TIME")),
        generation_time=_parse_time(_first_text(mtd, "GENERATION_TIME")),
        processing_baseline=_first_text(mtd, "PROCESSING_BASELINE")
        or f"{name.baseline[:2]}.{name.baseline[2:]}",
        product_format=product_format,
        epsg=epsg,
        crs_name=crs_name,
        geocoding=geocoding,
        quantification_value=quant,
        add_offsets=offsets,
        offsets_in_metadata=bool(offset_elements),
        special_values=special,
        quality_checks=_parse_quality(mtd),
        cloud_cover_percent=_float_or_none(_first_text(mtd, "Cloud_Coverage_Assessment")),
        snow_ice_percent=_float_or_none(_first_text(mtd, "SNOW_ICE_PERCENTAGE")),
        cloud_shadow_percent=_float_or_none(_first_text(mtd, "CLOUD_SHADOW_PERCENTAGE")),
        nodata_percent=_float_or_none(_first_text(mtd, "NODATA_PIXEL_PERCENTAGE")),
        bands=tuple(bands),
    )


def _parse_geocoding(tl: ElementTree.Element, shown: str) -> tuple[dict[int, Geocoding], int, str]:
    tg = tl.find(".//Tile_Geocoding")
    if tg is None:
        raise InvalidProductError(f"{shown} has no Tile_Geocoding")
    code = _text(tg, "HORIZONTAL_CS_CODE") or ""
    mm = re.fullmatch(r"EPSG:(\d+)", code)
    if mm is None:
        raise InvalidProductError(f"{shown}: HORIZONTAL_CS_CODE {code!r} is not an EPSG code")
    sizes = {}
    for s in tg.findall("Size"):
        try:
            sizes[int(s.get("resolution", "0"))] = (int(_text(s, "NROWS") or 0), int(_text(s, "NCOLS") or 0))
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
                ulx=float(_text(g, "ULX") or "nan"),
                uly=float(_text(g, "ULY") or "nan"),
                xdim=float(_text(g, "XDIM") or "nan"),
                ydim=float(_text(g, "YDIM") or "nan"),
                nrows=sizes[res][0],
                ncols=sizes[res][1],
            )
        except ValueError as exc:
            raise InvalidProductError(f"{shown}: malformed Geoposition at {res} m ({exc})") from exc
    if not geocoding:
        raise InvalidProductError(f"{shown} declares no Size/Geoposition pairs")
    return geocoding, int(mm[1]), _text(tg, "HORIZONTAL_CS_NAME") or ""


def _parse_quality(mtd: ElementTree.Element) -> dict[str, str]:
    checks: dict[str, str] = {}
    for el in _iter_local(mtd, "quality_check"):
        kind = el.get("checkType")
        if kind and el.text:
            checks[kind] = el.text.strip()
    # Older products: <GEOMETRIC_QUALITY_FLAG>PASSED</GEOMETRIC_QUALITY_FLAG> inside Quality_Inspections.
    for qi in _iter_local(mtd, "Quality_Inspections"):
        for el in qi:
            if el.tag.endswith("_FLAG") and el.text:
                checks.setdefault(el.tag.removesuffix("_FLAG"), el.text.strip())
    return dict(sorted(checks.items()))


def _band_files(
    source: _Source,
    root: str,
    level: str,
    image_files: Sequence[str],
    geocoding: dict[int, Geocoding],
    tile: str,
    *,
    check_files: bool,
) -> list[BandFile]:
    wanted: list[tuple[str, int]] = [(b, band(b).resolution) for b in SPECTRAL_BANDS]
    if level == "L2A":
        wanted.append((SCL, SCL_RESOLUTION))
    out = []
    for name, res in wanted:
        if level == "L2A":
            suffix = f"_{name}_{res}m"
        else:  # L1C: IMG_DATA/T33UUP_20170613T101031_B01, all bands in one folder
            suffix = f"_{name}"
        listed = [f for f in image_files if f.endswith(suffix)]
        declared = geocoding.get(res)
        declared_shape = (declared.nrows, declared.ncols) if declared else None
        if listed:
            rel = listed[0] + ".jp2"
        else:  # report where the file would be, so the user knows what to look for
            rel = f"GRANULE/*/IMG_DATA/R{res}m/T{tile}_*{suffix}.jp2"
        exists = bool(listed) and source.exists(root, rel)
        actual, error = None, None
        if exists and check_files:
            actual, error = _raster_shape(_gdal_path(source.path, root, rel))
        out.append(
            BandFile(
                band=name,
                resolution=res,
                path=rel,
                listed=bool(listed),
                exists=exists,
                declared_shape=declared_shape,
                actual_shape=actual,
                error=error,
            )
        )
    return out


def _raster_shape(gdal_path: str) -> tuple[tuple[int, int] | None, str | None]:
    import rasterio
    from rasterio.errors import RasterioError

    try:
        with rasterio.open(gdal_path) as ds:
            return (ds.height, ds.width), None
    except (RasterioError, OSError) as exc:
        return None, str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__


# --------------------------------------------------------------------------------------------
# Presentation (used by `rsprep inspect`, but callable from the library)
# --------------------------------------------------------------------------------------------
def format_product(product: S2Product) -> str:
    """A readable multi-line summary of ``product``."""
    p = product
    lines = [
        f"Product        {p.product_uri}",
        f"Path           {p.path}" + (f" [{p.safe_root}]" if p.safe_root else ""),
        f"Level          {p.level} ({p.product_format})",
        f"Patch prefix   {p.patch_prefix}",
        f"Tile           {p.tile_id}  {p.crs_name} (EPSG:{p.epsg}){'' if p.is_utm else '  NOT UTM'}",
        f"Datatake       {_iso(p.datatake_time)}  orbit R{p.relative_orbit:03d}  {p.mission}",
        f"Sensing time   {_iso(p.sensing_time) or '-'}",
        f"Baseline       {p.processing_baseline}",
        f"Quantification {p.quantification_value:g}",
    ]
    offs = sorted(set(p.add_offsets[b] for b in SPECTRAL_BANDS))
    if not p.offsets_in_metadata:
        lines.append("Add offset     0 (not in metadata)")
    elif len(offs) == 1:
        lines.append(f"Add offset     {offs[0]} (all bands)")
    else:
        lines.append("Add offset     " + ", ".join(f"{b}={p.add_offsets[b]}" for b in SPECTRAL_BANDS))
    lines.append("Special values " + ", ".join(f"{k}={v}" for k, v in sorted(p.special_values.items())))
    lines.append("Geocoding")
    for res, g in sorted(p.geocoding.items()):
        lines.append(f"  {res:>2} m  UL ({g.ulx:.0f}, {g.uly:.0f})  {g.ncols} × {g.nrows} px")
    verdict = "PASSED" if p.quality_passed else "FAILED (" + ", ".join(p.failed_quality_checks) + ")"
    lines.append(f"Quality        {verdict}")
    for k, v in p.quality_checks.items():
        lines.append(f"  {k:<22} {v}")
    lines.append(
        "Cover          "
        + f"cloud {_pct(p.cloud_cover_percent)}  snow/ice {_pct(p.snow_ice_percent)}  "
        + f"cloud shadow {_pct(p.cloud_shadow_percent)}  nodata {_pct(p.nodata_percent)}"
    )
    lines.append("Band files")
    for b in p.bands:
        if b.ok:
            state = "ok"
        elif not b.listed:
            state = "NOT LISTED"
        elif not b.exists:
            state = "MISSING"
        elif b.error:
            state = "UNREADABLE"
        elif b.actual_shape is None:
            state = "not checked"
        else:
            state = f"SIZE MISMATCH ({b.actual_shape[1]} × {b.actual_shape[0]} px)"
        size = f"{b.declared_shape[1]} × {b.declared_shape[0]}" if b.declared_shape else "?"
        lines.append(f"  {b.band:<4} {b.resolution:>2} m  {size:>13}  {state:<12} {b.path}")
    problems = p.problems
    if problems:
        lines.append(f"Problems       {len(problems)}")
        lines.extend(f"  - {x}" for x in problems)
    else:
        lines.append("Problems       none")
    return "\n".join(lines)


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f} %"
