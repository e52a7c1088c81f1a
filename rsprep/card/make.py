"""``make_card``: a dataset folder's README.md (a Hugging Face dataset card), figures/ and croissant.json.

docs/card.md. ``facts.card_facts`` computes what the card states from the dataset's files;
``readme.render`` writes it as text, ``figures`` draws it, ``croissant.write_croissant`` describes the
folder. Every file is written through ``rsprep.store.atomic`` (a temporary sibling, then a rename),
figures first and README.md last; a README.md that ``rsprep card`` did not write (no ``MARKER``) is
replaced only with ``overwrite``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rsprep.card import figures as fig
from rsprep.card import readme
from rsprep.card.facts import CardData, card_facts
from rsprep.errors import InputNotFoundError, InvalidParameterError, OutputExistsError
from rsprep.store import dataset as ds
from rsprep.store.atomic import building, write_text_atomic
from rsprep.validation.view import DatasetView, open_view

Progress = Callable[[int, int], None]
README = "README.md"
FIGURES = "figures"
MARKER = "<!-- written by `rsprep card` (docs/card.md); running it again replaces this file -->"
MAX_PREVIEW = 64
FRACTION_COLUMNS = ("cloud_fraction", "shadow_fraction", "snow_fraction")


@dataclass(frozen=True)
class CardOptions:
    """``countries``: a polygon file whose borders are drawn on the map; ``preview``: patches in the
    RGB grid (0: no grid); ``seed``: which patches the grid shows."""

    countries: Path | None = None
    preview: int = 16
    seed: int = 0

    def validate(self) -> CardOptions:
        if not 0 <= self.preview <= MAX_PREVIEW:
            raise InvalidParameterError(f"--preview must be between 0 and {MAX_PREVIEW}, got {self.preview}")
        if self.seed < 0:
            raise InvalidParameterError(f"--seed must be 0 or more, got {self.seed}")
        if self.countries is not None and not Path(self.countries).exists():
            raise InputNotFoundError(f"--countries {self.countries} does not exist; pass a polygon file")
        return self


@dataclass
class CardResult:
    """What ``make_card`` wrote; ``notes`` say, per figure or file, what was left out and why."""

    dataset: Path
    readme: Path
    figures: list[Path]
    croissant: Path | None
    patches: int
    notes: dict[str, str] = field(default_factory=dict)

    @property
    def written(self) -> list[Path]:
        return [*self.figures, self.readme, *([self.croissant] if self.croissant else [])]


def make_card(
    dataset: str | Path,
    options: CardOptions | None = None,
    *,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> CardResult:
    """Write ``DATASET/README.md``, ``DATASET/figures/*.png`` and ``DATASET/croissant.json``."""
    options = (options or CardOptions()).validate()
    root = Path(dataset)
    view = open_view(root)
    _check_overwrite(root / README, overwrite)
    tick = _ticker(progress, 4)
    facts, data = card_facts(view)
    tick()
    pngs, notes = draw_all(facts, data, view, options)
    written = _write_figures(root / FIGURES, pngs)
    facts["figures"] = {"files": {k: f"{FIGURES}/{p.name}" for k, p in written.items()}, "notes": notes}
    tick()
    write_text_atomic(root / README, readme.render(facts, MARKER))
    tick()
    croissant = None
    if (root / ds.METADATA).is_file():
        croissant = _croissant(root, facts)
    else:
        notes = {**notes, "croissant": f"needs {ds.METADATA} (its record sets are the metadata tables)"}
    tick()
    return CardResult(root, root / README, list(written.values()), croissant, facts["patches"], notes)


def _ticker(progress: Progress | None, total: int) -> Callable[[], None]:
    state = {"done": 0}

    def tick() -> None:
        state["done"] += 1
        if progress is not None:
            progress(state["done"], total)

    return tick


def _check_overwrite(path: Path, overwrite: bool) -> None:
    if path.is_file() and not overwrite and MARKER not in path.read_text(encoding="utf-8", errors="replace"):
        raise OutputExistsError(
            f"{path} exists and was not written by `rsprep card`; pass --overwrite to replace it"
        )


def _croissant(root: Path, facts: dict[str, Any]) -> Path:
    from rsprep.card.croissant import write_croissant

    return write_croissant(root, facts)


def _write_figures(folder: Path, pngs: dict[str, bytes]) -> dict[str, Path]:
    """Write each PNG atomically; remove a figure of an earlier card that no longer applies."""
    written: dict[str, Path] = {}
    if pngs:
        folder.mkdir(exist_ok=True)
    for name in fig.FIGURE_NAMES:
        path = folder / f"{name}.png"
        if name in pngs:
            with building(path, folder=False) as tmp:
                tmp.write_bytes(pngs[name])
            written[name] = path
        elif path.is_file():
            path.unlink()
    return written


# --------------------------------------------------------------------------------------------
# What to draw
# --------------------------------------------------------------------------------------------


def draw_all(
    facts: dict[str, Any], data: CardData, view: DatasetView, options: CardOptions
) -> tuple[dict[str, bytes], dict[str, str]]:
    """The PNG bytes of every figure the dataset allows, and a note for each one it does not."""
    pngs: dict[str, bytes] = {}
    notes: dict[str, str] = {}
    classes = facts["classes"]
    if data.table is None:
        notes["class_frequency"] = notes["cooccurrence"] = "needs metadata.parquet (the labels)"
    else:
        pngs["class_frequency"] = fig.class_frequency(classes["native"], classes["per_split"])
        pngs["cooccurrence"] = fig.cooccurrence(np.array(facts["cooccurrence"]), classes["native"])
    rows = np.flatnonzero(data.side >= 0) if data.side is not None else np.array([], np.int64)
    if len(rows) and not {"geometry", "centroid_lon"} & set(data.sidecar.column_names):
        rows = rows[:0]  # a sidecar without locations
    if len(rows) == 0:
        notes["footprints"] = notes["fractions"] = "needs the sidecar patches.parquet (`rsprep metadata`)"
    else:
        pngs["footprints"] = _map(data, rows, options.countries)
        have = [c for c in FRACTION_COLUMNS if c in data.sidecar.column_names]
        if have:
            sc = data.sidecar.take(data.side[rows])
            pngs["fractions"] = fig.fractions({c: _floats(sc.column(c)) for c in have})
        else:
            notes["fractions"] = "patches.parquet has no cloud_fraction/shadow_fraction/snow_fraction"
    if options.preview == 0:
        notes["preview"] = "--preview 0"
    else:
        samples, note = read_samples(view, data.patch_ids, options.preview, options.seed)
        if samples:
            pngs["preview"] = fig.preview(samples)
        if note:
            notes["preview"] = note
    return pngs, notes


def _floats(column) -> np.ndarray:
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)


def _map(data: CardData, rows: np.ndarray, countries: Path | None) -> bytes:
    """Footprints of the patches with a sidecar row (centroids beyond ``MAX_POLYGONS``)."""
    import shapely

    sc = data.sidecar.take(data.side[rows])
    names = sc.column_names
    geoms = (
        shapely.from_wkb(sc.column("geometry").to_numpy(zero_copy_only=False))
        if "geometry" in names
        else None
    )
    if "centroid_lon" in names and "centroid_lat" in names:
        lon, lat = _floats(sc.column("centroid_lon")), _floats(sc.column("centroid_lat"))
    else:
        cx = shapely.get_coordinates(shapely.centroid(geoms))
        lon, lat = cx[:, 0], cx[:, 1]
    rings = None
    if geoms is not None and len(rows) <= fig.MAX_POLYGONS:
        coords, index = shapely.get_coordinates(geoms, return_index=True)
        rings = np.split(coords, np.flatnonzero(np.diff(index)) + 1)
    borders = border_lines(countries, lon, lat) if countries is not None else None
    return fig.footprints(rings, lon, lat, data.splits[rows], borders)


def border_lines(path: Path, lon: np.ndarray, lat: np.ndarray) -> list[np.ndarray]:
    """Country borders of a polygon file, clipped to the patches' extent (with a margin), as lon/lat lines."""
    import shapely

    from rsprep.inputs.countries import read_countries

    pad = max(float(np.ptp(lon)), float(np.ptp(lat)), 0.05) * 0.1
    bounds = (lon.min() - pad, lat.min() - pad, lon.max() + pad, lat.max() + pad)
    lines = shapely.clip_by_rect(shapely.boundary(read_countries(Path(path)).geometries), *bounds)
    lines = shapely.get_parts(lines[~shapely.is_empty(lines)])
    coords, index = shapely.get_coordinates(lines, return_index=True)
    return np.split(coords, np.flatnonzero(np.diff(index)) + 1) if len(coords) else []


def read_samples(view: DatasetView, patch_ids: Sequence[str], n: int, seed: int) -> tuple[list, str | None]:
    """``n`` patches drawn with ``seed`` (sorted), read from the Zarr store, the LMDB or the GeoTIFFs."""
    from rsprep.formats.readers import LmdbReader, ReaderError, TiffReader, ZarrReader

    if not patch_ids:
        return [], "the dataset has no patches"
    if view.zarr is not None:
        reader, source = ZarrReader(view.zarr), "the Zarr store"
    elif view.lmdb is not None:
        reader, source = LmdbReader(view.lmdb), "the LMDB"
    elif view.tiff:
        reader, source = TiffReader(view.root), "the GeoTIFF layout"
    else:
        return [], "needs pixels: no LMDB, Zarr store or GeoTIFF layout (`rsprep convert`)"
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(patch_ids), size=min(n, len(patch_ids)), replace=False))
    samples, missing = [], 0
    for i in rows.tolist():
        pid = patch_ids[i]
        try:
            arrays, ref = _read_patch(reader, pid, ReaderError)
        except ReaderError:
            missing += 1
            continue
        samples.append((_label(pid), np.dstack([arrays["B04"], arrays["B03"], arrays["B02"]]), ref))
    note = f"read from {source}"
    if missing:
        note += f"; {missing} of {len(rows)} sampled patches could not be read there"
    return samples, note


def _read_patch(reader, pid: str, error: type[Exception]):
    """S2 bands and the reference map (None when the output has none for the patch)."""
    if hasattr(reader, "read_row"):  # Zarr: one row holds both
        arrays = reader.patch(pid, s1=False)
        return arrays, arrays.get("reference_map")
    try:
        arrays = reader.patch(pid, None, reference_map=True)
        return arrays, arrays["reference_map"]
    except error:
        return reader.patch(pid, None, reference_map=False), None


def _label(pid: str) -> str:
    """``T33UUP 20170613 26_57`` for a reBEN patch id (tile, date, x_y); else its end."""
    parts = pid.split("_")
    if len(parts) == 8 and len(parts[2]) >= 8:
        return f"{parts[5]} {parts[2][:8]} {parts[6]}_{parts[7]}"
    return pid[-24:]
