"""Clouds, cloud shadows, snow and the swath edge of one synthetic datatake (world geometry)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from rsprep.synth.layout import Acquisition, TileSpec

CLEAR, SHADOW, CLOUD_MEDIUM, CLOUD_HIGH, CIRRUS, SNOW = 0, 3, 8, 9, 10, 11
_COVER = {"summer": 0.07, "winter": 0.10, "autumn": 0.14, "spring": 0.09}
_SNOW_COVER = 0.12


@dataclass(frozen=True)
class Sky:
    """Circular-ish clouds (cx, cy, r, phase), their shadows, snow blobs and a nodata half-plane."""

    clouds: np.ndarray  # (k, 4)
    shadow_shift: tuple[float, float]
    snow: np.ndarray  # (m, 4)
    swath_edge: tuple[float, float, float] | None  # nodata where x > x_top + slope * (y_top - y)

    def classes(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Sky class per pixel centre: 0 clear, 3 shadow, 8/9 cloud, 10 cirrus, 11 snow (before land/water).

        ``x`` are the column centre coordinates, ``y`` the row centre coordinates.
        """
        out = np.zeros((y.size, x.size), dtype=np.uint8)
        _paint(out, x, y, self.snow, {1.0: SNOW})
        sx, sy = self.shadow_shift
        _paint(out, x - sx, y - sy, self.clouds, {0.9: SHADOW})
        _paint(out, x, y, self.clouds, {1.25: CIRRUS, 1.0: CLOUD_MEDIUM, 0.6: CLOUD_HIGH})
        return out

    def nodata(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """True where the pixel centre lies outside the swath."""
        if self.swath_edge is None:
            return np.zeros((y.size, x.size), dtype=bool)
        x_top, y_top, slope = self.swath_edge
        return x[None, :] > (x_top + slope * (y_top - y))[:, None]


def _paint(out: np.ndarray, x: np.ndarray, y: np.ndarray, blobs: np.ndarray, rings: dict[float, int]) -> None:
    """Paint irregular discs: for each ring factor (largest first) set pixels within factor·r(θ)."""
    if blobs.size == 0:
        return
    reach = max(rings) * 1.3
    for cx, cy, r, phase in blobs:
        c0, c1 = np.searchsorted(x, [cx - reach * r, cx + reach * r])  # x ascending
        # y descends (north-up rows)
        r0 = np.searchsorted(-y, -(cy + reach * r))
        r1 = np.searchsorted(-y, -(cy - reach * r))
        if c0 >= c1 or r0 >= r1:
            continue
        dx = x[c0:c1][None, :] - cx
        dy = y[r0:r1][:, None] - cy
        theta = np.arctan2(dy, dx)
        radius = r * (1.0 + 0.22 * np.sin(3 * theta + phase) + 0.1 * np.sin(5 * theta + 2 * phase))
        d = np.hypot(dx, dy) / radius
        sub = out[r0:r1, c0:c1]
        for factor in sorted(rings, reverse=True):
            sub[d < factor] = rings[factor]


def make_sky(
    acq: Acquisition,
    tiles: list[TileSpec],
    world: tuple[float, float, float, float],
    *,
    patch_size: int,
    seed: int,
) -> Sky:
    """Clouds over every tile (at least one each), snow in winter, and a swath edge on the first date."""
    rng = np.random.default_rng([seed, 23, acq.index])
    x0, y0, x1, y1 = world
    area = (x1 - x0) * (y1 - y0)
    r_lo, r_hi = 0.45 * patch_size, 1.0 * patch_size
    mean_area = math.pi * (1.25 * (r_lo + r_hi) / 2) ** 2
    n = max(0, round(_COVER[acq.season] * area / mean_area) - len(tiles))
    centres = [rng.uniform([x0, y0], [x1, y1], size=(n, 2))]
    for t in tiles:  # one cloud inside every tile, away from the edges
        left, bottom, right, top = t.bounds
        centres.append(
            rng.uniform(
                [left + 0.2 * t.size_m, bottom + 0.2 * t.size_m],
                [right - 0.2 * t.size_m, top - 0.2 * t.size_m],
                size=(1, 2),
            )
        )
    c = np.vstack(centres)
    clouds = np.column_stack([c, rng.uniform(r_lo, r_hi, len(c)), rng.uniform(0, 2 * np.pi, len(c))])
    shift = (-0.6 * patch_size, 0.45 * patch_size)  # sun from the south-east: shadows fall north-west

    if acq.snowy:
        r_s = (0.8 * patch_size, 2.0 * patch_size)
        m = max(len(tiles), round(_SNOW_COVER * area / (math.pi * (sum(r_s) / 2) ** 2)))
        sc = rng.uniform([x0, y0], [x1, y1], size=(m, 2))
        snow = np.column_stack([sc, rng.uniform(*r_s, m), rng.uniform(0, 2 * np.pi, m)])
    else:
        snow = np.zeros((0, 4))

    edge = None
    if acq.index == 0:  # the first datatake ends inside the last tile of the first row
        last = max((t for t in tiles if t.row == 0), key=lambda t: t.column)
        edge = (last.ulx + 0.72 * last.size_m, float(last.uly), 0.18)
    return Sky(clouds, shift, snow, edge)
