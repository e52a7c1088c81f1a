"""Scene-level labels from reference maps: code histograms, the reBEN label rule, multi-hot vectors.

docs/labels.md: ``unlabeled_fraction`` = UNLABELED pixels / all pixels; a patch is labelled only when
``unlabeled_fraction < max_unlabeled`` (reBEN: 0.25); its labels are the set of classes present,
listed alphabetically. Pure numpy + one numba kernel; the reference stage, validation and noise
injection all use it, so the rule exists once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rsprep.core import kernels
from rsprep.core.nomenclature import CLC_CODES, Nomenclature

DEFAULT_MAX_UNLABELED = 0.25

#: Histogram bins: 0 (no polygon), the 45 CLC codes in increasing order, then "any other value".
CODE_BINS: np.ndarray = np.array([0, *sorted(CLC_CODES)], dtype=np.uint16)
_OTHER = len(CODE_BINS)
CODE_LUT = np.full(65536, _OTHER, dtype=np.int64)
CODE_LUT[CODE_BINS] = np.arange(len(CODE_BINS))


@dataclass
class PatchLabels:
    """Labels of N patches under one nomenclature."""

    nomenclature: Nomenclature
    max_unlabeled: float
    code_counts: np.ndarray  # int64 (N, len(CODE_BINS) + 1): pixels per CODE_BINS entry, last = other values
    present: np.ndarray  # bool (N, C): class present, native order
    unlabeled_fraction: np.ndarray  # float64 (N,)
    rule_passed: np.ndarray  # bool (N,): unlabeled_fraction < max_unlabeled

    def multi_hot(self, order: str = "native") -> np.ndarray:
        """uint8 (N, C) in ``order`` (``native`` / the native order's name, or ``alphabetical``)."""
        cls = self.nomenclature
        names = cls.order(order)
        idx = [cls.classes.index(c) for c in names]
        return self.present[:, idx].astype(np.uint8)

    def labels(self, i: int) -> list[str]:
        """Alphabetical class names present in patch ``i`` (regardless of the rule)."""
        present = self.present[i]
        return sorted(c for c, h in zip(self.nomenclature.classes, present, strict=True) if h)


def label_patches(
    maps: np.ndarray, nomenclature: Nomenclature, max_unlabeled: float = DEFAULT_MAX_UNLABELED
) -> PatchLabels:
    """Histogram CLC codes per patch of an unsigned (N, h, w) array and apply the label rule."""
    if not 0.0 < max_unlabeled <= 1.0:
        raise ValueError(f"max_unlabeled must lie in (0, 1], not {max_unlabeled}")
    if maps.dtype != np.uint16:
        maps = maps.astype(np.uint16)
    counts = kernels.lut_counts_per_patch(maps, CODE_LUT, _OTHER + 1)
    return labels_from_code_counts(counts, nomenclature, max_unlabeled)


def labels_from_code_counts(
    counts: np.ndarray, nomenclature: Nomenclature, max_unlabeled: float = DEFAULT_MAX_UNLABELED
) -> PatchLabels:
    """The rule applied to code histograms laid out as :data:`CODE_BINS` (+ one "other" bin)."""
    lut = nomenclature.code_lut()
    cls_of_bin = np.append(lut[CODE_BINS].astype(np.int64), -1)  # other values are UNLABELED
    onehot = np.zeros((len(cls_of_bin), nomenclature.size + 1), dtype=np.int64)
    onehot[np.arange(len(cls_of_bin)), np.where(cls_of_bin < 0, nomenclature.size, cls_of_bin)] = 1
    per_class = counts @ onehot
    total = counts.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        unlabeled = np.where(total > 0, per_class[:, -1] / np.maximum(total, 1), 1.0)
    return PatchLabels(
        nomenclature,
        max_unlabeled,
        counts,
        per_class[:, :-1] > 0,
        unlabeled.astype(np.float64),
        unlabeled < max_unlabeled,
    )
