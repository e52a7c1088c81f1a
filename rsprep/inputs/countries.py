"""Country of each patch: the nearest candidate country polygon, distance 0 inside (docs/inputs.md).

Any polygon file with a name field works (Natural Earth admin-0, GISCO countries, ...). Candidates can be
restricted (reBEN: ten countries); distances are measured in each tile's own CRS from the patch centroid.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import shapely

from rsprep.core.crs import LONLAT, to_lonlat
from rsprep.errors import InputNotFoundError, InvalidParameterError, RsprepError

#: The countries reBEN assigns (its recipe restricts the candidates to these).
REBEN_COUNTRIES = (
    "Austria",
    "Belgium",
    "Finland",
    "Ireland",
    "Kosovo",
    "Lithuania",
    "Luxembourg",
    "Portugal",
    "Serbia",
    "Switzerland",
)
#: Name fields tried in order (case-insensitive) when none is given.
NAME_FIELDS = ("NAME", "NAME_EN", "ADMIN", "NAME_ENGL", "CNTR_NAME", "COUNTRY", "NAME_LONG")


class CountryError(RsprepError, ValueError):
    """The country file cannot be used as asked."""


@dataclass
class Countries:
    path: Path
    layer: str
    name_field: str
    names: np.ndarray  # object, one per geometry
    geometries: np.ndarray  # shapely, EPSG:4326 (lon/lat)

    @property
    def unique_names(self) -> list[str]:
        return sorted(set(self.names.tolist()))


def parse_candidates(text: str | None) -> tuple[str, ...] | None:
    """``"reben"`` → the reBEN list; ``"A,B"`` → ("A", "B"); None / "" / "all" → no restriction."""
    if text is None or text.strip().lower() in ("", "all"):
        return None
    if text.strip().lower() == "reben":
        return REBEN_COUNTRIES
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise InvalidParameterError(f"--country-candidates {text!r} names no country")
    return names


def read_countries(
    path: Path,
    *,
    layer: str | None = None,
    name_field: str | None = None,
    candidates: tuple[str, ...] | None = None,
) -> Countries:
    """Read the country polygons (reprojected to lon/lat), keeping only ``candidates`` when given."""
    import pyogrio

    path = Path(path)
    if not path.exists():
        raise InputNotFoundError(f"country file {path} does not exist")
    try:
        layers = [str(name) for name, _ in pyogrio.list_layers(path)]
    except Exception as exc:  # pyogrio raises DataSourceError and friends
        raise CountryError(f"{path} is not a vector file GDAL can open ({exc})") from exc
    if layer is None:
        if len(layers) != 1:
            raise CountryError(
                f"{path} has {len(layers)} layers ({', '.join(layers)}); choose one with --country-layer"
            )
        layer = layers[0]
    elif layer not in layers:
        raise CountryError(f"{path} has no layer {layer!r}; it has {', '.join(layers)}")
    info = pyogrio.read_info(path, layer=layer)
    fields = [str(f) for f in info["fields"]]
    field = _name_field(path, fields, name_field)
    df = pyogrio.read_dataframe(path, layer=layer, columns=[field])
    if df.crs is None:
        raise CountryError(
            f"{path} layer {layer} declares no CRS; give it one (e.g. ogr2ogr -a_srs EPSG:4326)"
        )
    df = df[df.geometry.notna() & ~df.geometry.is_empty & df[field].notna()]
    df = df.to_crs("EPSG:4326")
    names = np.asarray(df[field].astype(str).to_numpy(), dtype=object)
    geoms = np.asarray(df.geometry.to_numpy(), dtype=object)
    if candidates is not None:
        known = set(names.tolist())
        missing = [c for c in candidates if c not in known]
        if missing:
            hints = []
            for m in missing:
                close = difflib.get_close_matches(m, sorted(known), n=2)
                hints.append(
                    f"{m!r}" + (f" (did you mean {' or '.join(map(repr, close))}?)" if close else "")
                )
            raise CountryError(
                f"{path} field {field} has no country {', '.join(hints)}; "
                "check --country-candidates against the names in the file"
            )
        keep = np.isin(names, np.array(candidates, dtype=object))
        names, geoms = names[keep], geoms[keep]
    if len(names) == 0:
        raise CountryError(f"{path} layer {layer} holds no country polygon with a name in field {field}")
    return Countries(path, layer, field, names, geoms)


def _name_field(path: Path, fields: list[str], wanted: str | None) -> str:
    lower = {f.lower(): f for f in fields}
    if wanted is not None:
        if wanted.lower() in lower:
            return lower[wanted.lower()]
        raise CountryError(f"{path} has no field {wanted!r}; its fields are {', '.join(fields)}")
    for candidate in NAME_FIELDS:
        if candidate.lower() in lower:
            return lower[candidate.lower()]
    raise CountryError(
        f"{path} has none of the usual country-name fields ({', '.join(NAME_FIELDS)}); "
        f"give one of its fields with --country-field: {', '.join(fields)}"
    )


def nearest_country(
    countries: Countries, x: np.ndarray, y: np.ndarray, epsg: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest country name and distance (m) of points (x, y) in their own CRS ``EPSG:<epsg>``.

    Ties (a point inside overlapping polygons, or equidistant borders) go to the alphabetically first name.
    """
    from pyproj import Transformer

    n = len(x)
    out_names = np.empty(n, dtype=object)
    out_dist = np.full(n, np.inf)
    rank = {name: i for i, name in enumerate(sorted(set(countries.names.tolist())))}
    name_rank = np.array([rank[v] for v in countries.names], dtype=np.int64)
    for code in np.unique(epsg):
        m = np.flatnonzero(epsg == code)
        lon, lat = to_lonlat(x[m], y[m], epsg[m])
        idx = _near_candidates(countries, lon, lat)
        to_tile = Transformer.from_crs(LONLAT, f"EPSG:{code}", always_xy=True)
        projected = shapely.transform(
            countries.geometries[idx], lambda xy, t=to_tile: np.stack(t.transform(xy[:, 0], xy[:, 1]), 1)
        )
        finite = np.isfinite(shapely.bounds(projected)).all(axis=1)
        projected, idx = projected[finite], idx[finite]
        ranks = name_rank[idx]
        if len(projected) == 0:
            continue
        tree = shapely.STRtree(projected)
        (pi, gi), dist = tree.query_nearest(
            shapely.points(x[m], y[m]), return_distance=True, all_matches=True
        )
        # For each point keep the pair with the smallest distance, then the first name.
        order = np.lexsort((ranks[gi], dist, pi))
        pi, gi, dist = pi[order], gi[order], dist[order]
        first = np.ones(len(pi), dtype=bool)
        first[1:] = pi[1:] != pi[:-1]
        rows = m[pi[first]]
        out_names[rows] = countries.names[idx[gi[first]]]
        out_dist[rows] = dist[first]
    return out_names, out_dist


def _near_candidates(countries: Countries, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Indices of the country polygons near the points (bounding boxes within 30° of theirs), or all.

    Projecting a whole world file into one UTM zone gives infinities far away; nearby polygons are
    the only ones that can be nearest."""
    window = shapely.box(lon.min() - 30, lat.min() - 30, lon.max() + 30, lat.max() + 30)
    near = shapely.intersects(shapely.envelope(countries.geometries), window)
    if not near.any():
        near[:] = True
    return np.flatnonzero(near)
