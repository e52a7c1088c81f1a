"""Reading CORINE Land Cover polygons: find the layer and code field, read one tile's worth, reproject.

See docs/inputs.md#corine-land-cover. Accepts the CLC 2018 GeoPackage and any GeoPackage /
Shapefile / FileGDB (or a zip holding one) with a CLC code field. The code field is matched
case-insensitively (``Code_18``, ``CODE_18``, ``code_18``) or named with ``code_field``.
When a file holds several layers with that field, change layers (which carry two code fields,
e.g. ``CODE_12`` and ``CODE_18``) are skipped; anything still ambiguous asks for ``layer``.

Only polygons whose envelope meets the tile are read (a bbox filter at read time, which uses the
file's spatial index), then reprojected to the tile CRS. Codes are validated, never guessed:
anything outside the CLC nomenclature is reported with counts.
"""

from __future__ import annotations

import logging
import re
import warnings
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rsprep.core.nomenclature import CLC_CODES
from rsprep.errors import InputNotFoundError, RsprepError

log = logging.getLogger(__name__)

DEFAULT_CODE_FIELD = "code_18"
VECTOR_SUFFIXES = (".gpkg", ".shp", ".sqlite", ".fgb", ".geojson", ".json", ".gml")
_CODE_FIELD = re.compile(r"^code_\d\d$", re.IGNORECASE)


class ClcError(RsprepError, ValueError):
    """A CLC file cannot be used as it is (no code field, bad codes, no CRS, ambiguous layer)."""


@dataclass(frozen=True)
class ClcSource:
    """One opened CLC layer: what GDAL reads, which layer and field, its CRS and its files."""

    path: Path  # as the user gave it
    dataset: str  # what GDAL opens (the path, or /vsizip/... inside a zip)
    layer: str
    code_field: str
    crs: str  # the layer's CRS (or the user's override), as WKT or an authority string
    files: tuple[Path, ...] = field(default=())

    def describe(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "dataset": self.dataset,
            "layer": self.layer,
            "code_field": self.code_field,
        }


@dataclass
class ClcPolygons:
    """Polygons of one tile, in the tile CRS, with their integer CLC codes (in file order)."""

    geometries: np.ndarray  # shapely geometries
    codes: np.ndarray  # uint16
    skipped_empty: int = 0


def open_clc(
    path: str | Path, *, layer: str | None = None, code_field: str | None = None, crs: str | None = None
) -> ClcSource:
    """Resolve ``path`` (file, ``.gdb`` folder, zip or GDAL ``/vsi`` path) to one CLC layer.

    Raises:
        InputNotFoundError: ``path`` does not exist.
        ClcError: no readable vector data, no layer with the code field, an ambiguous choice,
            or no CRS (and no ``crs`` override).
    """
    import pyogrio

    p = Path(path)
    text = str(path)
    if not text.startswith("/vsi") and not p.exists():
        raise InputNotFoundError(f"CLC file {path} does not exist")
    if p.is_file() and p.suffix.lower() == ".zip":
        datasets = _zip_members(p)
        if not datasets:
            raise ClcError(
                f"{path}: the zip holds no vector dataset ({', '.join(VECTOR_SUFFIXES)}, .gdb); "
                "unzip it and pass the CLC file"
            )
    else:
        datasets = [text]
    choices = []
    for ds in datasets:
        try:
            layers = [str(name) for name, geom in pyogrio.list_layers(ds) if geom is not None]
        except Exception as exc:  # pyogrio raises DataSourceError and friends
            raise ClcError(f"{path}: GDAL cannot read it as vector data ({exc})") from exc
        for lyr in layers if layer is None else [layer]:
            if layer is not None and lyr not in layers:
                raise ClcError(f"{path}: no layer {layer!r}; the layers are {', '.join(layers) or 'none'}")
            info = pyogrio.read_info(ds, layer=lyr)
            choices.append((ds, lyr, [str(f) for f in info["fields"]], info["crs"]))
    wanted = (code_field or DEFAULT_CODE_FIELD).lower()
    matches = [c for c in choices if wanted in (f.lower() for f in c[2])]
    if len(matches) > 1 and layer is None:
        # Change layers (cha12/cha18) carry the codes of two dates; status layers carry one.
        status = [m for m in matches if sum(bool(_CODE_FIELD.match(f)) for f in m[2]) <= 1]
        matches = status or matches
    if not matches:
        seen = "; ".join(f"{lyr}: {', '.join(fields) or 'no fields'}" for _, lyr, fields, _ in choices)
        codes = sorted({f for _, _, fields, _ in choices for f in fields if _CODE_FIELD.match(f)})
        hint = (
            f"give --code-field (code-like fields here: {', '.join(codes)})"
            if codes
            else "give --code-field with the field that holds the CLC codes"
        )
        raise ClcError(
            f"{path}: no layer has a CLC code field {wanted!r} (layers and fields: {seen}); {hint}"
        )
    if len(matches) > 1:
        names = ", ".join(f"{lyr} ({Path(ds).name})" for ds, lyr, _, _ in matches)
        raise ClcError(f"{path}: several layers have the field {wanted!r}: {names}; choose one with --layer")
    ds, lyr, fields, layer_crs = matches[0]
    real_field = next(f for f in fields if f.lower() == wanted)
    layer_crs = crs or layer_crs
    if not layer_crs:
        raise ClcError(
            f"{path}: layer {lyr} has no coordinate reference system; give --clc-crs (CLC 2018 is EPSG:3035)"
        )
    return ClcSource(p, ds, lyr, real_field, str(layer_crs), _files_of(p))


def read_clc(source: ClcSource, bounds: tuple[float, float, float, float], crs: Any) -> ClcPolygons:
    """Read the polygons of ``source`` whose envelope meets ``bounds`` (given in ``crs``), in ``crs``.

    Raises:
        ClcError: the CRSs cannot be transformed into each other, non-polygon geometries, or codes
            outside the CLC nomenclature (listed with counts).
    """
    import pyogrio
    import shapely

    bbox = _bounds_in(bounds, crs, source)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*has GPKG application_id.*")
        df = pyogrio.read_dataframe(
            source.dataset, layer=source.layer, columns=[source.code_field], bbox=bbox, use_arrow=True
        )
    df = df.set_crs(source.crs, allow_override=True)
    geoms = df.geometry.values
    empty = shapely.is_missing(np.asarray(geoms)) | shapely.is_empty(np.asarray(geoms))
    if empty.any():
        df = df[~empty]
    kinds = Counter(df.geometry.geom_type)
    other = {k: v for k, v in kinds.items() if k not in ("Polygon", "MultiPolygon")}
    if other:
        listing = ", ".join(f"{k} x{v}" for k, v in sorted(other.items()))
        raise ClcError(f"{source.path} layer {source.layer}: CLC must be polygons, found {listing}")
    codes = parse_codes(df[source.code_field].to_numpy(dtype=object), f"{source.path} layer {source.layer}")
    try:
        projected = df.geometry.to_crs(crs)
    except Exception as exc:
        raise _crs_error(source, crs, exc) from exc
    out = np.asarray(projected.values, dtype=object)
    if len(out) and not np.isfinite(shapely.total_bounds(out)).all():
        raise _crs_error(source, crs, "coordinates became infinite")
    return ClcPolygons(out, codes, int(empty.sum()))


def parse_codes(values: np.ndarray, where: str) -> np.ndarray:
    """CLC code field values (strings like ``"211"``, integers or integral floats) → uint16.

    Raises:
        ClcError: listing every value outside the CLC nomenclature with its count.
    """
    out = np.zeros(len(values), dtype=np.uint16)
    bad: Counter = Counter()
    cache: dict[Any, int | None] = {}
    for i, v in enumerate(values):
        code = cache.get(v, -1) if _hashable(v) else -1
        if code == -1:
            code = _code_or_none(v)
            if _hashable(v):
                cache[v] = code
        if code is None:
            bad["<null>" if _is_null(v) else repr(v)] += 1
        else:
            out[i] = code
    if bad:
        listing = ", ".join(f"{k} ({n} polygon{'s' * (n != 1)})" for k, n in bad.most_common(20))
        more = f" and {len(bad) - 20} more" if len(bad) > 20 else ""
        raise ClcError(
            f"{where}: codes outside the CLC nomenclature (44 level-3 codes and 999): {listing}{more}; "
            "fix the file or choose the right --code-field"
        )
    return out


def _is_null(v: Any) -> bool:
    return v is None or (isinstance(v, (float, np.floating)) and v != v) or type(v).__name__ == "NAType"


def _code_or_none(v: Any) -> int | None:
    if _is_null(v):
        return None
    if isinstance(v, bytes):
        v = v.decode("ascii", "replace")
    if isinstance(v, str):
        s = v.strip()
        code = int(s) if s.isdigit() else None
    elif isinstance(v, (int, np.integer)):
        code = int(v)
    elif isinstance(v, (float, np.floating)):
        code = int(v) if np.isfinite(v) and float(v).is_integer() else None
    else:
        code = None
    return code if code in CLC_CODES else None


def _hashable(v: Any) -> bool:
    return isinstance(v, (str, bytes, int, float, np.integer, np.floating)) or v is None


def _bounds_in(bounds, crs, source: ClcSource) -> tuple[float, float, float, float]:
    from pyproj import CRS, Transformer
    from pyproj.exceptions import CRSError, ProjError

    try:
        t = Transformer.from_crs(CRS.from_user_input(crs), CRS.from_user_input(source.crs), always_xy=True)
        box = t.transform_bounds(*bounds, densify_pts=21)
    except (CRSError, ProjError) as exc:
        raise _crs_error(source, crs, exc) from exc
    if not np.isfinite(box).all():
        raise _crs_error(source, crs, "the tile has no finite extent in the CLC CRS")
    # A small margin keeps polygons whose envelope only touches the densified bounds.
    pad_x = (box[2] - box[0]) * 1e-3
    pad_y = (box[3] - box[1]) * 1e-3
    return (box[0] - pad_x, box[1] - pad_y, box[2] + pad_x, box[3] + pad_y)


def _crs_error(source: ClcSource, crs, why) -> ClcError:
    return ClcError(
        f"{source.path}: cannot transform between the CLC CRS ({_short(source.crs)}) and the tile CRS "
        f"({_short(crs)}): {why}; reproject the CLC file or give the right --clc-crs"
    )


def _short(crs) -> str:
    try:
        from pyproj import CRS

        c = CRS.from_user_input(crs)
        epsg = c.to_epsg()
        return f"EPSG:{epsg}" if epsg else c.name
    except Exception:
        return str(crs)[:60]


def _zip_members(path: Path) -> list[str]:
    try:
        names = zipfile.ZipFile(path).namelist()
    except zipfile.BadZipFile as exc:
        raise ClcError(f"{path}: not a readable zip file ({exc}); download it again") from exc
    found = [n for n in names if n.lower().endswith(VECTOR_SUFFIXES) and not n.endswith("/")]
    gdbs = sorted({n[: n.lower().index(".gdb/") + 4] for n in names if ".gdb/" in n.lower()})
    return [f"/vsizip/{path.resolve()}/{n}" for n in sorted(found) + gdbs]


def _files_of(path: Path) -> tuple[Path, ...]:
    if not path.exists():  # a /vsi path: fingerprint the archive it names, if any
        m = re.match(r"^/vsi\w+/(.+?\.(zip|tar|tgz|gz))(/|$)", str(path))
        return (Path(m.group(1)),) if m and Path(m.group(1)).exists() else ()
    if path.is_dir():
        return tuple(sorted(p for p in path.rglob("*") if p.is_file()))
    if path.suffix.lower() == ".shp":
        return tuple(sorted(p for p in path.parent.glob(path.stem + ".*") if p.is_file()))
    return (path,)
