"""The synthetic land-cover ground truth that every synthetic file is derived from.

The world (all tiles plus a margin) is cut into Voronoi cells of a jittered grid, about one cell
per patch area (a full-size tile gets thousands, like real CLC). Cells are grouped into regions
(agricultural, forest, urban, mountain, wetland, coast, sea) whose code mix is realistic, and
hold a brightness offset for texture. CLC polygons are the cells dissolved by code; the S2 and
S1 rasters are the cells rasterized with the pixel-centre rule, so both agree by construction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import shapely
from shapely import STRtree

from rsprep.synth.spectra import WINTER_SURFACE, S, surface_of_code

# Code mixes per region type (CLC 2018 level-3 codes, probability weights).
_REGION_CODES: dict[str, dict[int, float]] = {
    "agri": {211: 34, 231: 14, 242: 14, 243: 10, 222: 4, 221: 3, 112: 7, 121: 3, 512: 2, 324: 5, 311: 4},
    "forest": {311: 24, 312: 28, 313: 20, 324: 10, 231: 5, 321: 3, 411: 3, 512: 4, 243: 3},
    "urban": {111: 8, 112: 34, 121: 18, 122: 5, 124: 4, 131: 5, 133: 3, 141: 8, 142: 7, 211: 8},
    "mountain": {312: 26, 321: 18, 322: 10, 332: 10, 333: 10, 335: 4, 324: 10, 411: 4, 999: 8},
    "wetland": {411: 30, 412: 20, 512: 15, 311: 10, 231: 15, 324: 10},
    "coast": {331: 30, 421: 20, 423: 8, 521: 12, 231: 15, 112: 10, 211: 5},
}
_REGION_TYPES = ("agri", "forest", "urban", "mountain", "wetland")
_REGION_WEIGHTS = np.array([0.40, 0.30, 0.10, 0.12, 0.08])
SEA_CODE = 523


@dataclass
class Truth:
    """Voronoi cells with their CLC code (0 = outside CLC coverage), surface and brightness."""

    bounds: tuple[float, float, float, float]  # world extent in the tile CRS
    cells: np.ndarray  # shapely Polygons
    codes: np.ndarray  # int32
    surfaces: np.ndarray  # int16 index into spectra.SURFACES (summer)
    brightness: np.ndarray  # float32 in [-1, 1]
    region: np.ndarray  # region-type name per cell
    tree: STRtree = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.tree = STRtree(self.cells)

    def surfaces_for(self, winter: bool) -> np.ndarray:
        return WINTER_SURFACE[self.surfaces] if winter else self.surfaces

    def cell_raster(self, left: float, top: float, res: float, rows: int, cols: int) -> np.ndarray:
        """Cell index per pixel (pixel-centre rule) of a north-up grid; -1 where no cell."""
        from rasterio.features import rasterize
        from rasterio.transform import from_origin

        window = shapely.box(left, top - rows * res, left + cols * res, top)
        idx = self.tree.query(window)
        out = np.full((rows, cols), -1, dtype=np.int32)
        if idx.size == 0:
            return out
        rasterize(
            zip(self.cells[idx], idx.astype(np.int32), strict=True),
            out=out,
            transform=from_origin(left, top, res, res),
            all_touched=False,
        )
        return out

    def clc_polygons(self) -> tuple[np.ndarray, np.ndarray]:
        """CLC-like polygons: cells dissolved by code (code 0 left out), exploded to single parts."""
        polys, codes = [], []
        for code in np.unique(self.codes):
            if code == 0:
                continue
            merged = shapely.coverage_union_all(self.cells[self.codes == code])
            parts = shapely.get_parts(merged)
            parts = parts[shapely.area(parts) > 1.0]
            polys.extend(parts)
            codes.extend([int(code)] * len(parts))
        order = np.lexsort((shapely.bounds(np.array(polys))[:, 0], np.array(codes)))
        return np.array(polys, dtype=object)[order], np.array(codes, dtype=np.int32)[order]


def world_bounds(tile_bounds: list[tuple[int, int, int, int]], margin: int) -> tuple[int, int, int, int]:
    xs0, ys0, xs1, ys1 = zip(*tile_bounds, strict=True)
    return (min(xs0) - margin, min(ys0) - margin, max(xs1) + margin, max(ys1) + margin)


def make_truth(bounds: tuple[float, float, float, float], *, cell_size: float, seed: int) -> Truth:
    """Generate the ground truth over ``bounds`` with cells of about ``cell_size`` metres."""
    rng = np.random.default_rng([seed, 11])
    x0, y0, x1, y1 = bounds
    w, h = x1 - x0, y1 - y0
    nx, ny = max(3, math.ceil(w / cell_size)), max(3, math.ceil(h / cell_size))
    gx = (np.arange(nx) + 0.5) * (w / nx) + x0
    gy = (np.arange(ny) + 0.5) * (h / ny) + y0
    px, py = np.meshgrid(gx, gy)
    px = px.ravel() + rng.uniform(-0.45, 0.45, px.size) * (w / nx)
    py = py.ravel() + rng.uniform(-0.45, 0.45, py.size) * (h / ny)
    box = shapely.box(x0, y0, x1, y1)
    regions = shapely.voronoi_polygons(
        shapely.multipoints(np.column_stack([px, py])), extend_to=box, ordered=True
    )
    cells = shapely.intersection(shapely.get_parts(regions), box)
    cells = shapely.normalize(cells)

    # Regions: nearest of a few centres, each with a type; the first ones cover every type.
    n_regions = max(len(_REGION_TYPES), math.ceil(w * h / (6 * cell_size) ** 2 / 4))
    centres = np.column_stack([rng.uniform(x0, x1, n_regions), rng.uniform(y0, y1, n_regions)])
    types = np.array(
        list(_REGION_TYPES)
        + list(rng.choice(_REGION_TYPES, n_regions - len(_REGION_TYPES), p=_REGION_WEIGHTS)),
        dtype=object,
    )
    d2 = (px[:, None] - centres[None, :, 0]) ** 2 + (py[:, None] - centres[None, :, 1]) ** 2
    region = types[np.argmin(d2, axis=1)]

    # Sea in the south-east corner behind a wavy coast, a coastal belt, and a strip outside CLC coverage.
    u, v = (px - x0) / w, (y1 - py) / h
    wave = 0.04 * np.sin(u * 9.0 + rng.uniform(0, 2 * np.pi))
    shore = u + v - wave
    region = np.where(shore > 1.62, "coast", region)
    region = np.where(shore > 1.72, "sea", region)

    codes = np.zeros(px.size, dtype=np.int32)
    for rtype, mix in _REGION_CODES.items():
        sel = region == rtype
        keys = np.array(list(mix))
        p = np.array(list(mix.values()), dtype=float)
        codes[sel] = rng.choice(keys, sel.sum(), p=p / p.sum())
    codes[region == "sea"] = SEA_CODE
    outside = (u < 0.12) & (v > 0.78) & (region != "sea")
    codes[outside] = 0
    surfaces = np.array([surface_of_code(c) for c in codes], dtype=np.int16)
    surfaces[outside] = S["crop"]
    brightness = rng.uniform(-1.0, 1.0, px.size).astype(np.float32)
    return Truth(bounds, cells, codes, surfaces, brightness, region)
