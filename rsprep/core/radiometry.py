"""Radiometric harmonisation of L2A digital numbers (docs/inputs.md#sentinel-2). Pure numpy.

Constants come from the product metadata (``BOA_QUANTIFICATION_VALUE``, per-band ``BOA_ADD_OFFSET``),
never from the date. DN 0 is nodata in every mode.
"""

from __future__ import annotations

import numpy as np

from rsprep.errors import InvalidParameterError

HARMONIZE_MODES: tuple[str, ...] = ("none", "to-old", "reflectance")


def check_mode(mode: str) -> str:
    if mode not in HARMONIZE_MODES:
        raise InvalidParameterError(
            f"--harmonize {mode!r} is not one of {', '.join(HARMONIZE_MODES)} "
            "(none: L2A digital numbers as stored; to-old: baseline >= 04.00 mapped to the pre-04.00 "
            "encoding; reflectance: float32 (DN + offset) / quantification)"
        )
    return mode


def output_dtype(mode: str) -> np.dtype:
    return np.dtype(np.float32) if check_mode(mode) == "reflectance" else np.dtype(np.uint16)


def harmonize(dn: np.ndarray, *, mode: str, offset: int, quantification: float) -> np.ndarray:
    """Apply ``mode`` to uint16 digital numbers of one band.

    Args:
        dn: uint16 digital numbers, 0 = nodata.
        mode: ``none`` (returned unchanged), ``to-old`` (``clip(DN, -offset) + offset``, i.e.
            ``clip(DN, 1000) - 1000`` for offset -1000; 0 stays 0; unchanged when offset is 0), or
            ``reflectance`` (float32 ``(DN + offset) / quantification``, NaN where DN is 0).
        offset: the band's BOA_ADD_OFFSET (0 when the metadata has none).
        quantification: BOA_QUANTIFICATION_VALUE (10000).
    """
    check_mode(mode)
    if dn.dtype != np.uint16:
        raise InvalidParameterError(f"harmonisation expects uint16 digital numbers, got {dn.dtype}")
    if mode == "none":
        return dn
    if mode == "to-old":
        if offset == 0:
            return dn
        if offset > 0:
            raise InvalidParameterError(
                f"BOA_ADD_OFFSET {offset} is positive; --harmonize to-old only maps the negative "
                "offsets of baseline 04.00 and later"
            )
        shifted = np.maximum(dn, np.uint16(-offset)) - np.uint16(-offset)
        return np.where(dn == 0, np.uint16(0), shifted).astype(np.uint16)
    if quantification <= 0:
        raise InvalidParameterError(f"quantification value {quantification} must be positive")
    refl = (dn.astype(np.float32) + np.float32(offset)) / np.float32(quantification)
    refl[dn == 0] = np.nan
    return refl
