"""Numba kernels for the pixel-heavy loops of patching, stacking and S1 pairing.

Pure: numpy and numba only, no file formats. Every kernel has a plain-numpy reference in
``tests/test_kernels.py`` that the tests compare against on ordinary and edge-case inputs, and
``bench/bench_kernels.py`` measures the speed-up over that reference.

Conventions: a *tile array* is 2-D (rows, cols) at one resolution; patches of ``p`` pixels per side
are numbered row-major, ``index = y * n + x``, where ``n`` patches fit along each side (the partial
strip at the right and bottom edge is ignored).

Submodules by topic: :mod:`.cells` (cutting, counting, marking, histograms per patch),
:mod:`.resample` (upsampling patches), :mod:`.burn` (polygon rasterization, GDAL's ring order).
Callers use ``from rsprep.core import kernels; kernels.X``.
"""

from rsprep.core.kernels.burn import burn_polygons, gdal_ring_order
from rsprep.core.kernels.cells import (
    class_counts_per_patch,
    count_not_in,
    count_value_per_patch,
    cut_patches,
    lut_counts_per_patch,
    mark_value_upsampled,
)
from rsprep.core.kernels.resample import RESAMPLING, to_side, upsample_bilinear, upsample_nearest

__all__ = [
    "RESAMPLING",
    "burn_polygons",
    "class_counts_per_patch",
    "count_not_in",
    "count_value_per_patch",
    "cut_patches",
    "gdal_ring_order",
    "lut_counts_per_patch",
    "mark_value_upsampled",
    "to_side",
    "upsample_bilinear",
    "upsample_nearest",
]
