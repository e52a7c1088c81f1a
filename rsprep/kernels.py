"""Numba kernels for the pixel-heavy loops of patching, stacking and S1 pairing.

Pure: numpy and numba only, no file formats. Every kernel has a plain-numpy reference in
``tests/test_kernels.py`` that the tests compare against on ordinary and edge-case inputs, and
``bench/bench_kernels.py`` measures the speed-up over that reference.

Conventions: a *tile array* is 2-D (rows, cols) at one resolution; patches of ``p`` pixels per side
are numbered row-major, ``index = y * n + x``, where ``n`` patches fit along each side (the partial
strip at the right and bottom edge is ignored).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


def _check_grid(shape: tuple[int, ...], p: int, n: int) -> None:
    if p <= 0 or n < 0 or shape[0] < n * p or shape[1] < n * p:
        raise ValueError(f"a {shape} array holds no {n} x {n} grid of {p}-pixel patches")


def cut_patches(tile: np.ndarray, p: int, n: int) -> np.ndarray:
    """Cut the top-left ``n*p`` square of ``tile`` into a C-contiguous (n*n, p, p) array, row-major."""
    _check_grid(tile.shape, p, n)
    sq = tile[: n * p, : n * p]
    return np.ascontiguousarray(sq.reshape(n, p, n, p).transpose(0, 2, 1, 3)).reshape(n * n, p, p)


@njit(cache=True, nogil=True)
def _count_equal(tile, value, p, n, out):
    # Row-major sweep: memory is read in order, each pixel adds to its patch's counter.
    for r in range(n * p):
        base = (r // p) * n
        for col in range(n * p):
            if tile[r, col] == value:
                out[base + col // p] += 1


def count_value_per_patch(tile: np.ndarray, value, p: int, n: int) -> np.ndarray:
    """Number of pixels equal to ``value`` in each patch: int64 (n*n,)."""
    _check_grid(tile.shape, p, n)
    out = np.zeros(n * n, dtype=np.int64)
    _count_equal(tile, tile.dtype.type(value), p, n, out)
    return out


@njit(cache=True, nogil=True)
def _mark_equal(mask, tile, value, factor, rows, cols):
    mr = mask.shape[0]
    mc = mask.shape[1]
    for r in range(rows):
        for c in range(cols):
            if tile[r, c] == value:
                for i in range(r * factor, min((r + 1) * factor, mr)):
                    for j in range(c * factor, min((c + 1) * factor, mc)):
                        mask[i, j] = True


def mark_value_upsampled(mask: np.ndarray, tile: np.ndarray, value, factor: int) -> None:
    """Set ``mask`` (a grid ``factor`` times finer than ``tile``) where ``tile == value``, in place.

    Each coarse pixel covers ``factor x factor`` fine pixels (nearest-neighbour upsampling), so OR-ing
    every band's nodata into one fine mask gives the area where *any* band lacks data.
    """
    rows = min(tile.shape[0], -(-mask.shape[0] // factor))
    cols = min(tile.shape[1], -(-mask.shape[1] // factor))
    _mark_equal(mask, tile, tile.dtype.type(value), factor, rows, cols)


@njit(cache=True, nogil=True)
def _class_counts(tile, p, n, nclasses, out):
    # Patch by patch: the (patch, class) counters of one patch stay in cache.
    for py in range(n):
        for px in range(n):
            idx = py * n + px
            for r in range(py * p, (py + 1) * p):
                for col in range(px * p, (px + 1) * p):
                    v = tile[r, col]
                    if v < nclasses:
                        out[idx, v] += 1
                    else:
                        out[idx, nclasses] += 1


def class_counts_per_patch(tile: np.ndarray, p: int, n: int, nclasses: int) -> np.ndarray:
    """Histogram of an unsigned class raster per patch: int64 (n*n, nclasses + 1).

    Column ``k`` counts pixels of class ``k``; the last column counts values ``>= nclasses``.
    """
    if tile.dtype.kind != "u":
        raise TypeError(f"class raster must be unsigned, not {tile.dtype}")
    _check_grid(tile.shape, p, n)
    out = np.zeros((n * n, nclasses + 1), dtype=np.int64)
    _class_counts(tile, p, n, nclasses, out)
    return out


@njit(cache=True, nogil=True, parallel=True)
def _nearest(src, factor, out):
    w = src.shape[2]
    for k in prange(src.shape[0]):
        for sr in range(src.shape[1]):
            r0 = sr * factor
            # Build the first output row of this source row, then copy it factor - 1 times.
            for sc in range(w):
                v = src[k, sr, sc]
                for j in range(sc * factor, (sc + 1) * factor):
                    out[k, r0, j] = v
            for i in range(1, factor):
                out[k, r0 + i, :] = out[k, r0, :]


def upsample_nearest(patches: np.ndarray, factor: int) -> np.ndarray:
    """(N, h, w) → (N, h*factor, w*factor): every pixel repeated ``factor x factor`` times."""
    if factor < 1:
        raise ValueError(f"upsampling factor must be >= 1, not {factor}")
    n, h, w = patches.shape
    out = np.empty((n, h * factor, w * factor), dtype=patches.dtype)
    _nearest(patches, factor, out)
    return out


@njit(cache=True, nogil=True, inline="always")
def _is_nodata(v, nodata, has_nodata):
    # NaN as nodata (float reflectance) never compares equal, so test it explicitly.
    return has_nodata and (v == nodata or (nodata != nodata and v != v))


@njit(cache=True, nogil=True, parallel=True)
def _bilinear(src, factor, nodata, has_nodata, is_int, out):
    h = src.shape[1]
    w = src.shape[2]
    for k in prange(src.shape[0]):
        for r in range(h * factor):
            # Pixel-centre alignment (half-pixel convention), clamped at the patch border.
            y = (r + 0.5) / factor - 0.5
            y0 = int(np.floor(y))
            fy = y - y0
            if y0 < 0:
                y0 = 0
                fy = 0.0
            y1 = y0 + 1
            if y1 > h - 1:
                y1 = h - 1
            for c in range(w * factor):
                x = (c + 0.5) / factor - 0.5
                x0 = int(np.floor(x))
                fx = x - x0
                if x0 < 0:
                    x0 = 0
                    fx = 0.0
                x1 = x0 + 1
                if x1 > w - 1:
                    x1 = w - 1
                # Nearest source pixel decides nodata; valid neighbours share the weight.
                nr = r // factor
                nc = c // factor
                if _is_nodata(src[k, nr, nc], nodata, has_nodata):
                    out[k, r, c] = nodata
                    continue
                acc = 0.0
                wsum = 0.0
                v = src[k, y0, x0]
                wt = (1.0 - fy) * (1.0 - fx)
                if wt > 0.0 and not _is_nodata(v, nodata, has_nodata):
                    acc += wt * v
                    wsum += wt
                v = src[k, y0, x1]
                wt = (1.0 - fy) * fx
                if wt > 0.0 and not _is_nodata(v, nodata, has_nodata):
                    acc += wt * v
                    wsum += wt
                v = src[k, y1, x0]
                wt = fy * (1.0 - fx)
                if wt > 0.0 and not _is_nodata(v, nodata, has_nodata):
                    acc += wt * v
                    wsum += wt
                v = src[k, y1, x1]
                wt = fy * fx
                if wt > 0.0 and not _is_nodata(v, nodata, has_nodata):
                    acc += wt * v
                    wsum += wt
                val = acc / wsum
                if is_int:
                    val = np.floor(val + 0.5)
                out[k, r, c] = val


def upsample_bilinear(patches: np.ndarray, factor: int, *, nodata=None) -> np.ndarray:
    """(N, h, w) → (N, h*factor, w*factor) by bilinear interpolation within each patch.

    Pixel centres are aligned (the half-pixel convention of GDAL, OpenCV and
    ``torch.nn.functional.interpolate(align_corners=False)``) and clamped at the patch border, so a
    patch is resampled from its own pixels only. With ``nodata``, an output pixel is nodata exactly
    where its nearest source pixel is, and nodata neighbours get no weight: nodata never leaks into
    values. Integer outputs are rounded half up.
    """
    if factor < 1:
        raise ValueError(f"upsampling factor must be >= 1, not {factor}")
    n, h, w = patches.shape
    out = np.empty((n, h * factor, w * factor), dtype=patches.dtype)
    if n == 0:
        return out
    is_int = patches.dtype.kind in "iu"
    has_nodata = nodata is not None
    nd = patches.dtype.type(nodata if has_nodata else 0)
    _bilinear(patches, factor, nd, has_nodata, is_int, out)
    return out
