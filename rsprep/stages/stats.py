"""``rsprep stats``: per-band statistics of the train split and label frequencies per split (docs/stats.md).

The train patches of both metadata files are read in batches (``batch_size`` patches, the next batch
read in a background thread while the current one is accumulated), from the dataset's Zarr store,
LMDB, GeoTIFF layout or work store. The accumulators of :mod:`rsprep.core.moments` hold a fixed amount
of memory, so the memory use does not depend on the dataset size. The result is the ``stats.json``
contract of docs/stats.md; :func:`write_stats` writes it into the dataset folder.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rsprep import __version__
from rsprep.core.bands import SPECTRAL_BANDS
from rsprep.core.moments import FloatMoments, IntMoments
from rsprep.core.nomenclature import BEN19
from rsprep.core.splits import SPLITS
from rsprep.core.values import S1_BANDS, resolution
from rsprep.errors import InputNotFoundError, InvalidParameterError, OutputExistsError
from rsprep.formats.geotiff import is_layout
from rsprep.formats.readers import LmdbReader, TiffReader, ZarrReader
from rsprep.formats.sources import open_source, read_items, read_metadata
from rsprep.formats.zarr import STORE_NAME
from rsprep.store import dataset as ds
from rsprep.store.atomic import write_text_atomic

STATS = "stats.json"
#: Where the pixels are read from; ``auto`` takes the first that exists, in this order.
SOURCES = ("zarr", "lmdb", "tiff", "workstore")
METHODS = ("bilinear", "nearest")
Progress = Callable[[int, int], None]


@dataclass
class StatsOptions:
    sample: int | float | None = None  # None: every train patch; N patches; or a fraction in (0, 1]
    seed: int = 0
    source: str = "auto"
    batch_size: int = 256

    def validate(self) -> None:
        if self.source != "auto" and self.source not in SOURCES:
            raise InvalidParameterError(f"--source {self.source!r} is not auto, {', '.join(SOURCES)}")
        s = self.sample
        if s is not None and (
            isinstance(s, bool)
            or (isinstance(s, int) and s < 1)
            or (isinstance(s, float) and not 0 < s <= 1)
            or not isinstance(s, int | float)
        ):
            raise InvalidParameterError(
                f"--sample {s!r}: give a number of patches (>= 1) or a fraction in (0, 1], e.g. 1000 or 0.05"
            )
        if not isinstance(self.seed, int) or self.seed < 0:
            raise InvalidParameterError(f"--seed {self.seed!r} must be an integer >= 0")
        if self.batch_size < 1:
            raise InvalidParameterError(f"batch size {self.batch_size} must be >= 1")


def parse_sample(text: str | None) -> int | float | None:
    """``--sample``: ``"1000"`` (patches) or ``"0.05"`` (a fraction of the train patches)."""
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise InvalidParameterError(
            f"--sample {text!r} is neither a number of patches nor a fraction; give e.g. 1000 or 0.05"
        ) from None


# --------------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------------
def _locations(dataset: Path, kind: str) -> list[Path]:
    default = {"zarr": dataset / "zarr" / STORE_NAME, "lmdb": dataset / "lmdb", "tiff": dataset}
    if kind == "workstore":
        work = ds.work_store(dataset)
        return [work] if work is not None else []
    recorded = ds.read_build(dataset).get("stages", {}).get(f"convert_{kind}", {}).get("path")
    return [default[kind]] + ([ds.resolve_recorded(recorded, dataset)] if recorded else [])


def _present(kind: str, path: Path) -> bool:
    if kind == "zarr":
        return (path / "zarr.json").is_file()
    if kind == "lmdb":
        return (path / "data.mdb").is_file()
    return is_layout(path) if kind == "tiff" else path.is_dir()


def locate_source(dataset: Path, source: str = "auto") -> tuple[str, Path]:
    """The kind and path of the pixels ``rsprep stats`` reads (docs/stats.md#sources)."""
    for kind in SOURCES if source == "auto" else (source,):
        for path in _locations(dataset, kind):
            if _present(kind, path):
                return kind, path
    if source != "auto":
        where = ", ".join(str(p) for p in _locations(dataset, source)) or f"{ds.BUILD} names no work store"
        raise InputNotFoundError(f"{dataset} holds no {source} source ({where}); pass another --source")
    raise InputNotFoundError(
        f"{dataset} holds no pixels to read: no zarr/{STORE_NAME}, lmdb/, GeoTIFF layout or work store; "
        f"run `rsprep convert zarr {dataset}` first"
    )


Reader = Callable[[list[tuple[str, str | None]]], list[dict[str, np.ndarray]]]


def _reader(dataset: Path, kind: str, path: Path) -> Reader:
    if kind == "zarr":
        z = ZarrReader(path)
        return lambda pairs: [z.read_row(z.row(p), s1=s is not None, reference_map=False) for p, s in pairs]
    if kind in ("lmdb", "tiff"):
        r = LmdbReader(path) if kind == "lmdb" else TiffReader(path)
        return lambda pairs: [r.patch(p, s, reference_map=False) for p, s in pairs]
    src = open_source(dataset)
    s2 = {it.key: it for it in src.items["s2"]}
    s1 = {it.key: it for it in src.items["s1"]}

    def read(pairs):
        out = read_items(src.spec, "s2", [s2[p] for p, _ in pairs])
        paired = [(j, s) for j, (_, s) in enumerate(pairs) if s]
        for (j, _), values in zip(
            paired, read_items(src.spec, "s1", [s1[s] for _, s in paired]), strict=True
        ):
            out[j].update(values)
        return out

    return read


# --------------------------------------------------------------------------------------------
# Accumulation
# --------------------------------------------------------------------------------------------
def _batches(read: Reader, where: str) -> Callable[[list], dict[str, np.ndarray]]:
    """``read`` with its patches stacked per band: {band: (B, h, w)} (S1: only the paired patches)."""

    def batch(pairs: list) -> dict[str, np.ndarray]:
        values = read(pairs)
        out = {b: np.stack([v[b] for v in values]) for b in SPECTRAL_BANDS}
        paired = [v for v, (_, s1) in zip(values, pairs, strict=True) if s1 is not None]
        for b in S1_BANDS:
            if any(b not in v for v in paired):
                raise ds.DatasetError(f"{where} lacks the S1 band {b} of patches that have an s1_name")
            out[b] = np.stack([v[b] for v in paired]) if paired else None
        return out

    return batch


class _Moments:
    """The accumulators of one run: S2 native and bilinear-stacked, S1 VV/VH."""

    def __init__(self) -> None:
        self.s2 = {b: IntMoments() for b in SPECTRAL_BANDS}
        self.bilinear = {b: IntMoments() for b in SPECTRAL_BANDS}
        self.s1 = {b: FloatMoments() for b in S1_BANDS}
        self.factor: dict[str, int] = {}

    def add(self, batch: dict[str, np.ndarray], where: str) -> None:
        side = batch["B02"].shape[-1]
        for b in SPECTRAL_BANDS:
            arr = batch[b]
            if arr.dtype != np.uint16 or side % arr.shape[-1]:
                raise ds.DatasetError(f"{where}: band {b} is {arr.dtype} {arr.shape[1:]}, not uint16 DN")
            self.factor[b] = side // arr.shape[-1]
            self.s2[b].add(arr)
            if self.factor[b] > 1:
                self.bilinear[b].add_bilinear(arr, self.factor[b])
        for b in S1_BANDS:
            if batch[b] is not None:
                self.s1[b].add(batch[b])

    def stacked(self, method: str, band: str) -> IntMoments:
        f = self.factor.get(band, 1)
        if f == 1:
            return self.s2[band]
        return self.bilinear[band] if method == "bilinear" else self.s2[band].repeated(f * f)


def _accumulate(read: Reader, rows: list, batch_size: int, where: str, progress: Progress | None) -> _Moments:
    acc, read = _Moments(), _batches(read, where)
    batches = [rows[a : a + batch_size] for a in range(0, len(rows), batch_size)]
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(read, batches[0])
        for i in range(len(batches)):
            values = pending.result()
            if i + 1 < len(batches):
                pending = pool.submit(read, batches[i + 1])
            acc.add(values, where)
            if progress is not None:
                progress(min((i + 1) * batch_size, len(rows)), len(rows))
    return acc


# --------------------------------------------------------------------------------------------
# The result
# --------------------------------------------------------------------------------------------
def _band(m: IntMoments | FloatMoments, res: int) -> dict[str, Any]:
    return {**m.summary(), "resolution_m": res}


def _loader(bands: dict[str, dict], order: list[str]) -> dict[str, list]:
    return {k: [bands[b][k] for b in order] for k in ("mean", "std")}


def _labels(table: pa.Table, where: str) -> dict[str, Any]:
    classes = list(BEN19.alphabetical)
    flat = pc.list_flatten(table.column("labels"))
    parents = pc.list_parent_indices(table.column("labels"))
    unknown = sorted(set(pc.unique(flat).to_pylist()) - set(classes) - {None})
    if unknown:
        raise ds.DatasetError(f"{where}: labels {unknown} are not BEN-19 classes (docs/labels.md)")
    split = table.column("split")
    names = sorted(set(pc.unique(split).to_pylist()) - set(SPLITS) - {None})
    per_split, patches = {}, {}
    pairs = pa.table({"split": pc.take(split, parents), "label": flat})
    counts = pairs.group_by(["split", "label"]).aggregate([([], "count_all")]).to_pylist()
    for s in [*SPLITS, *names]:
        per_split[s] = dict.fromkeys(classes, 0)
        patches[s] = int(pc.sum(pc.equal(split, s)).as_py() or 0)
    for row in counts:
        if row["split"] is not None:
            per_split[row["split"]][row["label"]] = row["count_all"]
    return {
        "class_order": "alphabetical",
        "classes": classes,
        "per_split": per_split,
        "patches_per_split": patches,
    }


def _train_rows(table: pa.Table, options: StatsOptions, where: str) -> tuple[list, dict | None]:
    train = table.filter(pc.equal(table.column("split"), "train"))
    rows = list(zip(train.column("patch_id").to_pylist(), train.column("s1_name").to_pylist(), strict=True))
    if not rows:
        raise ds.DatasetError(f"{where}: no patch has split 'train'; run `rsprep split` on the dataset first")
    s, n = options.sample, len(rows)
    k = n if s is None else (s if isinstance(s, int) else max(1, math.floor(s * n + 0.5)))
    if k >= n:
        return rows, None
    pick = np.sort(np.random.default_rng(options.seed).choice(n, size=k, replace=False))
    return [rows[i] for i in pick], {"patches": k, "of": n, "seed": options.seed}


def _compute(dataset: Path, options: StatsOptions, progress: Progress | None) -> tuple[dict, Path]:
    options.validate()
    dataset = Path(dataset)
    if not dataset.is_dir():
        raise InputNotFoundError(f"dataset folder {dataset} does not exist")
    table = read_metadata(dataset, required=True)
    where = f"{dataset / ds.METADATA} (+ {ds.FLAGGED})"
    rows, sample = _train_rows(table, options, where)
    kind, path = locate_source(dataset, options.source)
    acc = _accumulate(_reader(dataset, kind, path), rows, options.batch_size, str(path), progress)
    bands = {b: _band(acc.s2[b], resolution(b)) for b in SPECTRAL_BANDS}
    bands |= {b: _band(acc.s1[b], resolution(b)) for b in S1_BANDS}
    stacked = {m: {b: _band(acc.stacked(m, b), 10) for b in SPECTRAL_BANDS} for m in METHODS}
    native = [*SPECTRAL_BANDS, *S1_BANDS]
    result = {
        "format": "rsprep-stats",
        "version": 1,
        "rsprep_version": __version__,
        "split": "train",
        "patches": len(rows),
        "source": kind,
        "sample": sample,
        "order": {"s2": list(SPECTRAL_BANDS), "s1": list(S1_BANDS), "native": native},
        "bands": bands,
        "stacked": stacked,
        "loader": {"native": _loader(bands, native)}
        | {m: _loader(stacked[m], SPECTRAL_BANDS) for m in METHODS},
        "labels": _labels(table, where),
        "percentiles": {
            "definition": "inverted_cdf (numpy.percentile method='inverted_cdf')",
            "s2": "exact (integer histogram)",
            "s1": "histogram, bin width 0.01 dB: within 0.01 dB",
        },
    }
    return result, path


def compute_stats(dataset: str | Path, options: StatsOptions, progress: Progress | None = None) -> dict:
    """The ``stats.json`` document of ``dataset`` (docs/stats.md), computed without writing anything."""
    return _compute(Path(dataset), options, progress)[0]


def stats_text(result: dict) -> str:
    """The bytes of ``stats.json``: sorted keys, round-trip floats, a final newline."""
    return json.dumps(result, indent=2, sort_keys=True, allow_nan=False) + "\n"


def write_stats(
    dataset: str | Path, options: StatsOptions, *, overwrite: bool = False, progress: Progress | None = None
) -> Path:
    """Compute the statistics and write ``DATASET/stats.json`` (atomically); returns its path."""
    dataset = Path(dataset)
    out = dataset / STATS
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{out} exists; pass --overwrite to replace it")
    t0 = time.perf_counter()
    result, path = _compute(dataset, options, progress)
    write_text_atomic(out, stats_text(result))
    if (dataset / ds.BUILD).is_file():
        record = {
            "options": asdict(options),
            "source": result["source"],
            "source_path": ds.recorded_path(path, dataset),
            "patches": result["patches"],
            "path": ds.recorded_path(out, dataset),
            "seconds": round(time.perf_counter() - t0, 3),
        }
        ds.record_build(dataset, "stats", record)
    return out
