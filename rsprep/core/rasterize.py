"""Polygons (shapely, in the grid's CRS) → a patch-major raster, with GDAL's pixel-centre rule.

The pixel work is :func:`rsprep.core.kernels.burn_polygons`; this module only turns geometries into
flat vertex arrays in pixel space, computed exactly as GDAL's inverse geotransform does, so that
the result equals ``rasterio.features.rasterize`` bit for bit (tested on real CLC).
"""

from __future__ import annotations

import numpy as np

from rsprep.core import kernels


def pixel_arrays(geometries: np.ndarray, values: np.ndarray, ulx: float, uly: float, res: float):
    """Flat vertex arrays of (multi)polygons in pixel space, as GDAL's rasterizer sees them.

    Returns ``xs, ys, ring_offsets, part_ring_offsets, part_values``: one *part* per polygon
    (GDAL burns the parts of a multipolygon one by one in replace mode), each ring walked in
    GDAL's order (:func:`rsprep.core.kernels.gdal_ring_order`). Pixel space is (column, row) of a
    north-up grid with upper-left corner (``ulx``, ``uly``) and square pixels of ``res``; a pixel's
    centre is at (c + 0.5, r + 0.5).
    """
    import shapely

    geometries = np.asarray(geometries, dtype=object)
    values = np.asarray(values)
    if len(geometries) == 0:
        empty = np.zeros(0)
        return empty, empty, np.zeros(1, np.int64), np.zeros(1, np.int64), values[:0]
    kind, coords, offsets = shapely.to_ragged_array(geometries)
    if kind == shapely.GeometryType.POLYGON:
        ring_off, part_ring_off = offsets
        part_values = values
    elif kind == shapely.GeometryType.MULTIPOLYGON:
        ring_off, part_ring_off, multi_off = offsets
        part_values = np.repeat(values, np.diff(multi_off))
    else:
        raise ValueError(f"only polygons can be rasterized, not {kind.name}")
    order = kernels.gdal_ring_order(coords[:, 0], coords[:, 1], ring_off)
    coords = coords[order]
    # GDAL's GDALInvGeoTransform for a north-up transform, applied as g0 + x * g1 (+ y * 0).
    gx0, gx1 = -ulx / res, 1.0 / res
    gy0, gy1 = -uly / -res, 1.0 / -res
    xs = gx0 + coords[:, 0] * gx1
    ys = gy0 + coords[:, 1] * gy1
    return xs, ys, ring_off, part_ring_off, part_values


def rasterize_patches(
    geometries: np.ndarray, values: np.ndarray, *, ulx: float, uly: float, res: float, p: int, n: int
) -> np.ndarray:
    """Burn ``values`` into an ``n x n`` grid of ``p``-pixel patches: uint16 (n*n, p, p), 0 elsewhere."""
    xs, ys, ring_off, part_off, part_values = pixel_arrays(geometries, values, ulx, uly, res)
    return kernels.burn_polygons(xs, ys, ring_off, part_off, part_values, p, n, fill=0, dtype=np.uint16)
