"""Upsampling kernels: (N, h, w) patches to a finer grid, nearest-neighbour or bilinear within each patch.

Pure: numpy and numba only.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


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


@njit(cache=True, inline="always")
def source_axis(i, factor, n):
    """Source neighbours (i0, i1) and weight of i1 for output index ``i`` along an axis of ``n``:
    pixel-centre alignment (half-pixel convention), clamped at the patch border."""
    t = (i + 0.5) / factor - 0.5
    i0 = int(np.floor(t))
    f = t - i0
    if i0 < 0:
        i0 = 0
        f = 0.0
    i1 = min(i0 + 1, n - 1)
    return i0, i1, f


@njit(cache=True, nogil=True, parallel=True)
def _bilinear(src, factor, nodata, has_nodata, is_int, out):
    h = src.shape[1]
    w = src.shape[2]
    for k in prange(src.shape[0]):
        for r in range(h * factor):
            y0, y1, fy = source_axis(r, factor, h)
            for c in range(w * factor):
                x0, x1, fx = source_axis(c, factor, w)
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


#: The resampling methods of the stack stage and ``--stack``.
RESAMPLING = ("bilinear", "nearest")


def to_side(native: np.ndarray, side: int, resampling: str, nodata) -> np.ndarray:
    """(N, h, w) patches upsampled to (N, side, side) by ``resampling`` (unchanged when h == side)."""
    factor = side // native.shape[1]
    if factor == 1:
        return native
    if resampling == "nearest":
        return upsample_nearest(native, factor)
    return upsample_bilinear(native, factor, nodata=nodata)
