"""Where each patch lies, from whatever a table offers, for block splits and leakage reports.

In order of preference:

1. ``epsg`` and ``left, bottom, right, top`` (our sidecar): exact footprints in the tile CRS,
   reprojected per CRS into an equal-area CRS; exact distances between patches of one CRS are
   measured in that CRS (so grid neighbours are exactly 1200 m apart), others on the ellipsoid.
2. ``geometry`` (WKB, EPSG:4326) or ``centroid_lon`` / ``centroid_lat``: positions on the ellipsoid.
3. Only ``patch_id``: tile-local positions from the name (``P·x + P/2``); patches of different tiles
   count as far apart (nothing is known about where tiles lie), products of one tile overlap exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import shapely
from pyproj import CRS, Geod, Transformer

from rsprep.core.crs import to_lonlat, transform_by_epsg
from rsprep.core.grid import PatchNames
from rsprep.errors import InvalidParameterError

#: Tile-local positions of different tiles are put this far apart (metres), so they never meet.
_TILE_OFFSET = 1.0e9
_GEOD = Geod(ellps="WGS84")


@dataclass
class Positions:
    ex: np.ndarray  # equal-area easting of the centroid (m)
    ey: np.ndarray
    crs: str  # the equal-area CRS, or "tile-local"
    zone: np.ndarray  # int: rows with the same zone >= 0 share an exact metric frame (local_x/y)
    local_x: np.ndarray
    local_y: np.ndarray
    lon: np.ndarray | None
    lat: np.ndarray | None
    footprints: np.ndarray  # shapely polygons in the (ex, ey) frame
    product: np.ndarray  # int code of the product (patch prefix) of each row
    georeferenced: bool
    local_bounds: np.ndarray | None = None  # (N, 4) footprint in the zone's own frame, where zone >= 0

    def exact_distance(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """Centroid distance of row pairs (i, j): in the shared CRS when both have one, else geodesic."""
        same = (self.zone[i] == self.zone[j]) & (self.zone[i] >= 0)
        d = np.hypot(self.local_x[i] - self.local_x[j], self.local_y[i] - self.local_y[j])
        if (~same).any():
            if self.lon is None:
                d[~same] = np.inf
            else:
                k = ~same
                _, _, g = _GEOD.inv(self.lon[i[k]], self.lat[i[k]], self.lon[j[k]], self.lat[j[k]])
                d[k] = g
        return d


def equal_area_crs(lon: np.ndarray, lat: np.ndarray, crs: str = "auto") -> CRS:
    """``crs`` itself, or for "auto": EPSG:3035 (LAEA Europe) when every point lies in its area of use,
    else a Lambert azimuthal equal-area CRS centred on the whole-degree mean of the points."""
    if crs != "auto":
        try:
            out = CRS.from_user_input(crs)
        except Exception as exc:  # pyproj raises CRSError, a subclass of Exception only
            raise InvalidParameterError(f"--crs {crs!r} is not a CRS pyproj understands ({exc})") from exc
        if not out.is_projected:
            raise InvalidParameterError(f"--crs {crs!r} is not a projected CRS; give a metric equal-area one")
        return out
    europe = CRS.from_epsg(3035)
    w, s, e, n = europe.area_of_use.bounds
    if len(lon) == 0 or ((lon >= w) & (lon <= e) & (lat >= s) & (lat <= n)).all():
        return europe
    lon0 = float(np.round(np.mean(lon)))
    lat0 = float(np.round(np.mean(lat)))
    return CRS.from_proj4(f"+proj=laea +lat_0={lat0} +lon_0={lon0} +x_0=0 +y_0=0 +ellps=WGS84 +units=m")


def positions(table: pa.Table, names: PatchNames, *, patch_size, crs: str = "auto") -> Positions:
    """Positions of every row of ``table`` (see the module docstring for what is used)."""
    cols = set(table.column_names)
    _, product = np.unique(names.prefix, return_inverse=True)
    product = product.reshape(-1).astype(np.int64)
    if {"epsg", "left", "bottom", "right", "top"} <= cols:
        return _from_bounds(table, product, crs)
    if "geometry" in cols or {"centroid_lon", "centroid_lat"} <= cols:
        return _from_lonlat(table, product, crs, patch_size)
    return _tile_local(names, product, patch_size)


def _num(table: pa.Table, name: str) -> np.ndarray:
    col = table.column(name)
    if col.null_count:
        raise InvalidParameterError(f"column {name} has {col.null_count} null value(s); positions need all")
    return np.asarray(col.to_numpy(), dtype=np.float64)


def _from_bounds(table: pa.Table, product: np.ndarray, crs: str) -> Positions:
    epsg = np.asarray(table.column("epsg").to_numpy(), dtype=np.int64)
    left, bottom, right, top = (_num(table, c) for c in ("left", "bottom", "right", "top"))
    cx, cy = (left + right) / 2.0, (bottom + top) / 2.0
    corners_x = np.stack([left, right, right, left], axis=1)
    corners_y = np.stack([bottom, bottom, top, top], axis=1)
    if {"centroid_lon", "centroid_lat"} <= set(table.column_names):  # the sidecar has them already
        lon, lat = _num(table, "centroid_lon"), _num(table, "centroid_lat")
    else:
        lon, lat = to_lonlat(cx, cy, epsg)
    ea = equal_area_crs(lon, lat, crs)
    (ex, ey), (fx, fy) = transform_by_epsg(epsg, ea, (cx, cy), (corners_x, corners_y))
    foot = shapely.polygons(np.stack([fx, fy], axis=2))
    local = np.stack([left, bottom, right, top], axis=1)
    return Positions(ex, ey, _crs_name(ea), epsg, cx, cy, lon, lat, foot, product, True, local)


def _from_lonlat(table: pa.Table, product: np.ndarray, crs: str, patch_size) -> Positions:
    cols = set(table.column_names)
    geoms = None
    if "geometry" in cols:
        col = table.column("geometry")
        geoms = shapely.from_wkb(np.asarray(col.to_numpy(zero_copy_only=False), dtype=object))
        if shapely.is_missing(geoms).any():
            raise InvalidParameterError("column geometry has null values; positions need every footprint")
    if {"centroid_lon", "centroid_lat"} <= cols:
        lon, lat = _num(table, "centroid_lon"), _num(table, "centroid_lat")
    else:
        c = shapely.centroid(geoms)
        lon, lat = shapely.get_x(c), shapely.get_y(c)
    ea = equal_area_crs(lon, lat, crs)
    t = Transformer.from_crs("EPSG:4326", ea, always_xy=True)
    ex, ey = t.transform(lon, lat)
    if geoms is not None:
        foot = shapely.transform(geoms, lambda xy: np.stack(t.transform(xy[:, 0], xy[:, 1]), axis=1))
    else:
        h = np.asarray(patch_size, dtype=np.float64) / 2.0 + np.zeros(len(ex))
        foot = shapely.box(ex - h, ey - h, ex + h, ey + h)
    zone = np.full(len(ex), -1, dtype=np.int64)
    return Positions(ex, ey, _crs_name(ea), zone, ex, ey, lon, lat, foot, product, True)


def _tile_local(names: PatchNames, product: np.ndarray, patch_size) -> Positions:
    p = np.asarray(patch_size, dtype=np.float64) + np.zeros(len(names.x))
    _, tile_index = np.unique(names.tile, return_inverse=True)
    tile_index = tile_index.reshape(-1).astype(np.int64)
    lx = p * names.x + p / 2.0
    ly = -(p * names.y + p / 2.0)
    ex = lx + tile_index * _TILE_OFFSET
    ey = ly.copy()
    h = p / 2.0
    foot = shapely.box(ex - h, ey - h, ex + h, ey + h)
    local = np.stack([lx - h, ly - h, lx + h, ly + h], axis=1)
    return Positions(ex, ey, "tile-local", tile_index, lx, ly, None, None, foot, product, False, local)


def _crs_name(crs: CRS) -> str:
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.to_proj4()
