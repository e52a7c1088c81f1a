import pytest

from rsprep.core.bands import SPECTRAL_BANDS, band, normalize_band_name


def test_twelve_spectral_bands_in_documented_order():
    assert SPECTRAL_BANDS == (
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
    assert [band(b).resolution for b in SPECTRAL_BANDS] == [60, 10, 10, 10, 20, 20, 20, 10, 20, 60, 20, 20]


@pytest.mark.parametrize(
    ("given", "expected"), [("B2", "B02"), ("b8a", "B8A"), ("B12", "B12"), (" scl ", "SCL")]
)
def test_band_names_are_normalised(given, expected):
    assert normalize_band_name(given) == expected


def test_unknown_band_lists_valid_names():
    with pytest.raises(KeyError, match="B8A"):
        normalize_band_name("B13")
