"""Polygons (shapely, in the grid's CRS) → a patch-major raster, with GDAL's pixel-centre rule.

The pixel work is :func:`rsprep.kernels.burn_polygons`; this module only turns geometries into
flat vertex arrays in pixel space, computed exactly as GDAL's inverse geotransform does, so that
the result equals ``rasterio.features.rasterize`` bit for bit (tested on real CLC).
"""

from __future__ import annotations

import numpy as np

from rsprep import kernels


def pixel_arrays(geometries: np.ndarray, ulx: float, uly: float, res: float):
    """Flat vertex arrays of (multi)polygons in pixel space: ``xs, ys, ring_offsets, geometry_ring_offsets``.

    Pixel space is (column, row) of a north-up grid with upper-left corner (``ulx``, ``uly``) and
    square pixels of ``res``; a pixel's centre is at (c + 0.5, r + 0.5).
    """
    import shapely

    geometries = np.asarray(geometries, dtype=object)
    if len(geometries) == 0:
        empty = np.zeros(0)
        return empty, empty, np.zeros(1, np.int64), np.zeros(1, np.int64)
    kind, coords, offsets = shapely.to_ragged_array(geometries)
    if kind == shapely.GeometryType.POLYGON:
        ring_off, geom_ring_off = offsets
    elif kind == shapely.GeometryType.MULTIPOLYGON:
        ring_off, poly_off, multi_off = offsets
        geom_ring_off = poly_off[multi_off]
    else:
        raise ValueError(f"only polygons can be rasterized, not {kind.name}")
    # GDAL's GDALInvGeoTransform for a north-up transform, applied as g0 + x * g1 (+ y * 0).
    gx0, gx1 = -ulx / res, 1.0 / res
    gy0, gy1 = -uly / -res, 1.0 / -res
    xs = gx0 + coords[:, 0] * gx1
    ys = gy0 + coords[:, 1] * gy1
    return xs, ys, ring_off, geom_ring_off


def rasterize_patches(
    geometries: np.ndarray, values: np.ndarray, *, ulx: float, uly: float, res: float, p: int, n: int
) -> np.ndarray:
    """Burn ``values`` into an ``n x n`` grid of ``p``-pixel patches: uint16 (n*n, p, p), 0 elsewhere."""
    xs, ys, ring_off, geom_off = pixel_arrays(geometries, ulx, uly, res)
    return kernels.burn_polygons(
        xs, ys, ring_off, geom_off, np.asarray(values), p, n, fill=0, dtype=np.uint16
    )
