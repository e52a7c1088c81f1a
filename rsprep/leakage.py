"""The leakage report every split run writes (DESIGN §5).

Per pair of splits: how many patches of each have a patch of the other within 1.2 / 5 / 10 km
(centroid distance, inclusive: grid neighbours 1200 m apart count), and how many pairs of patches that
cover the same ground (overlapping footprints of different products: neighbouring tiles, or several
dates of one tile) sit in different splits.

Nearest neighbours are found in the equal-area frame, then their distance is measured exactly: in the
tile CRS when both patches share one, else on the WGS84 ellipsoid.
"""

from __future__ import annotations

import json
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import shapely

from rsprep.dataset import SPLITS
from rsprep.positions import Positions
from rsprep.workstore import write_json_atomic

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
    """Row pairs (i < j) of different products whose footprints share ground (dropped rows excluded)."""
    keep = np.flatnonzero(codes >= 0)
    foot = pos.footprints[keep]
    tree = shapely.STRtree(foot)
    a, b = tree.query(foot)
    m = (a < b) & (pos.product[keep[a]] != pos.product[keep[b]])
    a, b = a[m], b[m]
    if len(a):
        area = shapely.area(shapely.intersection(foot[a], foot[b]))
        m = area > MIN_OVERLAP_M2
        a, b = a[m], b[m]
    return keep[a], keep[b]


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


def write_report(report: dict[str, Any], method: str, json_path: Path) -> Path:
    """Write the report as JSON and the summary beside it (``.txt``); returns the text path."""
    write_json_atomic(json_path, report)
    txt = json_path.with_suffix(".txt")
    tmp = txt.with_name(f".{txt.name}.tmp")
    tmp.write_text(summary(report, method))
    tmp.replace(txt)
    return txt


def load_report(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())
