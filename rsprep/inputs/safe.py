"""Read Sentinel-2 SAFE products (L2A or L1C, folder or ``.zip``) into a typed description.

``MTD_MSIL2A.xml`` / ``MTD_MSIL1C.xml`` (product) and ``GRANULE/*/MTD_TL.xml`` (tile geocoding) are
the sources of truth: radiometric constants are read from them, never inferred from dates or names.
Every band file that the metadata lists is checked for existence and declared size, because GDAL
silently returns zeros for a missing tile file (docs/inputs.md#sentinel-2).

File access (folder or zip, GDAL paths) is in ``rsprep.inputs.safe_archive``; the band files
(:class:`BandFile`, checking and reading them) in ``rsprep.inputs.safe_bands``; the XML lookups, the
tile geocoding (:class:`Geocoding`) and the product-level blocks in ``rsprep.inputs.safe_xml``; the
printed summary is ``rsprep.inputs.safe_describe.format_product``. ``BandFile`` and ``Geocoding``
are importable from here too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from rsprep.core.bands import normalize_band_name
from rsprep.core.grid import ProductName, TileGrid, parse_product_uri, patches_per_side, season
from rsprep.errors import (
    InputNotFoundError,
    InvalidParameterError,
    InvalidProductError,
    MissingBandFilesError,
)
from rsprep.inputs.safe_archive import PRODUCT_MTD, SafeArchive, gdal_path
from rsprep.inputs.safe_bands import BandFile, band_files
from rsprep.inputs.safe_xml import (
    Geocoding,
    compact_time,
    first_text,
    float_or_none,
    iso,
    iter_local,
    parse_geocoding,
    parse_quality,
    parse_radiometry,
    parse_special_values,
    parse_time,
)

log = logging.getLogger(__name__)

#: The quality checks that decide whether a product's patches may carry labels (docs/inputs.md#sentinel-2).
REQUIRED_QUALITY_CHECKS: tuple[str, ...] = (
    "GENERAL_QUALITY",
    "GEOMETRIC_QUALITY",
    "RADIOMETRIC_QUALITY",
    "SENSOR_QUALITY",
)


# --------------------------------------------------------------------------------------------
# Typed description
# --------------------------------------------------------------------------------------------
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
        return gdal_path(self.path, self.safe_root, band_file.path)

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

    def tile_grid(self, patch_size: int) -> TileGrid:
        """The complete grid of ``patch_size`` m patches of this product's tile (docs/grid.md).

        Raises:
            InvalidParameterError: the tile holds no patch of that size.
        """
        g = self.geocoding[min(self.geocoding)]
        n = patches_per_side(self.tile_size_m, patch_size)
        if n < 1:
            raise InvalidParameterError(
                f"{self.path}: tile side {self.tile_size_m:g} m holds no {patch_size} m patch; "
                "use a smaller --patch-size"
            )
        return TileGrid(
            tile_id=self.tile_id,
            epsg=self.epsg,
            ulx=g.ulx,
            uly=g.uly,
            tile_size_m=self.tile_size_m,
            patch_size=patch_size,
            n=n,
            patch_prefix=self.patch_prefix,
        )

    def source_files(self, files: Iterable[BandFile]) -> list[Path]:
        """The files whose size and modification time stand for this product and its band ``files``."""
        if self.path.is_file():  # a zip: its size and mtime cover every member
            return [self.path]
        root = self.path / self.safe_root if self.safe_root else self.path
        mtd = "MTD_MSIL2A.xml" if self.level == "L2A" else "MTD_MSIL1C.xml"
        return [root / mtd, *[root / f.path for f in files]]

    def facts(self, band_names: Sequence[str]) -> dict[str, Any]:
        """What the work store records about this product (manifest ``product``, docs/workstore.md)."""
        return {
            "path": str(self.path),
            "product_uri": self.product_uri,
            "patch_prefix": self.patch_prefix,
            "level": self.level,
            "mission": self.mission,
            "tile_id": self.tile_id,
            "relative_orbit": self.relative_orbit,
            "epsg": self.epsg,
            "datatake_time": iso(self.datatake_time),
            "sensing_time": iso(self.sensing_time or self.datatake_time),
            "season": season(self.sensing_time or self.datatake_time),
            "processing_baseline": self.processing_baseline,
            "quantification_value": self.quantification_value,
            "add_offsets": {b: self.add_offsets.get(b, 0) for b in band_names},
            "quality_passed": self.quality_passed,
            "failed_quality_checks": self.failed_quality_checks,
        }

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (the ``rsprep inspect --json`` output)."""
        d = asdict(self)
        d["path"] = str(self.path)
        for key in ("datatake_time", "sensing_time", "generation_time"):
            d[key] = iso(getattr(self, key))
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
    source = SafeArchive(p)
    try:
        return _read(source, check_files=check_files)
    finally:
        source.close()


def read_l2a_product(
    path: str | Path, *, work: Path, sen2cor: str | None = None, progress: Callable[[str], None] | None = None
) -> tuple[S2Product, str | None]:
    """The L2A product at ``path``, or for an L1C product the L2A product sen2cor makes of it.

    sen2cor writes under ``work`` (``rsprep.inputs.sen2cor.l1c_to_l2a``); ``sen2cor`` is the path of
    ``L2A_Process`` (default: ``$RSPREP_SEN2COR`` or PATH). Returns the product and, when sen2cor
    ran, a note saying where its output is.
    """
    pr = read_product(path)
    if pr.level != "L1C":
        return pr, None
    from rsprep.inputs.sen2cor import l1c_to_l2a

    if progress is not None:
        progress(f"sen2cor {pr.tile_id}")
    l2a_path = l1c_to_l2a(pr, work=work, executable=sen2cor)
    return read_product(l2a_path), f"L1C processed by sen2cor into {l2a_path}"


def _read(source: SafeArchive, *, check_files: bool) -> S2Product:
    root_dir, level = source.find_metadata()
    mtd_name = PRODUCT_MTD[level]
    mtd = source.read_xml(root_dir, mtd_name)
    shown = f"{source.path}: {mtd_name}"
    product_uri, name = _product_name(mtd, shown)
    product_format = first_text(mtd, "PRODUCT_FORMAT") or "SAFE_COMPACT"
    image_files = _image_files(mtd, shown)
    granule = _granule(source, root_dir, image_files, shown)
    tl = source.read_xml(root_dir, f"GRANULE/{granule}/MTD_TL.xml")
    geocoding, epsg, crs_name = parse_geocoding(tl, f"{source.path}: GRANULE/{granule}/MTD_TL.xml")
    datatake = parse_time(first_text(mtd, "DATATAKE_SENSING_START") or first_text(mtd, "PRODUCT_START_TIME"))
    if datatake is None:
        datatake = compact_time(name.datatake)
    quant, offsets, offsets_in_metadata = parse_radiometry(mtd, level, shown)
    special = parse_special_values(mtd)
    bands = band_files(source, root_dir, level, image_files, geocoding, name.tile, check_files=check_files)

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
        sensing_time=parse_time(first_text(tl, "SENSING_TIME")),
        generation_time=parse_time(first_text(mtd, "GENERATION_TIME")),
        processing_baseline=first_text(mtd, "PROCESSING_BASELINE")
        or f"{name.baseline[:2]}.{name.baseline[2:]}",
        product_format=product_format,
        epsg=epsg,
        crs_name=crs_name,
        geocoding=geocoding,
        quantification_value=quant,
        add_offsets=offsets,
        offsets_in_metadata=offsets_in_metadata,
        special_values=special,
        quality_checks=parse_quality(mtd),
        cloud_cover_percent=float_or_none(first_text(mtd, "Cloud_Coverage_Assessment")),
        snow_ice_percent=float_or_none(first_text(mtd, "SNOW_ICE_PERCENTAGE")),
        cloud_shadow_percent=float_or_none(first_text(mtd, "CLOUD_SHADOW_PERCENTAGE")),
        nodata_percent=float_or_none(first_text(mtd, "NODATA_PIXEL_PERCENTAGE")),
        bands=tuple(bands),
    )


def _product_name(mtd: ElementTree.Element, shown: str) -> tuple[str, ProductName]:
    """The ``PRODUCT_URI`` of product metadata ``mtd`` and what its name says (tile, datatake, ...)."""
    product_uri = first_text(mtd, "PRODUCT_URI")
    if not product_uri:
        raise InvalidProductError(
            f"{shown} has no PRODUCT_URI; is this a pre-2016 product? Those are not supported"
        )
    try:
        return product_uri, parse_product_uri(product_uri)
    except InvalidParameterError as exc:
        raise InvalidProductError(f"{shown}: {exc}") from exc


def _image_files(mtd: ElementTree.Element, shown: str) -> list[str]:
    """The ``IMAGE_FILE`` entries of product metadata ``mtd`` (paths without extension)."""
    image_files = [el.text.strip() for el in iter_local(mtd, "IMAGE_FILE") if el.text]
    if not image_files:
        raise InvalidProductError(
            f"{shown} lists no IMAGE_FILE entries; only SAFE_COMPACT products are supported"
        )
    return image_files


def _granule(source: SafeArchive, root_dir: str, image_files: Sequence[str], shown: str) -> str:
    """The ``GRANULE`` folder that holds the tile: from the image file paths, else the only one present."""
    if image_files[0].startswith("GRANULE/"):
        return image_files[0].split("/")[1]
    granules = source.glob_granules(root_dir)
    if len(granules) != 1:
        raise InvalidProductError(f"{shown}: cannot tell which GRANULE folder holds the tile")
    return granules[0]
