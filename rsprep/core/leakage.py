"""The leakage report every split run writes (docs/splits.md).

Per pair of splits: how many patches of each have a patch of the other within 1.2 / 5 / 10 km
(centroid distance, inclusive: grid neighbours 1200 m apart count), and how many pairs of patches that
cover the same ground (overlapping footprints of different products: neighbouring tiles, or several
dates of one tile) sit in different splits.

Nearest neighbours are found in the equal-area frame, then their distance is measured exactly: in the
tile CRS when both patches share one, else on the WGS84 ellipsoid.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

import numpy as np
import shapely

from rsprep.core.positions import Positions
from rsprep.core.splits import SPLITS

DISTANCES_M = (1200.0, 5000.0, 10000.0)
#: Footprints overlap when they share more than this area (m²); touching edges do not count.
MIN_OVERLAP_M2 = 1.0
#: Search radius slack for the equal-area frame's scale error (< 2 % over Europe in EPSG:3035).
_SEARCH_SLACK = 1.05


def nearest_per_split(codes: np.ndarray, pos: Positions, max_distance: float) -> np.ndarray:
    """(N, 3) exact distance from each patch to the nearest patch of each split (inf: none in range)."""
    n = len(codes)
    out = np.full((n, len(SPLITS)), np.inf)
    points = shapely.points(pos.ex, pos.ey)
    for s in range(len(SPLITS)):
        members = np.flatnonzero(codes == s)
        others = np.flatnonzero((codes >= 0) & (codes != s))
        if len(members) == 0 or len(others) == 0:
            continue
        tree = shapely.STRtree(points[members])
        idx, _ = tree.query_nearest(
            points[others], max_distance=max_distance * _SEARCH_SLACK, return_distance=True, all_matches=False
        )
        i = others[idx[0]]
        j = members[idx[1]]
        out[i, s] = pos.exact_distance(i, j)
    return out


def overlapping_pairs(codes: np.ndarray, pos: Positions) -> tuple[np.ndarray, np.ndarray]:
    """Row pairs (i < j) of different products whose footprints share ground (dropped rows excluded).

    Products are paired first by their extents (a handful of pairs: neighbouring tiles, dates of one
    tile); only the patches of a product that reach into the other's extent are compared.
    """
    rows = np.flatnonzero(codes >= 0)
    if len(rows) == 0:
        return rows, rows
    bounds = shapely.bounds(pos.footprints)
    order = rows[np.argsort(pos.product[rows], kind="stable")]
    starts = np.flatnonzero(np.r_[True, np.diff(pos.product[order]) != 0])
    groups = np.split(order, starts[1:])
    extents = np.array(
        [[b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max()] for b in (bounds[g] for g in groups)]
    )
    boxes = shapely.box(extents[:, 0], extents[:, 1], extents[:, 2], extents[:, 3])
    pa_, pb_ = shapely.STRtree(boxes).query(boxes)
    out_i, out_j = [], []
    for ga, gb in zip(pa_[pa_ < pb_], pb_[pa_ < pb_], strict=True):
        ia = _inside(groups[ga], bounds, extents[gb])
        ib = _inside(groups[gb], bounds, extents[ga])
        if len(ia) == 0 or len(ib) == 0:
            continue
        i, j = _overlaps(pos, ia, ib)
        out_i.append(i)
        out_j.append(j)
    if not out_i:
        return rows[:0], rows[:0]
    i, j = np.concatenate(out_i), np.concatenate(out_j)
    return np.minimum(i, j), np.maximum(i, j)


def _overlaps(pos: Positions, ia: np.ndarray, ib: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Overlapping (a, b) among two products' patches: box arithmetic in their shared CRS when they
    have one (exact, and no polygon clipping), else polygon intersection in the equal-area frame."""
    za, zb = pos.zone[ia[0]], pos.zone[ib[0]]
    shared = pos.local_bounds is not None and za >= 0 and za == zb
    if shared and (pos.zone[ia] == za).all() and (pos.zone[ib] == za).all():
        la, lb = pos.local_bounds[ia], pos.local_bounds[ib]
        a, b = shapely.STRtree(shapely.box(*lb.T)).query(shapely.box(*la.T))
        w = np.minimum(la[a, 2], lb[b, 2]) - np.maximum(la[a, 0], lb[b, 0])
        h = np.minimum(la[a, 3], lb[b, 3]) - np.maximum(la[a, 1], lb[b, 1])
        area = np.where((w > 0) & (h > 0), w * h, 0.0)
    else:
        a, b = shapely.STRtree(pos.footprints[ib]).query(pos.footprints[ia])
        area = shapely.area(shapely.intersection(pos.footprints[ia[a]], pos.footprints[ib[b]]))
    m = area > MIN_OVERLAP_M2
    return ia[a[m]], ib[b[m]]


def _inside(group: np.ndarray, bounds: np.ndarray, extent: np.ndarray) -> np.ndarray:
    b = bounds[group]
    m = (b[:, 2] > extent[0]) & (b[:, 0] < extent[2]) & (b[:, 3] > extent[1]) & (b[:, 1] < extent[3])
    return group[m]


def leakage_report(
    codes: np.ndarray, pos: Positions, distances: tuple[float, ...] = DISTANCES_M
) -> dict[str, Any]:
    near = nearest_per_split(codes, pos, max(distances))
    oi, oj = overlapping_pairs(codes, pos)
    ci, cj = codes[oi], codes[oj]
    report: dict[str, Any] = {
        "frame": pos.crs,
        "georeferenced": pos.georeferenced,
        "distances_m": [float(d) for d in distances],
        "counts": {name: int((codes == k).sum()) for k, name in enumerate(SPLITS)},
        "dropped": int((codes < 0).sum()),
        "overlapping_pairs": len(oi),
        "overlapping_pairs_same_split": int((ci == cj).sum()),
        "pairs": [],
    }
    for a, b in combinations(range(len(SPLITS)), 2):
        na, nb = SPLITS[a], SPLITS[b]
        neighbours = {}
        for d in distances:
            a_near_b = int(((codes == a) & (near[:, b] <= d)).sum())
            b_near_a = int(((codes == b) & (near[:, a] <= d)).sum())
            neighbours[_km(d)] = {
                f"{na}_with_{nb}_neighbour": a_near_b,
                f"{nb}_with_{na}_neighbour": b_near_a,
                "patches": a_near_b + b_near_a,
            }
        cross = int((((ci == a) & (cj == b)) | ((ci == b) & (cj == a))).sum())
        report["pairs"].append({"splits": [na, nb], "neighbours": neighbours, "overlapping_pairs": cross})
    if not pos.georeferenced:
        report["note"] = (
            "no coordinates in the table: positions are tile-local from the patch names, so patches of "
            "different tiles are never neighbours and only several dates of one tile can overlap"
        )
    return report


def _km(d: float) -> str:
    return f"{d / 1000:g} km"


def summary(report: dict[str, Any], method: str) -> str:
    """A readable summary of a leakage report (also written as ``*.txt``)."""
    lines = [f"split method: {method}   frame: {report['frame']}"]
    c = report["counts"]
    total = sum(c.values()) + report["dropped"]
    parts = [f"{k} {v} ({v / total:.1%})" if total else f"{k} {v}" for k, v in c.items()]
    if report["dropped"]:
        parts.append(f"dropped {report['dropped']}")
    lines.append("patches: " + ", ".join(parts))
    dist = [_km(d) for d in report["distances_m"]]
    lines.append(f"{'pair':24s}" + "".join(f"{'near ≤ ' + d:>16s}" for d in dist) + f"{'same ground':>14s}")
    for p in report["pairs"]:
        name = f"{p['splits'][0]} / {p['splits'][1]}"
        cells = "".join(f"{p['neighbours'][d]['patches']:>16d}" for d in dist)
        lines.append(f"{name:24s}{cells}{p['overlapping_pairs']:>14d}")
    lines.append(
        f"ground-overlapping pairs: {report['overlapping_pairs']} "
        f"({report['overlapping_pairs_same_split']} within one split)"
    )
    if "note" in report:
        lines.append(f"note: {report['note']}")
    return "\n".join(lines) + "\n"
