"""Streaming per-band statistics (docs/stats.md): accumulators that read values batch by batch, hold a
fixed amount of memory whatever the number of batches, and merge in any order.

- :class:`IntMoments` (uint16, S2 DN) keeps a 65,536-bin histogram, a sufficient statistic: count,
  nodata, mean, population std, min, max and percentiles follow from it exactly (integer sums, so mean
  and variance are correctly rounded). :meth:`IntMoments.add_bilinear` histograms the values of
  ``kernels.to_side(..., "bilinear", nodata)`` without making them; :meth:`IntMoments.repeated` is
  nearest-neighbour upsampling (every value repeated ``k`` times).
- :class:`FloatMoments` (float32 dB values, S1) keeps count, sum-based batch mean and M2 merged with
  Chan's parallel formula, min, max and a histogram of 0.01 dB bins over [-100, 50) dB with under- and
  overflow counters; percentiles are bin centres, within 0.005 dB of the exact value inside the range.

Percentiles follow numpy's ``method="inverted_cdf"`` (the value of 0-based rank ``ceil(n*q - 1)``,
clipped at 0, among the ``n`` sorted valid values; the same float64 arithmetic). Pure: numpy and numba.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from rsprep.core.kernels.resample import source_axis

U16_BINS = 65_536
#: S1 histogram: 0.01 dB bins (bin b covers [b/100, (b+1)/100) dB) from -100 dB up to +50 dB.
S1_BINS_PER_DB = 100
S1_RANGE_DB = (-100, 50)
PERCENTILES = (1, 99)
_S1_LO = S1_RANGE_DB[0] * S1_BINS_PER_DB
_S1_NBINS = (S1_RANGE_DB[1] - S1_RANGE_DB[0]) * S1_BINS_PER_DB


# --------------------------------------------------------------------------------------------
# Kernels (each has a numpy reference in tests/test_stats.py)
# --------------------------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def _hist_u16(values, hist):
    for v in values:
        hist[v] += 1


@njit(cache=True, nogil=True)
def _axis(factor, n):
    """Source neighbours and weight per output index, by the stack stage's own rule (``source_axis``)."""
    m = n * factor
    i0 = np.empty(m, np.int64)
    i1 = np.empty(m, np.int64)
    f = np.empty(m, np.float64)
    for i in range(m):
        i0[i], i1[i], f[i] = source_axis(i, factor, n)
    return i0, i1, f


@njit(cache=True, nogil=True)
def _bilinear_hist(src, factor, nodata, hist):
    # The arithmetic of kernels.resample._bilinear (integer output, with nodata), histogrammed.
    n, h, w = src.shape
    y0, y1, fy = _axis(factor, h)
    x0, x1, fx = _axis(factor, w)
    for k in range(n):
        p = src[k]
        if (p == nodata).any():
            _nodata_hist(p, factor, nodata, y0, y1, fy, x0, x1, fx, hist)
        elif factor == 2:
            _bilinear2_hist(p, y0, y1, fy, hist)
        else:
            _clean_hist(p, y0, y1, fy, x0, x1, fx, hist)


@njit(cache=True, nogil=True)
def _clean_hist(p, y0, y1, fy, x0, x1, fx, hist):
    # No nodata: every weight counts; a zero weight adds +0.0, which changes no sum.
    ox = 1.0 - fx
    for r in range(y0.size):
        s0, s1, wy = p[y0[r]], p[y1[r]], fy[r]
        oy = 1.0 - wy
        for c in range(x0.size):
            b0, b1, wx = x0[c], x1[c], fx[c]
            w00, w01, w10, w11 = oy * ox[c], oy * wx, wy * ox[c], wy * wx
            acc = w00 * s0[b0] + w01 * s0[b1]
            acc = acc + w10 * s1[b0] + w11 * s1[b1]
            wsum = ((w00 + w01) + w10) + w11
            # x / 1.0 == x (most pixels); int() floors the non-negative value
            hist[int((acc if wsum == 1.0 else acc / wsum) + 0.5)] += 1


@njit(cache=True, nogil=True)
def _nodata_hist(p, factor, nodata, y0, y1, fy, x0, x1, fx, hist):
    for r in range(y0.size):
        for c in range(x0.size):
            if p[r // factor, c // factor] == nodata:
                hist[nodata] += 1
            else:
                hist[_dirty(p, y0[r], y1[r], x0[c], x1[c], fy[r], fx[c], nodata)] += 1


@njit(cache=True, nogil=True)
def _bilinear2_hist(p, y0, y1, fy, hist):
    # Factor 2: every weight is a multiple of 1/4 per axis, so the float arithmetic of _bilinear is
    # exact and equals integer arithmetic in sixteenths, round half up; integers are associative, so
    # rows are combined first. Output column 2j takes source columns (j-1, j) with weights (1, 3),
    # column 2j+1 (j, j+1) with (3, 1); the border columns repeat their source column (weight 4).
    h, w = p.shape
    col = np.empty(w, np.int64)
    for r in range(2 * h):
        qy1 = int(4.0 * fy[r])
        qy0 = 4 - qy1
        a0, a1 = y0[r], y1[r]
        for j in range(w):
            col[j] = qy0 * np.int64(p[a0, j]) + qy1 * np.int64(p[a1, j])
        hist[(4 * col[0] + 8) >> 4] += 1
        hist[(4 * col[w - 1] + 8) >> 4] += 1
        for j in range(1, w):
            hist[(col[j - 1] + 3 * col[j] + 8) >> 4] += 1
        for j in range(w - 1):
            hist[(3 * col[j] + col[j + 1] + 8) >> 4] += 1


@njit(cache=True, nogil=True, inline="always")
def _dirty(p, a0, a1, b0, b1, wy, wx, nodata):
    acc = 0.0
    wsum = 0.0
    v = p[a0, b0]
    wt = (1.0 - wy) * (1.0 - wx)
    if wt > 0.0 and v != nodata:
        acc += wt * v
        wsum += wt
    v = p[a0, b1]
    wt = (1.0 - wy) * wx
    if wt > 0.0 and v != nodata:
        acc += wt * v
        wsum += wt
    v = p[a1, b0]
    wt = wy * (1.0 - wx)
    if wt > 0.0 and v != nodata:
        acc += wt * v
        wsum += wt
    v = p[a1, b1]
    wt = wy * wx
    if wt > 0.0 and v != nodata:
        acc += wt * v
        wsum += wt
    return int(np.floor(acc / wsum + 0.5))


@njit(cache=True, nogil=True)
def _float_pass(x, hist, lo, nbins):
    """Valid count, sum (8 interleaved partial sums), min, max, under/overflow; fills ``hist``."""
    parts = np.zeros(8)
    count = 0
    under = 0
    over = 0
    mn = np.inf
    mx = -np.inf
    for i in range(x.size):
        d = np.float64(x[i])
        if not np.isfinite(d):
            continue
        count += 1
        parts[i & 7] += d
        mn = min(mn, d)
        mx = max(mx, d)
        b = int(np.floor(d * 100.0)) - lo
        if b < 0:
            under += 1
        elif b >= nbins:
            over += 1
        else:
            hist[b] += 1
    s = ((parts[0] + parts[1]) + (parts[2] + parts[3])) + ((parts[4] + parts[5]) + (parts[6] + parts[7]))
    return count, s, mn, mx, under, over


@njit(cache=True, nogil=True)
def _float_m2(x, mean):
    parts = np.zeros(8)
    for i in range(x.size):
        d = np.float64(x[i])
        if np.isfinite(d):
            parts[i & 7] += (d - mean) * (d - mean)
    return ((parts[0] + parts[1]) + (parts[2] + parts[3])) + ((parts[4] + parts[5]) + (parts[6] + parts[7]))


# --------------------------------------------------------------------------------------------
# Percentile ranks
# --------------------------------------------------------------------------------------------
def rank(n: int, percentile: float) -> int:
    """0-based rank of numpy's ``inverted_cdf`` percentile among ``n`` sorted values (same float math)."""
    index = np.float64(n) * np.true_divide(np.float64(percentile), 100) - 1
    previous = np.floor(index)
    r = int(previous) if index - previous == 0 else int(previous) + 1
    return max(r, 0)


def _empty(count: int, nodata: int) -> dict:
    out = {"count": count, "nodata": nodata}
    out.update(dict.fromkeys(("mean", "std", "min", "max", *(f"p{p}" for p in PERCENTILES))))
    return out


# --------------------------------------------------------------------------------------------
# uint16
# --------------------------------------------------------------------------------------------
class IntMoments:
    """Histogram statistics of uint16 values; ``nodata`` (default 0) is excluded and counted."""

    def __init__(self, nodata: int | None = 0) -> None:
        self.nodata = nodata
        self.hist = np.zeros(U16_BINS, dtype=np.int64)

    def add(self, values: np.ndarray) -> None:
        """Add a batch of any shape (uint16)."""
        v = np.ascontiguousarray(values)
        if v.dtype != np.uint16:
            raise TypeError(f"IntMoments takes uint16 values, not {v.dtype}")
        _hist_u16(v.reshape(-1), self.hist)

    def add_bilinear(self, native: np.ndarray, factor: int) -> None:
        """Add the values of ``kernels.to_side(native, h * factor, "bilinear", nodata)`` for (N, h, w)."""
        v = np.ascontiguousarray(native)
        if v.dtype != np.uint16 or v.ndim != 3:
            raise TypeError(f"add_bilinear takes (N, h, w) uint16 patches, not {v.dtype} {v.shape}")
        if factor == 1:
            self.add(v)
        elif v.shape[0]:
            _bilinear_hist(v, factor, np.uint16(0 if self.nodata is None else self.nodata), self.hist)

    def merge(self, other: IntMoments) -> IntMoments:
        out = IntMoments(self.nodata)
        out.hist = self.hist + other.hist
        return out

    def repeated(self, k: int) -> IntMoments:
        """The statistics of every value repeated ``k`` times (nearest-neighbour upsampling)."""
        out = IntMoments(self.nodata)
        out.hist = self.hist * k
        return out

    def summary(self) -> dict:
        h = self.hist.copy()
        nodata = 0
        if self.nodata is not None:
            nodata, h[self.nodata] = int(h[self.nodata]), 0
        values = np.flatnonzero(h)
        if values.size == 0:
            return _empty(0, nodata)
        counts = h[values]
        cum = np.cumsum(counts)
        n = int(cum[-1])
        if n < 2**63 // (U16_BINS - 1) ** 2:  # Σ c·v² fits in int64
            s1, s2 = int(np.dot(counts, values)), int(np.dot(counts * values, values))
        else:  # Python integers (exact whatever the size)
            c, v = counts.tolist(), values.tolist()
            s1 = sum(a * b for a, b in zip(c, v, strict=True))
            s2 = sum(a * b * b for a, b in zip(c, v, strict=True))
        out = {
            "count": n,
            "nodata": nodata,
            "mean": s1 / n,  # exact integers: one correctly rounded division
            "std": math.sqrt((s2 * n - s1 * s1) / (n * n)),
            "min": int(values[0]),
            "max": int(values[-1]),
        }
        for p in PERCENTILES:
            out[f"p{p}"] = int(values[int(np.searchsorted(cum, rank(n, p), side="right"))])
        return out


# --------------------------------------------------------------------------------------------
# float (dB)
# --------------------------------------------------------------------------------------------
class FloatMoments:
    """Statistics of float values (S1 dB); non-finite values are nodata, excluded and counted."""

    def __init__(self) -> None:
        self.count = 0
        self.nodata = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.min = math.inf
        self.max = -math.inf
        self.under = 0
        self.over = 0
        self.hist = np.zeros(_S1_NBINS, dtype=np.int64)

    def add(self, values: np.ndarray) -> None:
        """Add a batch of any shape (float32 or float64)."""
        v = np.ascontiguousarray(values).reshape(-1)
        if v.dtype not in (np.float32, np.float64):
            raise TypeError(f"FloatMoments takes float values, not {v.dtype}")
        batch = FloatMoments()
        n, s, mn, mx, under, over = _float_pass(v, batch.hist, _S1_LO, _S1_NBINS)
        batch.count, batch.nodata, batch.under, batch.over = n, v.size - n, under, over
        if n:
            batch.mean = s / n
            batch.m2 = _float_m2(v, batch.mean)
            batch.min, batch.max = mn, mx
        self._absorb(batch)

    def _absorb(self, b: FloatMoments) -> None:
        # Chan, Golub and LeVeque's pairwise update of (count, mean, M2).
        n = self.count + b.count
        if b.count:
            delta = b.mean - self.mean
            self.mean = self.mean + delta * (b.count / n)
            self.m2 = self.m2 + b.m2 + delta * delta * (self.count * b.count / n)
            self.min, self.max = min(self.min, b.min), max(self.max, b.max)
        self.count, self.nodata = n, self.nodata + b.nodata
        self.under, self.over = self.under + b.under, self.over + b.over
        self.hist = self.hist + b.hist

    def merge(self, other: FloatMoments) -> FloatMoments:
        out = FloatMoments()
        out._absorb(self)
        out._absorb(other)
        return out

    def summary(self) -> dict:
        n = self.count
        if n == 0:
            return _empty(0, self.nodata)
        out = {
            "count": n,
            "nodata": self.nodata,
            "mean": float(self.mean),
            "std": math.sqrt(max(self.m2, 0.0) / n),
            "min": float(self.min),
            "max": float(self.max),
        }
        cum = np.cumsum(self.hist) + self.under
        for p in PERCENTILES:
            r = rank(n, p)
            if r == 0 or r < self.under:
                value = self.min
            elif r == n - 1 or r >= n - self.over:
                value = self.max
            else:
                b = int(np.searchsorted(cum, r, side="right"))
                value = min(max((b + _S1_LO + 0.5) / S1_BINS_PER_DB, self.min), self.max)
            out[f"p{p}"] = float(value)
        return out
