"""Sentinel-2 band table and band-name parsing (pure, no I/O).

Bands are always selected by name, never by position: GDAL's SENTINEL2 driver, the SAFE folders
and the reBEN files all order them differently.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rsprep.errors import InvalidParameterError


@dataclass(frozen=True)
class Band:
    """One Sentinel-2 MSI band."""

    name: str  # reBEN spelling: B01 ... B09, B8A, B11, B12
    resolution: int  # native ground sampling distance in metres
    band_id: int  # the bandId used in MTD_MSIL2A.xml / MTD_MSIL1C.xml (0 = B1 ... 12 = B12)
    physical: str  # the physicalBand spelling in the metadata (B1, B8A, ...)
    central_wavelength_nm: float


_ALL_BANDS: tuple[Band, ...] = (
    Band("B01", 60, 0, "B1", 442.7),
    Band("B02", 10, 1, "B2", 492.7),
    Band("B03", 10, 2, "B3", 559.8),
    Band("B04", 10, 3, "B4", 664.6),
    Band("B05", 20, 4, "B5", 704.1),
    Band("B06", 20, 5, "B6", 740.5),
    Band("B07", 20, 6, "B7", 782.8),
    Band("B08", 10, 7, "B8", 832.8),
    Band("B8A", 20, 8, "B8A", 864.7),
    Band("B09", 60, 9, "B9", 945.1),
    Band("B10", 60, 10, "B10", 1373.5),
    Band("B11", 20, 11, "B11", 1613.7),
    Band("B12", 20, 12, "B12", 2202.4),
)

BANDS_BY_NAME: dict[str, Band] = {b.name: b for b in _ALL_BANDS}
BANDS_BY_ID: dict[int, Band] = {b.band_id: b for b in _ALL_BANDS}

#: The 12 spectral bands of reBEN (all but the cirrus band B10), in the documented stacking order.
SPECTRAL_BANDS: tuple[str, ...] = (
    "B01",
    "B02",
    "B03",
    "B04",
    "B05",
    "B06",
    "B07",
    "B08",
    "B8A",
    "B09",
    "B11",
    "B12",
)
#: Bands of an L1C product (B10 included).
L1C_BANDS: tuple[str, ...] = tuple(b.name for b in _ALL_BANDS)
#: Scene classification layer of L2A products, native resolution 20 m.
SCL = "SCL"
SCL_RESOLUTION = 20
RESOLUTIONS: tuple[int, ...] = (10, 20, 60)

#: SCL classes (sen2cor).
SCL_CLASSES: dict[int, str] = {
    0: "NO_DATA",
    1: "SATURATED_OR_DEFECTIVE",
    2: "DARK_AREA_PIXELS",
    3: "CLOUD_SHADOWS",
    4: "VEGETATION",
    5: "NOT_VEGETATED",
    6: "WATER",
    7: "UNCLASSIFIED",
    8: "CLOUD_MEDIUM_PROBABILITY",
    9: "CLOUD_HIGH_PROBABILITY",
    10: "THIN_CIRRUS",
    11: "SNOW",
}
SCL_CLOUD = (8, 9, 10)
SCL_SHADOW = (3,)
SCL_SNOW = (11,)


def band(name: str) -> Band:
    """Return the band called ``name`` (``B02``, ``B2``, ``b8a`` are all accepted).

    Raises:
        KeyError: ``name`` is not a Sentinel-2 band.
    """
    key = normalize_band_name(name)
    return BANDS_BY_NAME[key]


def normalize_band_name(name: str) -> str:
    """Spell a band name the reBEN way: ``B2`` → ``B02``, ``b8a`` → ``B8A``.

    Raises:
        KeyError: ``name`` is not a Sentinel-2 band.
    """
    s = name.strip().upper()
    if s == SCL:
        return s
    if s.startswith("B") and s[1:].isdigit():
        s = f"B{int(s[1:]):02d}"
    if s not in BANDS_BY_NAME:
        valid = ", ".join(b.name for b in _ALL_BANDS)
        raise KeyError(f"{name!r} is not a Sentinel-2 band; valid names: {valid}")
    return s


def scl_fractions(counts, pixels: int) -> dict:
    """Cloud, shadow, snow and SCL-nodata fractions per patch from SCL class ``counts`` (N, classes + 1).

    ``counts`` is a per-patch class histogram (column ``k`` = pixels of class ``k``) of patches with
    ``pixels`` pixels each; the keys are the patch-table column names (docs/workstore.md).
    """

    def frac(classes):
        return counts[:, list(classes)].sum(axis=1) / pixels

    return {
        "cloud_fraction": frac(SCL_CLOUD),
        "shadow_fraction": frac(SCL_SHADOW),
        "snow_fraction": frac(SCL_SNOW),
        "scl_nodata_fraction": counts[:, 0] / pixels,
    }


def parse_bands(bands: Sequence[str] | str) -> tuple[str, ...]:
    """Normalise a band selection (``"B1,b09"`` or a list) to documented order, without duplicates.

    Raises:
        InvalidParameterError: an unknown or non-spectral band.
    """
    items = bands.split(",") if isinstance(bands, str) else list(bands)
    names = []
    for item in items:
        if not str(item).strip():
            continue
        try:
            name = normalize_band_name(str(item))
        except (KeyError, ValueError) as exc:
            raise InvalidParameterError(
                f"band {item!r} is not a Sentinel-2 band; choose from {','.join(SPECTRAL_BANDS)}"
            ) from exc
        if name not in SPECTRAL_BANDS:
            raise InvalidParameterError(
                f"band {name} is not one of the 12 L2A spectral bands ({','.join(SPECTRAL_BANDS)})"
            )
        names.append(name)
    if not names:
        raise InvalidParameterError("no bands selected; pass e.g. --bands B02,B03,B04")
    return tuple(b for b in SPECTRAL_BANDS if b in set(names))
