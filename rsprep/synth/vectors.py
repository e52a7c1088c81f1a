"""Synthetic CORINE Land Cover GeoPackage (EPSG:3035) and country borders (EPSG:4326)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import shapely

from rsprep.synth.landcover import Truth
from rsprep.synth.layout import EPSG

CLC_LAYER = "U2018_CLC2018_V2020_20u1"
CLC_CRS = "EPSG:3035"
COUNTRY_LAYER = "countries"
_DENSIFY_M = 50.0  # straight UTM edges stay within millimetres of straight after the round trip


def reproject(geoms: np.ndarray, src: str, dst: str, *, densify: float | None = _DENSIFY_M) -> np.ndarray:
    """Reproject shapely geometries (densified first so edges follow the projection)."""
    from pyproj import Transformer

    tr = Transformer.from_crs(src, dst, always_xy=True)
    if densify:
        geoms = shapely.segmentize(geoms, densify)
    return shapely.transform(geoms, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))


def _write(path: Path, layer: str, columns: dict, geometry: np.ndarray, crs: str) -> None:
    import pyarrow as pa
    import pyogrio
    from pyogrio import write_arrow

    # OGR_CURRENT_DATE pins gpkg_contents.last_change, so the same seed gives the same bytes.
    pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": "2020-01-01T00:00:00Z"})
    # segmentize/transform collapse one-part MultiPolygons; the layer type (as in CLC) is MultiPolygon.
    single = shapely.get_type_id(geometry) == 3
    geometry = geometry.copy()
    geometry[single] = shapely.multipolygons(geometry[single][:, None]) if single.any() else geometry[single]
    table = pa.table({**columns, "geometry": pa.array(shapely.to_wkb(geometry), type=pa.binary())})
    write_arrow(
        table,
        path,
        layer=layer,
        driver="GPKG",
        crs=crs,
        geometry_name="geometry",
        geometry_type="MultiPolygon",
    )


def write_clc(truth: Truth, path: Path) -> dict[int, int]:
    """Write the CLC layer (string ``Code_18``, as the real database) and return polygons per code."""
    import pyarrow as pa

    polys, codes = truth.clc_polygons()
    geoms = shapely.multipolygons([[p] for p in polys]) if len(polys) else np.array([], dtype=object)
    geoms = reproject(geoms, f"EPSG:{EPSG}", CLC_CRS)
    area_ha = shapely.area(geoms) / 10_000.0
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = {
        "ID": pa.array([f"EU_{i + 1}" for i in range(len(codes))]),
        "Code_18": pa.array([str(int(c)) for c in codes]),
        "Remark": pa.array([None] * len(codes), type=pa.string()),
        "Area_Ha": pa.array(np.round(area_ha, 4)),
    }
    _write(path, CLC_LAYER, columns, geoms, CLC_CRS)
    uniq, counts = np.unique(codes, return_counts=True)
    return {int(c): int(n) for c, n in zip(uniq, counts, strict=True)}


def country_polygons(truth: Truth, patch_size: int) -> tuple[list[str], list[str], np.ndarray]:
    """Countries cutting the world (Austria, Germany, Czechia), a distant Switzerland, none at sea."""
    x0, y0, x1, y1 = truth.bounds
    w, h = x1 - x0, y1 - y0
    mid_y = y0 + 0.45 * h
    xs = np.linspace(x0 - w, x1 + w, 200)
    border = mid_y + 0.06 * h * np.sin((xs - x0) / w * 5.0)
    south = shapely.Polygon([(x0 - w, y0 - h), *zip(xs, border, strict=True), (x1 + w, y0 - h)])
    north = shapely.difference(shapely.box(x0 - w, y0 - h, x1 + w, y1 + h), south)
    east_x = x0 + 0.62 * w
    germany = shapely.intersection(north, shapely.box(x0 - w, y0 - h, east_x, y1 + h))
    czechia = shapely.intersection(north, shapely.box(east_x, y0 - h, x1 + w, y1 + h))
    sea = shapely.coverage_union_all(truth.cells[truth.codes == 523]) if (truth.codes == 523).any() else None
    parts = [south, germany, czechia]
    if sea is not None:
        parts = [shapely.difference(p, sea.buffer(-patch_size * 0.05)) for p in parts]
    swiss = shapely.box(x0 - 3 * w, y0 - 1.5 * h, x0 - 2.2 * w, y0 - 0.8 * h)
    names = ["Austria", "Germany", "Czechia", "Switzerland"]
    iso = ["AT", "DE", "CZ", "CH"]
    return names, iso, np.array([*parts, swiss], dtype=object)


def write_countries(truth: Truth, path: Path, *, patch_size: int) -> list[str]:
    """Write a Natural-Earth-like country layer (fields NAME, ISO_A2) in EPSG:4326."""
    import pyarrow as pa

    names, iso, polys = country_polygons(truth, patch_size)
    geoms = reproject(
        shapely.multipolygons([list(shapely.get_parts(p)) for p in polys]),
        f"EPSG:{EPSG}",
        "EPSG:4326",
        densify=200.0,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    _write(path, COUNTRY_LAYER, {"NAME": pa.array(names), "ISO_A2": pa.array(iso)}, geoms, "EPSG:4326")
    return names
