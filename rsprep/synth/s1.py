"""Synthetic Sentinel-1 scenes: terrain-corrected GRD backscatter GeoTIFFs (VV, VH, float32 dB)."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from rsprep.synth.landcover import Truth
from rsprep.synth.layout import EPSG, Acquisition
from rsprep.synth.spectra import BACKSCATTER_DB
from rsprep.synth.vectors import reproject

S1_RESOLUTION_M = 20.0
_ENL = 4.4  # equivalent number of looks of IW GRDH


@dataclass(frozen=True)
class S1Spec:
    name: str
    start: datetime
    crs: str
    nodata: float  # -99 like pyroSAR, or NaN
    partial: bool  # a swath edge leaves a nodata corner
    acquisition: int


def s1_specs(acqs: list[Acquisition]) -> list[S1Spec]:
    """Per S2 acquisition an evening pass the same day (north-west corner outside its swath), and for
    the first acquisition a complete scene two days earlier, in EPSG:4326, so that pairing must pick
    the closest scene that fully covers a patch."""
    specs = []
    for a in acqs:
        # the first is the reBEN partner of T33UUP 2017-06-13: S1A_IW_GRDH_1SDV_20170613T165043
        start = a.datatake.replace(hour=16, minute=50, second=43) + timedelta(minutes=2 * a.index)
        specs.append(S1Spec(_name("S1A", start, a.index), start, f"EPSG:{EPSG}", -99.0, True, a.index))
        if a.index == 0:
            early = start - timedelta(days=2, hours=11)
            specs.append(S1Spec(_name("S1B", early, 99), early, "EPSG:4326", float("nan"), False, a.index))
    return specs


def _name(sat: str, start: datetime, salt: int) -> str:
    stop = start + timedelta(seconds=25)
    orbit = int((start - datetime(2014, 4, 3, tzinfo=start.tzinfo)).total_seconds() / 86400 * 175 / 12)
    take = zlib.crc32(f"{sat}{start:%Y%m%dT%H%M%S}".encode()) & 0xFFFFFF
    crc = (zlib.crc32(f"{salt}{start}".encode()) >> 8) & 0xFFFF
    return f"{sat}_IW_GRDH_1SDV_{start:%Y%m%dT%H%M%S}_{stop:%Y%m%dT%H%M%S}_{orbit:06d}_{take:06X}_{crc:04X}"


def write_scene(spec: S1Spec, truth: Truth, out_dir: Path, *, seed: int, winter: bool) -> dict:
    """Write ``<name>/<name>_VV.tif`` and ``_VH.tif`` covering the whole synthetic world."""
    import rasterio
    from rasterio.features import rasterize
    from rasterio.transform import from_origin

    x0, y0, x1, y1 = truth.bounds
    if spec.crs == f"EPSG:{EPSG}":
        # off the 10 m grid on purpose (like real products), so pairing must truly resample
        left, top, res_x, res_y = x0 + 7.3, y1 - 3.1, S1_RESOLUTION_M, S1_RESOLUTION_M
        cols, rows = int((x1 - left) // res_x), int((top - y0) // res_y)
        cells = truth.cells
    else:
        from pyproj import Transformer

        tr = Transformer.from_crs(f"EPSG:{EPSG}", spec.crs, always_xy=True)
        lon0, lat0, lon1, lat1 = tr.transform_bounds(x0, y0, x1, y1)
        res_y = S1_RESOLUTION_M / 111_320.0
        res_x = res_y / np.cos(np.radians((lat0 + lat1) / 2))
        left, top = lon0, lat1
        cols, rows = int((lon1 - lon0) / res_x), int((lat1 - lat0) / res_y)
        cells = reproject(truth.cells, f"EPSG:{EPSG}", spec.crs, densify=200.0)
    transform = from_origin(left, top, res_x, res_y)
    cell = np.full((rows, cols), -1, dtype=np.int32)
    rasterize(zip(cells, np.arange(len(cells), dtype=np.int32), strict=True), out=cell, transform=transform)
    surfaces = truth.surfaces_for(winter)
    rng = np.random.default_rng([seed, 41, spec.acquisition, int(spec.partial)])
    outside = cell < 0
    if spec.partial:  # swath edge: the north-west corner was not imaged
        u = (np.arange(cols) / cols)[None, :]
        v = (np.arange(rows) / rows)[:, None]
        outside = outside | (u + v < 0.35)
    paths = {}
    folder = out_dir / spec.name
    folder.mkdir(parents=True, exist_ok=True)
    for k, pol in enumerate(("VV", "VH")):
        base = BACKSCATTER_DB[surfaces[np.maximum(cell, 0)], k]
        speckle = rng.gamma(_ENL, 1.0 / _ENL, size=(rows, cols)).astype(np.float32)
        db = (base + np.float32(10.0) * np.log10(np.maximum(speckle, 1e-6))).astype(np.float32)
        db[outside] = spec.nodata
        path = folder / f"{spec.name}_{pol}.tif"
        with (
            rasterio.Env(GDAL_PAM_ENABLED="NO"),
            rasterio.open(
                path,
                "w",
                driver="GTiff",
                width=cols,
                height=rows,
                count=1,
                dtype="float32",
                crs=spec.crs,
                transform=transform,
                nodata=spec.nodata,
                TILED="YES",
                COMPRESS="DEFLATE",
                PREDICTOR=3,
            ) as ds,
        ):
            ds.write(db, 1)
            ds.update_tags(
                S1_PRODUCT=spec.name,
                POLARISATION=pol,
                UNIT="dB",
                START_TIME=spec.start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            )
        paths[pol] = path
    bounds = rasterio.transform.array_bounds(rows, cols, transform)
    return {
        "name": spec.name,
        "start": spec.start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "crs": spec.crs,
        "nodata": None if np.isnan(spec.nodata) else spec.nodata,
        "resolution": [res_x, res_y],
        "bounds": [bounds[0], bounds[1], bounds[2], bounds[3]],
        "full_coverage": not spec.partial,
        "files": {pol: p for pol, p in paths.items()},
    }
