"""``rsprep metadata``: merge the per-tile tables of a work store into one dataset (docs/dataset.md).

Only valid (no nodata pixel), labelled patches with a Sentinel-1 partner enter the dataset. Each gets
its split (reBEN's tile-border by default; ``rsprep split`` can redo it), its country (nearest
candidate polygon), its BigEarthNet v1 name when a v1 source is given, and the snow and cloud/shadow
flags from its SCL fractions. With ``v1_alignment`` (the ``reben`` recipe) ``s2v1_name``, ``s1_name``
and both flags come from BigEarthNet v1.0 instead (rsprep.stages.metadata_v1). Patches with neither
flag go to ``metadata.parquet``, the others to ``metadata_for_patches_with_snow_cloud_or_shadow.parquet``;
all of them to the GeoParquet sidecar ``patches.parquet``.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rsprep.core.crs import LONLAT, transform_by_epsg
from rsprep.core.splits import SplitOptions, code_names, split_table
from rsprep.errors import InvalidParameterError, OutputExistsError, RsprepError, WriteError
from rsprep.stages.metadata_gather import gather
from rsprep.store import dataset as ds
from rsprep.store.atomic import LOCK_WAIT, digest, fingerprint_files
from rsprep.store.lock import locked
from rsprep.store.workstore import TileStore, WorkStoreError

STAGE = "metadata"


@dataclass(frozen=True)
class MetadataOptions:
    """What enters the dataset and how it is annotated."""

    snow_threshold: float = 0.0  # flag when snow_fraction > threshold
    cloud_threshold: float = 0.0  # flag when cloud_fraction + shadow_fraction > threshold
    countries: Path | None = None
    country_layer: str | None = None
    country_field: str | None = None
    country_candidates: tuple[str, ...] | None = None
    v1: Path | None = None
    v1_alignment: bool = False  # s2v1_name, s1_name and flags from BigEarthNet v1.0 (metadata_v1)
    v1_tables: Path | None = None  # v1 tables folder instead of bigearthnet-common's
    keep_unpaired: bool = False  # keep patches without an S1 partner (s1_name null)
    split: SplitOptions = field(default_factory=SplitOptions)

    def validate(self) -> None:
        for name in ("snow_threshold", "cloud_threshold"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise InvalidParameterError(f"--{name.replace('_', '-')} must lie in [0, 1], got {v}")
        if self.v1_alignment and self.v1 is not None:
            raise InvalidParameterError(
                f"--v1 {self.v1} and v1 alignment both give s2v1_name; drop --v1 (alignment needs only the "
                "patch ids) or turn v1 alignment off (--no-v1-alignment, --set metadata.v1_alignment=false)"
            )
        if self.v1_tables is not None and not self.v1_alignment:
            raise InvalidParameterError(f"--v1-tables {self.v1_tables} is only read with v1 alignment")
        self.split.validate()

    def require_inputs(self) -> None:
        """:meth:`validate`, and with v1 alignment the v1 tables at hand (a build checks this before
        any product work; a missing ``reben`` extra is an error that names it)."""
        self.validate()
        if self.v1_alignment and self.v1_tables is None:
            from rsprep.inputs.v1_tables import package_version

            package_version()


@dataclass
class MetadataResult:
    dataset: Path
    counts: dict[str, Any]
    splits: dict[str, int]
    countries: dict[str, int]
    files: list[Path]
    report: Path
    seconds: float
    warnings: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# Gathering the per-tile tables
# --------------------------------------------------------------------------------------------
# --------------------------------------------------------------------------------------------
# Annotations
# --------------------------------------------------------------------------------------------
def _centroids(table: pa.Table) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    left, right = (np.asarray(table.column(c).to_numpy(), dtype=np.float64) for c in ("left", "right"))
    bottom, top = (np.asarray(table.column(c).to_numpy(), dtype=np.float64) for c in ("bottom", "top"))
    return (left + right) / 2.0, (bottom + top) / 2.0, np.asarray(table.column("epsg").to_numpy())


def _geometry(table: pa.Table):
    """Footprints (EPSG:4326 polygons, corners reprojected) and centroid lon/lat per patch."""
    import shapely

    cx, cy, epsg = _centroids(table)
    cols = {
        c: np.asarray(table.column(c).to_numpy(), dtype=np.float64)
        for c in ("left", "bottom", "right", "top")
    }
    ring_x = np.stack([cols["left"], cols["right"], cols["right"], cols["left"], cols["left"]], axis=1)
    ring_y = np.stack([cols["bottom"], cols["bottom"], cols["top"], cols["top"], cols["bottom"]], axis=1)
    (lon, lat), (rx, ry) = transform_by_epsg(epsg, LONLAT, (cx, cy), (ring_x, ring_y))
    return shapely.polygons(np.stack([rx, ry], axis=2)), lon, lat


def _countries(table: pa.Table, options: MetadataOptions) -> tuple[pa.Array, pa.Array, dict[str, Any]]:
    n = table.num_rows
    if options.countries is None:
        return pa.nulls(n, pa.string()), pa.nulls(n, pa.float64()), {"file": None}
    from rsprep.inputs.countries import nearest_country, read_countries

    countries = read_countries(
        options.countries,
        layer=options.country_layer,
        name_field=options.country_field,
        candidates=options.country_candidates,
    )
    cx, cy, epsg = _centroids(table)
    names, dist = nearest_country(countries, cx, cy, epsg)
    info = {
        "file": str(Path(options.countries).resolve()),
        "layer": countries.layer,
        "name_field": countries.name_field,
        "candidates": list(options.country_candidates) if options.country_candidates else None,
        "fingerprint": fingerprint_files([Path(options.countries)])["digest"],
    }
    dist = np.where(np.isfinite(dist), dist, np.nan)
    return pa.array(names, pa.string()), pa.array(dist, pa.float64(), from_pandas=True), info


def _v1(table: pa.Table, options: MetadataOptions) -> tuple[pa.Array, dict[str, Any]]:
    if options.v1 is None:
        return pa.nulls(table.num_rows, pa.string()), {"source": None}
    from rsprep.inputs.v1names import read_v1

    index = read_v1(options.v1)
    day = pc.strftime(table.column("sensing_time"), format="%Y%m%d").to_numpy(zero_copy_only=False)
    names = index.lookup(
        np.asarray(table.column("patch_id").to_numpy(zero_copy_only=False), dtype=object),
        np.asarray(table.column("tile").to_numpy(zero_copy_only=False), dtype=object),
        np.asarray(day, dtype=object),
        np.asarray(table.column("left").to_numpy(), dtype=np.float64),
        np.asarray(table.column("top").to_numpy(), dtype=np.float64),
    )
    return pa.array(names, pa.string()), {"source": str(Path(options.v1).resolve()), "entries": len(index)}


def _flags(table: pa.Table, options: MetadataOptions) -> tuple[np.ndarray, np.ndarray]:
    snow = np.asarray(table.column("snow_fraction").to_numpy(), dtype=np.float64)
    cloud = np.asarray(table.column("cloud_fraction").to_numpy(), dtype=np.float64)
    shadow = np.asarray(table.column("shadow_fraction").to_numpy(), dtype=np.float64)
    return snow > options.snow_threshold, (cloud + shadow) > options.cloud_threshold


# --------------------------------------------------------------------------------------------
# The stage
# --------------------------------------------------------------------------------------------
def build_metadata(
    work: Path, out: Path, options: MetadataOptions | None = None, *, overwrite: bool = False
) -> MetadataResult:
    """Merge ``work`` into the dataset folder ``out`` (see the module docstring).

    A failure leaves no new folder behind: when this run created ``out``, it is removed again. The
    run holds the dataset folder's lock (docs/architecture.md#locks).
    """
    out = Path(out)
    with locked(out, "dataset folder", wait=LOCK_WAIT):
        created = not out.exists()
        try:
            return _build(work, out, options, overwrite)
        except BaseException:
            if created and out.is_dir():
                shutil.rmtree(out, ignore_errors=True)
            raise


def _build(work: Path, out: Path, options: MetadataOptions | None, overwrite: bool) -> MetadataResult:
    t0 = time.perf_counter()
    options = options or MetadataOptions()
    options.validate()
    _check_overwrite(out, overwrite)
    table, counts, stores = _gather_dataset(work, options.keep_unpaired or options.v1_alignment)
    warnings, aligned, extra = [], None, {}
    if options.v1_alignment:
        from rsprep.stages.metadata_v1 import align_gathered

        aligned = align_gathered(
            table, counts, keep_unpaired=options.keep_unpaired, tables_folder=options.v1_tables, work=work
        )
        table, warnings = aligned.table, aligned.warnings
    country, country_dist, country_info = _countries(table, options)
    s2v1, v1_info = (aligned.s2v1, aligned.info) if aligned else _v1(table, options)
    if options.v1 is not None and s2v1.null_count == len(s2v1):
        warnings.append(f"no patch matched a v1 patch of {options.v1} (same tile, day and corner)")
    snow, cloud = _flags(table, options)
    if aligned:
        extra = aligned.sidecar_columns(snow, cloud)
        snow, cloud = aligned.flags(snow, cloud)
    geometry, lon, lat = _geometry(table)
    table = table.append_column("centroid_lon", pa.array(lon)).append_column("centroid_lat", pa.array(lat))
    outcome = split_table(table, options.split, f"{work}")
    split = code_names(outcome.codes)
    metadata = _metadata_table(table, split, country, s2v1, snow, cloud)
    flagged = snow | cloud
    side = _sidecar(table, geometry, split, country, country_dist, s2v1, snow, cloud, extra)
    written, report = _write_dataset(out, metadata, flagged, side, outcome, options.split.method)
    counts.update(_flag_counts(table.num_rows, flagged, snow, cloud, s2v1))
    per_country = _value_counts(country)
    seconds = time.perf_counter() - t0
    ds.record_build(
        out,
        STAGE,
        {
            "work": ds.relative_work(Path(work), out),
            "stores": {s.name: digest(s.manifest) for s in stores},
            "options": _jsonable(asdict(options)),
            "counts": counts,
            "countries": {**country_info, "patches": per_country},
            "v1": v1_info,
            "splits": outcome.report["counts_all"],
            "seconds": round(seconds, 3),
        },
        fresh=True,
    )
    return MetadataResult(
        out, counts, outcome.report["counts_all"], per_country, written, report, seconds, warnings
    )


def _check_overwrite(out: Path, overwrite: bool) -> None:
    """Refuse to replace a dataset already in ``out`` unless ``overwrite``."""
    targets = [out / ds.METADATA, out / ds.FLAGGED, out / ds.SIDECAR]
    existing = [p for p in targets if p.exists()]
    if existing and not overwrite:
        raise OutputExistsError(
            f"{out} already holds a dataset ({existing[0].name}); pass --overwrite to rebuild it "
            "(its split, LMDB and Zarr copies then need to be redone)"
        )


def _gather_dataset(work: Path, keep_unpaired: bool) -> tuple[pa.Table, dict[str, int], list[TileStore]]:
    """Gather the patches that enter the dataset; refuse a work store that yields none."""
    table, counts, stores = gather(Path(work), keep_unpaired)
    if table.num_rows == 0:
        raise WorkStoreError(
            f"{work}: no patch is valid, labelled and paired ({_describe(counts)}); nothing to write"
        )
    return table, counts, stores


def _metadata_table(table: pa.Table, split, country, s2v1, snow, cloud) -> pa.Table:
    """The official metadata columns of every dataset patch (before the flagged rows are set apart)."""
    return pa.table(
        {
            "patch_id": table.column("patch_id"),
            "labels": table.column("labels"),
            "split": split,
            "country": country,
            "s1_name": table.column("s1_name"),
            "s2v1_name": s2v1,
            "contains_seasonal_snow": pa.array(snow),
            "contains_cloud_or_shadow": pa.array(cloud),
        }
    )


def _write_dataset(out: Path, metadata: pa.Table, flagged, side: pa.Table, outcome, method: str):
    """Write the two metadata tables, the sidecar and the split report; return (tables written, report)."""
    tables = {
        out / ds.METADATA: (metadata.filter(pa.array(~flagged)), True),
        out / ds.FLAGGED: (metadata.filter(pa.array(flagged)), True),
        out / ds.SIDECAR: (side, False),
    }
    try:
        out.mkdir(parents=True, exist_ok=True)
        written = ds.write_tables(tables)
    except OSError as exc:
        if isinstance(exc, RsprepError):
            raise
        raise WriteError(
            exc.errno,
            f"writing {out} ({', '.join(p.name for p in tables)}) failed ({exc.strerror or exc}); the "
            "previous dataset, if any, is untouched: free disk space (or raise the file-size limit) and "
            "run the command again",
        ) from exc
    report = out / ds.SPLIT_REPORT
    ds.write_split_report(outcome.report, method, report)
    return written, report


def _flag_counts(patches: int, flagged, snow, cloud, s2v1) -> dict[str, int]:
    """The dataset, flag and v1-match counts of the build record."""
    return {
        "dataset_patches": patches,
        "metadata_rows": int((~flagged).sum()),
        "flagged_rows": int(flagged.sum()),
        "flag_seasonal_snow": int(snow.sum()),
        "flag_cloud_or_shadow": int(cloud.sum()),
        "flag_both": int((snow & cloud).sum()),
        "flag_snow_only": int((snow & ~cloud).sum()),
        "flag_cloud_or_shadow_only": int((cloud & ~snow).sum()),
        "s2v1_matched": int(len(s2v1) - s2v1.null_count),
    }


def _describe(counts: dict[str, int]) -> str:
    return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts.items())


def _value_counts(arr: pa.Array) -> dict[str, int]:
    out = {}
    for row in pc.value_counts(arr).to_pylist():
        out[row["values"] if row["values"] is not None else "(none)"] = row["counts"]
    return dict(sorted(out.items()))


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj.resolve())
    return obj


def _sidecar(table, geometry, split, country, country_dist, s2v1, snow, cloud, extra) -> pa.Table:
    """The GeoParquet sidecar: one row per dataset patch, geometry in EPSG:4326 (docs/dataset.md)."""
    import geopandas as gpd

    cols = {
        "patch_id": table.column("patch_id"),
        "tile": table.column("tile"),
        "product_id": table.column("product_id"),
        "x": table.column("x"),
        "y": table.column("y"),
        "epsg": table.column("epsg"),
        "left": table.column("left"),
        "bottom": table.column("bottom"),
        "right": table.column("right"),
        "top": table.column("top"),
        "tile_size_m": table.column("tile_size_m"),
        "patch_size_m": table.column("patch_size_m"),
        "centroid_lon": table.column("centroid_lon"),
        "centroid_lat": table.column("centroid_lat"),
        "sensing_time": table.column("sensing_time"),
        "season": table.column("season"),
        "processing_baseline": table.column("processing_baseline"),
        "nodata_fraction": table.column("nodata_fraction"),
        "cloud_fraction": table.column("cloud_fraction"),
        "shadow_fraction": table.column("shadow_fraction"),
        "snow_fraction": table.column("snow_fraction"),
        "scl_nodata_fraction": table.column("scl_nodata_fraction"),
        "unlabeled_fraction": table.column("unlabeled_fraction"),
        "labels": table.column("labels"),
        "split": split,
        "country": country,
        "country_distance_m": country_dist,
        "s1_name": table.column("s1_name"),
        "s2v1_name": s2v1,
        "contains_seasonal_snow": pa.array(snow),
        "contains_cloud_or_shadow": pa.array(cloud),
        **extra,  # v1 alignment: the SCL flags, v1_country, v1_season
    }
    import io

    # geopandas writes the GeoParquet "geo" metadata (CRS as PROJJSON, geometry types, bbox); the
    # geometry column itself is the same WKB, so the attribute columns keep their exact Arrow types.
    buf = io.BytesIO()
    gpd.GeoDataFrame(geometry=geometry, crs="EPSG:4326").to_parquet(buf, index=False)
    buf.seek(0)
    geo = pq.read_table(buf)
    cols["geometry"] = geo.column("geometry")
    return pa.table(cols).replace_schema_metadata({b"geo": geo.schema.metadata[b"geo"]})
