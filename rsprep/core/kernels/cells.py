"""Per-patch kernels on a tile array: cutting into patches, counting and marking values, histograms.

Pure: numpy and numba only. A *tile array* is 2-D (rows, cols) at one resolution; patches of ``p``
pixels per side are numbered row-major, ``index = y * n + x``, where ``n`` patches fit along each side
(the partial strip at the right and bottom edge is ignored).
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
def _lut_counts(patches, lut, out):
    for k in prange(patches.shape[0]):
        for r in range(patches.shape[1]):
            for c in range(patches.shape[2]):
                out[k, lut[patches[k, r, c]]] += 1


def lut_counts_per_patch(patches: np.ndarray, lut: np.ndarray, nbins: int) -> np.ndarray:
    """Histogram of ``lut[value]`` per patch of an unsigned (N, h, w) array: int64 (N, nbins).

    ``lut`` maps every possible value (``len(lut) > patches.max()``) to a bin in ``[0, nbins)``;
    e.g. CLC code → compact code index, or code → class with one bin for UNLABELED.
    """
    if patches.dtype.kind != "u":
        raise TypeError(f"patches must be unsigned, not {patches.dtype}")
    lut = np.ascontiguousarray(lut, dtype=np.int64)
    if len(lut) < np.iinfo(patches.dtype).max + 1:
        raise ValueError(
            f"lut has {len(lut)} entries; {patches.dtype} needs {np.iinfo(patches.dtype).max + 1}"
        )
    if len(lut) and (lut.min() < 0 or lut.max() >= nbins):
        raise ValueError(f"lut values must lie in [0, {nbins})")
    out = np.zeros((patches.shape[0], nbins), dtype=np.int64)
    _lut_counts(patches, lut, out)
    return out


@njit(cache=True, nogil=True)
def _count_not_in(values, allowed):
    n = 0
    for v in values:
        if not allowed[v]:
            n += 1
    return n


def count_not_in(values: np.ndarray, allowed: np.ndarray) -> int:
    """How many of ``values`` (unsigned integers, 1-D) are not ``allowed[value]`` (a bool lookup table):
    one pass without temporaries, a third of the time of ``(~allowed[values]).sum()``."""
    if values.ndim != 1 or values.dtype.kind != "u":
        raise ValueError(f"count_not_in takes 1-D unsigned integers, not {values.dtype} {values.shape}")
    return int(_count_not_in(values, allowed))
