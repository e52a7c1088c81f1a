"""Class-dependent surface reflectance and backscatter, and coordinate-hashed noise (pure numpy).

Every value is a function of the ground truth and of *world* pixel coordinates, so overlapping
tiles of one datatake see the same ground with the same pixels, as real neighbouring tiles do.
"""

from __future__ import annotations

import numpy as np

from rsprep.core.bands import SPECTRAL_BANDS

# Surface types; each CLC code maps to one (and the SCL class and backscatter follow from it).
SURFACES: tuple[str, ...] = (
    "water",
    "broadleaf",
    "conifer",
    "mixed_forest",
    "crop",
    "grass",
    "urban",
    "industrial",
    "bare",
    "sand",
    "rock",
    "wetland",
    "shrub",
    "orchard",
    "snowfield",
    "burnt",
)
S = {name: i for i, name in enumerate(SURFACES)}

# Reflectance (0..1) per band, in SPECTRAL_BANDS order:
#            B01    B02    B03    B04    B05    B06    B07    B08    B8A    B09    B11    B12
_REFLECTANCE = {
    "water": (0.060, 0.050, 0.040, 0.025, 0.020, 0.015, 0.012, 0.010, 0.009, 0.005, 0.003, 0.002),
    "broadleaf": (0.030, 0.030, 0.060, 0.030, 0.090, 0.280, 0.360, 0.400, 0.420, 0.400, 0.200, 0.090),
    "conifer": (0.020, 0.020, 0.040, 0.020, 0.060, 0.180, 0.230, 0.250, 0.270, 0.260, 0.120, 0.050),
    "mixed_forest": (0.025, 0.025, 0.050, 0.025, 0.075, 0.230, 0.295, 0.325, 0.345, 0.330, 0.160, 0.070),
    "crop": (0.040, 0.040, 0.080, 0.040, 0.120, 0.320, 0.400, 0.450, 0.460, 0.440, 0.220, 0.100),
    "grass": (0.040, 0.040, 0.080, 0.050, 0.120, 0.250, 0.300, 0.330, 0.350, 0.330, 0.240, 0.130),
    "urban": (0.100, 0.100, 0.120, 0.130, 0.150, 0.170, 0.180, 0.190, 0.200, 0.190, 0.220, 0.200),
    "industrial": (0.140, 0.150, 0.170, 0.180, 0.200, 0.210, 0.220, 0.230, 0.240, 0.230, 0.280, 0.260),
    "bare": (0.080, 0.090, 0.120, 0.150, 0.180, 0.200, 0.220, 0.240, 0.260, 0.250, 0.320, 0.260),
    "sand": (0.150, 0.170, 0.220, 0.260, 0.280, 0.300, 0.310, 0.320, 0.330, 0.320, 0.380, 0.330),
    "rock": (0.110, 0.120, 0.140, 0.160, 0.180, 0.190, 0.200, 0.210, 0.220, 0.210, 0.260, 0.230),
    "wetland": (0.040, 0.040, 0.060, 0.050, 0.080, 0.150, 0.180, 0.200, 0.210, 0.200, 0.120, 0.060),
    "shrub": (0.040, 0.040, 0.070, 0.060, 0.100, 0.200, 0.240, 0.270, 0.280, 0.270, 0.220, 0.120),
    "orchard": (0.035, 0.035, 0.070, 0.045, 0.110, 0.260, 0.320, 0.360, 0.370, 0.350, 0.210, 0.100),
    "snowfield": (0.900, 0.900, 0.880, 0.850, 0.830, 0.800, 0.780, 0.750, 0.730, 0.600, 0.050, 0.040),
    "burnt": (0.030, 0.030, 0.035, 0.040, 0.050, 0.060, 0.065, 0.070, 0.075, 0.070, 0.120, 0.110),
}
REFLECTANCE = np.array([_REFLECTANCE[s] for s in SURFACES], dtype=np.float32)  # (n_surfaces, 12)
assert REFLECTANCE.shape[1] == len(SPECTRAL_BANDS)

CLOUD = np.array((0.62, 0.60, 0.58, 0.57, 0.57, 0.58, 0.58, 0.59, 0.59, 0.45, 0.40, 0.30), dtype=np.float32)
SNOW = np.array(_REFLECTANCE["snowfield"], dtype=np.float32)

# Winter: deciduous and crops lose their green (no leaves, bare fields).
_WINTER_SWAP = {"broadleaf": "bare", "crop": "bare", "orchard": "bare"}
WINTER_SURFACE = np.array([S[_WINTER_SWAP.get(s, s)] for s in SURFACES], dtype=np.int16)

# SCL class of a clear-sky surface pixel.
SCL_OF_SURFACE = np.array(
    [
        6
        if s == "water"
        else 11
        if s == "snowfield"
        else 5
        if s in ("urban", "industrial", "bare", "sand", "rock", "burnt")
        else 4
        for s in SURFACES
    ],
    dtype=np.uint8,
)

# Sentinel-1 backscatter (dB): VV, VH.
_BACKSCATTER = {
    "water": (-20.0, -27.0),
    "broadleaf": (-8.0, -13.0),
    "conifer": (-7.5, -13.5),
    "mixed_forest": (-7.8, -13.2),
    "crop": (-10.0, -16.0),
    "grass": (-11.0, -18.0),
    "urban": (-3.0, -10.0),
    "industrial": (-2.0, -9.0),
    "bare": (-12.0, -20.0),
    "sand": (-16.0, -24.0),
    "rock": (-9.0, -16.0),
    "wetland": (-12.0, -19.0),
    "shrub": (-9.5, -16.0),
    "orchard": (-9.0, -15.0),
    "snowfield": (-14.0, -22.0),
    "burnt": (-13.0, -21.0),
}
BACKSCATTER_DB = np.array([_BACKSCATTER[s] for s in SURFACES], dtype=np.float32)  # (n_surfaces, 2)

# CLC 2018 code → surface type.
_CODE_SURFACE = {
    111: "urban",
    112: "urban",
    121: "industrial",
    122: "industrial",
    123: "industrial",
    124: "industrial",
    131: "bare",
    132: "bare",
    133: "bare",
    141: "grass",
    142: "grass",
    211: "crop",
    212: "crop",
    213: "crop",
    221: "orchard",
    222: "orchard",
    223: "orchard",
    231: "grass",
    241: "crop",
    242: "crop",
    243: "grass",
    244: "orchard",
    311: "broadleaf",
    312: "conifer",
    313: "mixed_forest",
    321: "grass",
    322: "shrub",
    323: "shrub",
    324: "shrub",
    331: "sand",
    332: "rock",
    333: "rock",
    334: "burnt",
    335: "snowfield",
    411: "wetland",
    412: "wetland",
    421: "wetland",
    422: "wetland",
    423: "wetland",
    511: "water",
    512: "water",
    521: "water",
    522: "water",
    523: "water",
    999: "rock",
}
CLC_CODES: tuple[int, ...] = tuple(sorted(_CODE_SURFACE))


def surface_of_code(code: int) -> int:
    """Surface index of a CLC code (0, i.e. outside CLC coverage, looks like cropland)."""
    return S[_CODE_SURFACE.get(int(code), "crop")]


# ----------------------------------------------------------------------------------------------
# Coordinate-hashed noise: the same world pixel always gets the same value.
# ----------------------------------------------------------------------------------------------
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser, in place on a uint64 array."""
    z ^= z >> np.uint64(30)
    z *= _M1
    z ^= z >> np.uint64(27)
    z *= _M2
    z ^= z >> np.uint64(31)
    return z


def hash_uniform(ix: np.ndarray, iy: np.ndarray, salt: int) -> np.ndarray:
    """Uniform values in [-1, 1) from integer world pixel indices (broadcast: ix row, iy column)."""
    with np.errstate(over="ignore"):
        key = np.uint64(salt & 0xFFFFFFFFFFFFFFFF) * np.uint64(0x9E3779B97F4A7C15)
        z = (iy.astype(np.uint64)[:, None] * np.uint64(0x100000001B3)) ^ ix.astype(np.uint64)[None, :]
        z += key
        z = _mix(z)
    return ((z >> np.uint64(40)).astype(np.float32) * np.float32(2.0 / (1 << 24))) - np.float32(1.0)


def smooth_field(x: np.ndarray, y: np.ndarray, waves: np.ndarray) -> np.ndarray:
    """A smooth texture in [-1, 1] at world coordinates (x row vector, y column vector).

    ``waves`` rows are (kx, ky, phase); sin(kx·x + ky·y + φ) is separable into outer products, so
    the field costs O(rows + cols) trigonometry per wave.
    """
    out = np.zeros((y.size, x.size), dtype=np.float32)
    for kx, ky, ph in waves:
        ax, ay = (kx * x).astype(np.float64), (ky * y + ph).astype(np.float64)
        out += np.outer(np.cos(ay), np.sin(ax)).astype(np.float32)
        out += np.outer(np.sin(ay), np.cos(ax)).astype(np.float32)
    return out / np.float32(max(len(waves), 1))
