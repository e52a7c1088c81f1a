"""Render one synthetic Sentinel-2 product: band digital numbers, SCL and per-patch truth.

Rows are processed in strips so that a full 10980 × 10980 tile stays within a few GB.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rsprep.core.bands import BANDS_BY_NAME, L1C_BANDS, SPECTRAL_BANDS
from rsprep.synth import sky as skymod
from rsprep.synth.landcover import Truth
from rsprep.synth.layout import FIRST_ULX, FIRST_ULY, ProductSpec
from rsprep.synth.spectra import CLOUD, REFLECTANCE, SCL_OF_SURFACE, SNOW, S, hash_uniform, smooth_field

QUANTIFICATION = 10_000
_OPACITY = {skymod.CLOUD_HIGH: 0.95, skymod.CLOUD_MEDIUM: 0.75, skymod.CIRRUS: 0.35}
_STRIP_ROWS = 1024
_INDEX_OFFSET = 1 << 22  # keeps world pixel indices positive for tiles north or west of the first


@dataclass
class Rendered:
    """Arrays of one product and the truth measured on them."""

    bands: dict[str, np.ndarray] = field(default_factory=dict)  # uint16 at native resolution
    scl: dict[int, np.ndarray] = field(default_factory=dict)  # res → uint8 (L2A only)
    patch_stats: dict[tuple[int, int], dict] = field(default_factory=dict)  # (x, y) → fractions
    code_counts: dict[tuple[int, int], dict[int, int]] | None = None  # (x, y) → {code: 10 m pixels}
    scl_percent: dict[int, float] = field(default_factory=dict)  # SCL class → % of the 20 m tile


def texture_waves(seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, 31])
    lam = rng.uniform(250.0, 900.0, 3)
    ang = rng.uniform(0, np.pi, 3)
    return np.column_stack(
        [2 * np.pi / lam * np.cos(ang), 2 * np.pi / lam * np.sin(ang), rng.uniform(0, 6.3, 3)]
    )


def render_product(
    spec: ProductSpec,
    truth: Truth,
    sky: skymod.Sky,
    *,
    patch_size: int,
    seed: int,
    with_codes: bool,
) -> Rendered:
    """Digital numbers of every band of ``spec`` (and SCL for L2A), plus the per-patch truth."""
    tile, acq = spec.tile, spec.acquisition
    l1c = spec.level == "L1C"
    band_names = L1C_BANDS if l1c else SPECTRAL_BANDS
    add = 1000 if spec.has_offset else 0
    surfaces = truth.surfaces_for(acq.snowy)
    waves = texture_waves(seed)
    n = tile.size_m // patch_size
    out = Rendered()
    masks: dict[int, np.ndarray] = {}
    sky20 = None
    code_keys = np.unique(truth.codes)
    code_hist = np.zeros(n * n * code_keys.size, dtype=np.int64) if with_codes else None

    for res in (10, 20, 60):
        size = tile.size_m // res
        names = [b for b in band_names if BANDS_BY_NAME[b].resolution == res]
        arrays = {b: np.empty((size, size), dtype=np.uint16) for b in names}
        scl = np.empty((size, size), dtype=np.uint8) if (not l1c and res in (20, 60)) else None
        nodata_full = np.empty((size, size), dtype=bool)
        sky_full = np.empty((size, size), dtype=np.uint8) if res == 20 else None
        xc = tile.ulx + (np.arange(size) + 0.5) * res
        ix = (tile.ulx - FIRST_ULX) // res + np.arange(size) + _INDEX_OFFSET
        for r0 in range(0, size, _STRIP_ROWS):
            rows = min(_STRIP_ROWS, size - r0)
            top = tile.uly - r0 * res
            yc = top - (np.arange(rows) + 0.5) * res
            iy = (FIRST_ULY - top) // res + np.arange(rows) + _INDEX_OFFSET
            cell = truth.cell_raster(tile.ulx, top, res, rows, size)
            surf = surfaces[cell]
            bright = np.float32(1.0) + np.float32(0.12) * truth.brightness[cell]
            texture = np.float32(1.0) + np.float32(0.06) * smooth_field(xc, yc, waves)
            cls = sky.classes(xc, yc)
            water = surf == S["water"]
            cls[(cls == skymod.SNOW) & water] = skymod.CLEAR  # snow lies on land only
            nod = sky.nodata(xc, yc)
            opacity = np.zeros(cls.shape, dtype=np.float32)
            for k, o in _OPACITY.items():
                opacity[cls == k] = o
            shade = np.where(cls == skymod.SHADOW, np.float32(0.4), np.float32(1.0))
            snowy = cls == skymod.SNOW
            for name in names:
                b = BANDS_BY_NAME[name]
                salt = (seed * 1_000_003 + acq.index * 101 + b.band_id) * 7 + res
                noise = np.float32(0.004) * hash_uniform(ix, iy, salt)
                if name == "B10":  # cirrus band: dark, except where there are (thin) clouds
                    refl = np.float32(0.003) + noise * np.float32(0.2) + np.float32(0.35) * opacity
                else:
                    bi = SPECTRAL_BANDS.index(name)
                    refl = REFLECTANCE[surf, bi] * bright * texture + noise
                    if l1c:  # top of atmosphere: some haze, more in the blue
                        refl += np.float32(0.03 * (1.0 - bi / 12))
                    refl = np.where(snowy, np.float32(0.1) * refl + np.float32(0.9) * SNOW[bi], refl)
                    refl = refl * shade
                    refl = refl * (np.float32(1.0) - opacity) + CLOUD[bi] * opacity
                dn = np.clip(np.rint(refl * QUANTIFICATION) + add, 1, 65534).astype(np.uint16)
                dn[nod] = 0
                arrays[name][r0 : r0 + rows] = dn
            if scl is not None:
                s = SCL_OF_SURFACE[surf]
                s = np.where(cls != skymod.CLEAR, cls, s)
                s[nod] = 0
                scl[r0 : r0 + rows] = s
            nodata_full[r0 : r0 + rows] = nod
            if sky_full is not None:
                c = cls.copy()
                c[nod] = 255
                sky_full[r0 : r0 + rows] = c
            if code_hist is not None and res == 10:
                _accumulate_codes(code_hist, truth.codes[cell], code_keys, r0, n, patch_size // res)
        out.bands.update(arrays)
        if scl is not None:
            out.scl[res] = scl
        masks[res] = nodata_full
        if sky_full is not None:
            sky20 = sky_full

    assert sky20 is not None
    _patch_stats(out, masks, sky20, n, patch_size)
    valid20 = sky20 != 255
    total = sky20.size
    out.scl_percent = {
        0: 100.0 * (~valid20).sum() / total,
        **{k: 100.0 * (sky20 == k).sum() / total for k in (3, 8, 9, 10, 11)},
    }
    if code_hist is not None:
        h = code_hist.reshape(n, n, code_keys.size)  # (y, x, code)
        out.code_counts = {
            (x, y): {int(code_keys[k]): int(h[y, x, k]) for k in np.flatnonzero(h[y, x])}
            for y in range(n)
            for x in range(n)
        }
    return out


def _accumulate_codes(
    hist: np.ndarray, codes: np.ndarray, keys: np.ndarray, r0: int, n: int, px: int
) -> None:
    rows, cols = codes.shape
    prow = (r0 + np.arange(rows)) // px
    pcol = np.arange(cols) // px
    keep_r, keep_c = prow < n, pcol < n
    if not keep_r.any():
        return
    k = np.searchsorted(keys, codes[np.ix_(keep_r, keep_c)])
    patch = prow[keep_r][:, None] * n + pcol[keep_c][None, :]
    hist += np.bincount((patch * keys.size + k).ravel(), minlength=hist.size)


def _blocks(a: np.ndarray, n: int, px: int) -> np.ndarray:
    """View the complete patches of a tile array as (n_y, n_x, px, px)."""
    return a[: n * px, : n * px].reshape(n, px, n, px).transpose(0, 2, 1, 3)


def _patch_stats(
    out: Rendered, masks: dict[int, np.ndarray], sky20: np.ndarray, n: int, patch_size: int
) -> None:
    any_nodata = np.zeros((n, n), dtype=bool)
    for res, m in masks.items():
        any_nodata |= _blocks(m, n, patch_size // res).any(axis=(2, 3))
    nodata10 = _blocks(masks[10], n, patch_size // 10).mean(axis=(2, 3))
    b20 = _blocks(sky20, n, patch_size // 20)
    cloud = np.isin(b20, (skymod.CLOUD_MEDIUM, skymod.CLOUD_HIGH, skymod.CIRRUS)).mean(axis=(2, 3))
    shadow = (b20 == skymod.SHADOW).mean(axis=(2, 3))
    snow = (b20 == skymod.SNOW).mean(axis=(2, 3))
    for y in range(n):
        for x in range(n):
            out.patch_stats[(x, y)] = {
                "valid": not bool(any_nodata[y, x]),
                "nodata_fraction": round(float(nodata10[y, x]), 6),
                "cloud_fraction": round(float(cloud[y, x]), 6),
                "shadow_fraction": round(float(shadow[y, x]), 6),
                "snow_fraction": round(float(snow[y, x]), 6),
            }
