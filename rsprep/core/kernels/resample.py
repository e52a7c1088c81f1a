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


# --------------------------------------------------------------------------------------------
# Batched: many patches of one native size into chosen (sample, channel) slots of a 4-D output,
# with a serial twin for processes that must not start threads (forked DataLoader workers: GNU
# OpenMP aborts a forked child of a process that used it). Same arithmetic as the kernels above.
# --------------------------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def _axis_tables(factor, n):
    m = n * factor
    i0 = np.empty(m, np.int64)
    i1 = np.empty(m, np.int64)
    near = np.empty(m, np.int64)
    f = np.empty(m, np.float64)
    for i in range(m):
        i0[i], i1[i], f[i] = source_axis(i, factor, n)
        near[i] = i // factor
    return i0, i1, f, near


@njit(cache=True, nogil=True, inline="always")
def _tap(v, wt, nodata, has_nodata, acc, wsum):
    if wt > 0.0 and not _is_nodata(v, nodata, has_nodata):
        return acc + wt * v, wsum + wt
    return acc, wsum


@njit(cache=True, nogil=True)
def _has_nodata(src, nodata):
    for v in src.ravel():  # noqa: SIM110 - a loop numba compiles (no generator in any())
        if _is_nodata(v, nodata, True):
            return True
    return False


@njit(cache=True, nogil=True)
def _bilinear_one(src, factor, nodata, has_nodata, is_int, ys, xs, out):
    """One (h, w) patch into the (h*factor, w*factor) view ``out`` (any numeric dtype)."""
    if is_int and not (has_nodata and _has_nodata(src, nodata)):
        _bilinear_valid(src, factor, is_int, ys, xs, out)
        return
    y0s, y1s, fys, _ = ys
    x0s, x1s, fxs, ncs = xs
    for r in range(src.shape[0] * factor):
        y0, y1, fy = y0s[r], y1s[r], fys[r]
        nr = r // factor
        for c in range(src.shape[1] * factor):
            x0, x1, fx = x0s[c], x1s[c], fxs[c]
            if _is_nodata(src[nr, ncs[c]], nodata, has_nodata):
                out[r, c] = nodata
                continue
            acc, wsum = _tap(src[y0, x0], (1.0 - fy) * (1.0 - fx), nodata, has_nodata, 0.0, 0.0)
            acc, wsum = _tap(src[y0, x1], (1.0 - fy) * fx, nodata, has_nodata, acc, wsum)
            acc, wsum = _tap(src[y1, x0], fy * (1.0 - fx), nodata, has_nodata, acc, wsum)
            acc, wsum = _tap(src[y1, x1], fy * fx, nodata, has_nodata, acc, wsum)
            val = acc / wsum
            if is_int:
                val = np.floor(val + 0.5)
            out[r, c] = val


@njit(cache=True, nogil=True, error_model="numpy")
def _bilinear_valid(src, factor, is_int, ys, xs, out):
    """The same sums for an integer patch without nodata, branch-free: a zero weight adds exactly
    0.0 (integers are finite), so adding every tap gives the values of the skipping loop above (and
    of ``upsample_bilinear``), about four times as fast."""
    y0s, y1s, fys, _ = ys
    x0s, x1s, fxs, _ = xs
    for r in range(src.shape[0] * factor):
        y0, y1, fy = y0s[r], y1s[r], fys[r]
        for c in range(src.shape[1] * factor):
            x0, x1, fx = x0s[c], x1s[c], fxs[c]
            w00, w01 = (1.0 - fy) * (1.0 - fx), (1.0 - fy) * fx
            w10, w11 = fy * (1.0 - fx), fy * fx
            acc = 0.0 + w00 * src[y0, x0] + w01 * src[y0, x1] + w10 * src[y1, x0] + w11 * src[y1, x1]
            val = acc / (0.0 + w00 + w01 + w10 + w11)
            if is_int:
                val = np.floor(val + 0.5)
            out[r, c] = val


@njit(cache=True, nogil=True)
def _nearest_one(src, factor, out):
    for sr in range(src.shape[0]):
        r0 = sr * factor
        for sc in range(src.shape[1]):
            v = src[sr, sc]
            for j in range(sc * factor, (sc + 1) * factor):
                out[r0, j] = v
        for i in range(1, factor):
            out[r0 + i, :] = out[r0, :]


@njit(cache=True, nogil=True)
def _one(src, k, factor, bilinear, nodata, has_nodata, is_int, ys, xs, out, b, ch):
    if bilinear:
        _bilinear_one(src[k], factor, nodata, has_nodata, is_int, ys, xs, out[b[k], ch[k]])
    else:
        _nearest_one(src[k], factor, out[b[k], ch[k]])


@njit(cache=True, nogil=True, parallel=True)
def _into_parallel(src, factor, bilinear, nodata, has_nodata, is_int, out, b, ch):
    ys, xs = _axis_tables(factor, src.shape[1]), _axis_tables(factor, src.shape[2])
    for k in prange(src.shape[0]):
        _one(src, k, factor, bilinear, nodata, has_nodata, is_int, ys, xs, out, b, ch)


@njit(cache=True, nogil=True)
def _into_serial(src, factor, bilinear, nodata, has_nodata, is_int, out, b, ch):
    ys, xs = _axis_tables(factor, src.shape[1]), _axis_tables(factor, src.shape[2])
    for k in range(src.shape[0]):
        _one(src, k, factor, bilinear, nodata, has_nodata, is_int, ys, xs, out, b, ch)


def to_side_into(
    native: np.ndarray,
    out: np.ndarray,
    slots: tuple[np.ndarray, np.ndarray],
    resampling: str,
    nodata,
    *,
    parallel: bool = True,
) -> None:
    """Write ``to_side(native, out.shape[-1], resampling, nodata)[k]`` into ``out[slots[0][k], slots[1][k]]``.

    ``native`` is (N, h, w), ``out`` (B, C, side, side) of any numeric dtype (the values are those
    of ``to_side`` cast to it: exact for uint16 into float32), ``slots`` the (sample, channel)
    index of each patch. ``parallel=False`` runs on the calling thread only, starting no threads.
    """
    side = out.shape[-1]
    factor = side // native.shape[1]
    if factor < 1 or native.shape[1] * factor != side or native.shape[2] * factor != out.shape[-2]:
        raise ValueError(f"patches of {native.shape[1:]} do not upsample to {out.shape[-2:]}")
    if resampling not in RESAMPLING:
        raise ValueError(f"resampling {resampling!r}: expected one of {', '.join(RESAMPLING)}")
    b, ch = (np.ascontiguousarray(s, np.int64) for s in slots)
    if len(b) != native.shape[0] or len(ch) != native.shape[0]:
        raise ValueError("one (sample, channel) slot per patch expected")
    if native.shape[0] == 0:
        return
    has_nodata = nodata is not None
    nd = native.dtype.type(nodata if has_nodata else 0)
    kernel = _into_parallel if parallel else _into_serial
    kernel(native, factor, resampling == "bilinear", nd, has_nodata, native.dtype.kind in "iu", out, b, ch)
