"""Coordinates of rows that each carry their own CRS (tile CRSs differ across a dataset)."""

from __future__ import annotations

import numpy as np

LONLAT = "EPSG:4326"


def transform_by_epsg(
    epsg: np.ndarray, dst, *coords: tuple[np.ndarray, np.ndarray]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each ``(x, y)`` pair moved from its row's ``EPSG:<epsg[i]>`` to ``dst`` (axis order x, y).

    ``x`` and ``y`` have one row per entry of ``epsg`` ((N,) points or (N, k) rings); one
    transformer is built per distinct source CRS.
    """
    from pyproj import Transformer

    epsg = np.asarray(epsg)
    out = [(np.empty(np.shape(x)), np.empty(np.shape(y))) for x, y in coords]
    for code in np.unique(epsg):
        m = epsg == code
        t = Transformer.from_crs(f"EPSG:{int(code)}", dst, always_xy=True)
        for (x, y), (ox, oy) in zip(coords, out, strict=True):
            ox[m], oy[m] = t.transform(x[m], y[m])
    return out


def to_lonlat(x: np.ndarray, y: np.ndarray, epsg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Longitude and latitude (EPSG:4326) of points given in their rows' own CRS."""
    return transform_by_epsg(epsg, LONLAT, (x, y))[0]
