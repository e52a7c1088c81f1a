"""Polygon rasterization straight into patch layout, and the ring order GDAL's rasterizer walks.

Pure: numpy and numba only. The result equals ``rasterio.features.rasterize`` followed by cutting
into patches (``tests/test_kernels.py`` compares them).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

# -- polygon rasterization straight into patch layout -----------------------------------------
# Coordinates are in pixel space (column, row) of the whole grid. The rule is GDAL's for polygons
# without ALL_TOUCHED (alg/llrasterize.cpp): on each pixel row y the scanline runs through the
# row centre y + 0.5; an edge counts when its lower end is <= y + 0.5 < its upper end (even-odd
# over all rings of a geometry); a span between crossings a <= b burns columns
# floor(a + 0.5) … floor(b + 0.5) - 1, i.e. the pixels whose centre lies in (a, b]; a horizontal
# edge lying exactly on a row centre and running right to left burns its own span. Spans are
# clipped to the grid.
# Later geometries overwrite earlier ones, as GDAL's "replace".


@njit(cache=True, nogil=True, inline="always")
def _burn_span(out, s, n, p, rr, c0, c1, value):
    ncols = n * p
    if c0 < 0:
        c0 = 0
    if c1 > ncols - 1:
        c1 = ncols - 1
    c = c0
    while c <= c1:
        px = c // p
        end = min(c1, (px + 1) * p - 1)
        base = s * n + px
        for j in range(c - px * p, end - px * p + 1):
            out[base, rr, j] = value
        c = end + 1


@njit(cache=True, nogil=True, inline="always")
def _first_row_at_or_above(y):
    # smallest integer r with r + 0.5 >= y
    r = np.ceil(y - 0.5)
    while r + 0.5 < y:
        r += 1.0
    while r - 0.5 >= y:
        r -= 1.0
    return r


@njit(cache=True, nogil=True)
def _burn_geometry(xs, ys, ring_off, ring0, ring1, value, s, n, p, out):
    r0 = s * p
    nrows = p
    counts = np.zeros(nrows + 1, dtype=np.int64)
    # pass 1: count crossings per row of this strip; burn exact-centre horizontal edges
    for ring in range(ring0, ring1):
        a = ring_off[ring]
        b = ring_off[ring + 1]
        for i in range(a, b):
            i1 = b - 1 if i == a else i - 1
            y1 = ys[i1]
            y2 = ys[i]
            if y1 == y2:
                if xs[i1] > xs[i]:
                    row = y1 - 0.5
                    if row == np.floor(row) and r0 <= row < r0 + nrows:
                        hx1 = int(np.floor(xs[i] + 0.5))
                        hx2 = int(np.floor(xs[i1] + 0.5))
                        _burn_span(out, s, n, p, int(row) - r0, hx1, hx2 - 1, value)
                continue
            lo = min(y1, y2)
            hi = max(y1, y2)
            ya = max(_first_row_at_or_above(lo), float(r0))
            yb = min(_first_row_at_or_above(hi) - 1.0, float(r0 + nrows - 1))
            if ya <= yb:
                for r in range(int(ya) - r0, int(yb) - r0 + 1):
                    counts[r + 1] += 1
    for r in range(nrows):
        counts[r + 1] += counts[r]
    total = counts[nrows]
    if total == 0:
        return
    xcross = np.empty(total, dtype=np.float64)
    fill = counts[:nrows].copy()
    # pass 2: the crossing abscissae, computed exactly as GDAL does
    for ring in range(ring0, ring1):
        a = ring_off[ring]
        b = ring_off[ring + 1]
        for i in range(a, b):
            i1 = b - 1 if i == a else i - 1
            if ys[i1] == ys[i]:
                continue
            if ys[i1] < ys[i]:
                dx1, dy1, dx2, dy2 = xs[i1], ys[i1], xs[i], ys[i]
            else:
                dx1, dy1, dx2, dy2 = xs[i], ys[i], xs[i1], ys[i1]
            ya = max(_first_row_at_or_above(dy1), float(r0))
            yb = min(_first_row_at_or_above(dy2) - 1.0, float(r0 + nrows - 1))
            if ya <= yb:
                for r in range(int(ya), int(yb) + 1):
                    dy = r + 0.5
                    xcross[fill[r - r0]] = (dy - dy1) * (dx2 - dx1) / (dy2 - dy1) + dx1
                    fill[r - r0] += 1
    for r in range(nrows):
        a = counts[r]
        b = counts[r + 1]
        if b - a < 2:
            continue
        seg = np.sort(xcross[a:b])
        for k in range(0, b - a - 1, 2):
            c0 = int(np.floor(seg[k] + 0.5))
            c1 = int(np.floor(seg[k + 1] + 0.5)) - 1
            _burn_span(out, s, n, p, r, c0, c1, value)


@njit(cache=True, nogil=True, parallel=True)
def _burn_polygons(xs, ys, ring_off, geom_ring_off, geom_ylo, geom_yhi, values, n, p, out):
    # One strip of patch rows per task; geometries in input order inside each strip, so the
    # result does not depend on the number of threads.
    for s in prange(n):
        r0 = s * p
        r1 = r0 + p
        for g in range(values.shape[0]):
            if geom_yhi[g] < r0 or geom_ylo[g] > r1:
                continue
            _burn_geometry(xs, ys, ring_off, geom_ring_off[g], geom_ring_off[g + 1], values[g], s, n, p, out)


def burn_polygons(
    xs: np.ndarray,
    ys: np.ndarray,
    ring_offsets: np.ndarray,
    geometry_ring_offsets: np.ndarray,
    values: np.ndarray,
    p: int,
    n: int,
    *,
    fill=0,
    dtype=np.uint16,
) -> np.ndarray:
    """Rasterize polygons onto an ``n x n`` grid of ``p``-pixel patches: (n*n, p, p), row-major.

    ``xs``/``ys`` hold every vertex in pixel space (column, row) of the whole ``n*p`` square; ring
    ``k`` is ``xs[ring_offsets[k]:ring_offsets[k+1]]``; geometry ``g`` owns rings
    ``geometry_ring_offsets[g]`` … ``geometry_ring_offsets[g+1]-1`` and burns ``values[g]``. The
    result equals ``rasterio.features.rasterize`` (GDAL, pixel-centre rule) of the same polygons
    followed by :func:`cut_patches`, without ever holding the whole tile as one image.
    """
    xs = np.ascontiguousarray(xs, dtype=np.float64)
    ys = np.ascontiguousarray(ys, dtype=np.float64)
    ring_off = np.ascontiguousarray(ring_offsets, dtype=np.int64)
    geom_off = np.ascontiguousarray(geometry_ring_offsets, dtype=np.int64)
    vals = np.ascontiguousarray(values, dtype=dtype)
    if len(geom_off) != len(vals) + 1:
        raise ValueError(f"{len(vals)} values for {len(geom_off) - 1} geometries")
    out = np.full((n * n, p, p), fill, dtype=dtype)
    if len(vals) == 0 or n == 0:
        return out
    ylo = np.full(len(vals), np.inf)
    yhi = np.full(len(vals), -np.inf)
    for g in range(len(vals)):
        a, b = ring_off[geom_off[g]], ring_off[geom_off[g + 1]]
        if b > a:
            ylo[g] = ys[a:b].min() - 1.0
            yhi[g] = ys[a:b].max() + 1.0
    _burn_polygons(xs, ys, ring_off, geom_off, ylo, yhi, vals, n, p, out)
    return out


@njit(cache=True, nogil=True)
def _ring_is_clockwise(x, y, a, b):
    # OGRLinearRing::isClockwise on the closed ring x[a:b]: the turn at the lowest-rightmost
    # vertex, or the shoelace sum when that vertex is ambiguous (GDAL #5342, #3356).
    npt = b - a
    if npt < 2:
        return True
    eps = 1e-5
    fallback = False
    v = 0
    for i in range(1, npt - 1):
        if y[a + i] < y[a + v] or (y[a + i] == y[a + v] and x[a + i] > x[a + v]):
            v = i
            fallback = False
        elif y[a + i] == y[a + v] and x[a + i] == x[a + v]:
            fallback = True
    nxt = v - 1
    if nxt < 0:
        nxt = npt - 2
    if abs(x[a + nxt] - x[a + v]) < eps and abs(y[a + nxt] - y[a + v]) < eps:
        fallback = True
    dx0 = x[a + nxt] - x[a + v]
    dy0 = y[a + nxt] - y[a + v]
    nxt = v + 1
    if nxt >= npt - 1:
        nxt = 0
    if abs(x[a + nxt] - x[a + v]) < eps and abs(y[a + nxt] - y[a + v]) < eps:
        fallback = True
    dx1 = x[a + nxt] - x[a + v]
    dy1 = y[a + nxt] - y[a + v]
    cross = dx1 * dy0 - dx0 * dy1
    if not fallback:
        if cross > 0:
            return False
        if cross < 0:
            return True
    total = x[a] * (y[a + 1] - y[a + npt - 1])
    for i in range(1, npt - 1):
        total += x[a + i] * (y[a + i + 1] - y[a + i - 1])
    total += x[a + npt - 1] * (y[a] - y[a + npt - 2])
    return total < 0


@njit(cache=True, nogil=True)
def _gdal_ring_order(x, y, ring_off, out):
    for k in range(ring_off.shape[0] - 1):
        a = ring_off[k]
        b = ring_off[k + 1]
        if b - a >= 3 and not _ring_is_clockwise(x, y, a, b):
            for i in range(b - a):
                out[a + i] = b - 1 - i
        else:
            for i in range(b - a):
                out[a + i] = a + i


def gdal_ring_order(x: np.ndarray, y: np.ndarray, ring_offsets: np.ndarray) -> np.ndarray:
    """Vertex order in which GDAL's rasterizer walks each ring: clockwise rings as they are,
    the others reversed (``GDALCollectRingsFromGeometry``), judged in world coordinates.

    The order matters only for horizontal edges lying exactly on a row centre.
    """
    out = np.empty(len(x), dtype=np.int64)
    _gdal_ring_order(
        np.ascontiguousarray(x, np.float64),
        np.ascontiguousarray(y, np.float64),
        np.ascontiguousarray(ring_offsets, np.int64),
        out,
    )
    return out
