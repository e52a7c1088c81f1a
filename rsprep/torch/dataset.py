"""``BENDataset``: a torch ``Dataset`` over a dataset's LMDB, Zarr store or GeoTIFF layout (docs/torch.md).

Rows are those of both metadata files, sorted by patch_id, filtered by split and by the snow / cloud
flags. Samples are built a batch at a time (``__getitems__``, what a ``DataLoader`` calls; ``ds[i]``
is a batch of one) from the arrays of :mod:`rsprep.formats.readers` (from LMDB: zero-copy views in
one read transaction): the S2 bands upsampled to 120 × 120 as the stack stage does
(:func:`rsprep.core.kernels.resample.to_side_into`, the bands of one native size of the whole batch
in one call), stacked in ``band_order``, then VV and VH (zeros for patches without an S1 partner),
normalised in place with the ``loader`` figures of ``stats.json``. torch is imported in the
constructor only. Safe with every DataLoader start method, ``fork`` after the parent has read included.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rsprep.core.bands import SPECTRAL_BANDS
from rsprep.core.kernels.resample import to_side_into
from rsprep.core.nomenclature import BEN19
from rsprep.core.values import MAP_BAND, REFERENCE_MAP, S1_BANDS, map_key
from rsprep.errors import InputNotFoundError, InvalidParameterError, RsprepError
from rsprep.formats.readers import LmdbReader, TiffReader, ZarrReader
from rsprep.formats.sources import read_metadata

SIDE = 120
FORMATS = ("lmdb", "zarr", "tiff")
BAND_SETS = {"s2": tuple(SPECTRAL_BANDS), "s1": tuple(S1_BANDS), "all": (*SPECTRAL_BANDS, *S1_BANDS)}
RESAMPLINGS = ("bilinear", "nearest")
CLASS_ORDERS = ("alphabetical", "paper")
SNOW, CLOUD = "contains_seasonal_snow", "contains_cloud_or_shadow"
TORCH_MISSING = "torch is not installed: pip install 'rsprep[train]'"


def import_torch():
    """The torch module, or the clear :class:`RsprepError` when the ``train`` extra is missing."""
    try:
        import torch
    except ImportError:
        raise RsprepError(TORCH_MISSING) from None
    return torch


def _choice(name: str, value: str, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise InvalidParameterError(f"{name}={value!r}: expected one of {', '.join(allowed)}")
    return value


def _band_names(bands: str, band_order: Sequence[str] | None) -> tuple[str, ...]:
    allowed = BAND_SETS[_choice("bands", bands, tuple(BAND_SETS))]
    if band_order is None:
        return allowed
    names = tuple(band_order)
    bad = [b for b in names if b not in allowed]
    if bad or len(set(names)) != len(names) or not names:
        raise InvalidParameterError(
            f"band_order {list(names)}: expected distinct bands among {', '.join(allowed)} (bands={bands!r})"
        )
    return names


def _reader(root: Path, fmt: str):
    if fmt == "lmdb":
        return LmdbReader(root / "lmdb")
    if fmt == "zarr":
        return ZarrReader(root / "zarr" / "dataset.zarr")
    return TiffReader(root)


def _rows(root: Path, split, include_snowy: bool, include_cloudy: bool):
    table = read_metadata(root, required=True)
    if split is not None:
        splits = [split] if isinstance(split, str) else list(split)
        table = table.filter(pc.is_in(table.column("split"), value_set=pa.array(splits, pa.string())))
    for keep, column in ((include_snowy, SNOW), (include_cloudy, CLOUD)):
        if not keep and column in table.column_names:
            table = table.filter(pc.invert(pc.fill_null(table.column(column), False)))
    return table


def _noisy(root: Path, name: str) -> dict[str, list[str]]:
    import pyarrow.parquet as pq

    path = root / "noise" / f"{name}.parquet"
    if not path.is_file():
        raise InputNotFoundError(f"noise variant {path} does not exist; create it with `rsprep noise`")
    table = pq.read_table(path, columns=["patch_id", "split", "labels_noisy"])
    table = table.filter(pc.equal(table.column("split"), "train"))
    ids = table.column("patch_id").to_pylist()
    return dict(zip(ids, table.column("labels_noisy").to_pylist(), strict=True))


def _stats_arrays(
    root: Path, stats, resampling: str, names: tuple[str, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std per channel: ``loader[resampling]`` for S2 bands, ``loader.native`` for VV / VH.

    ``None`` when there is no stats.json (the dataset then computes them, :meth:`BENDataset._fly`).
    """
    if stats is None and (root / "stats.json").is_file():
        stats = root / "stats.json"
    if stats is None:
        return None
    if not isinstance(stats, dict):
        stats = json.loads(Path(stats).read_text())
    loader, order = stats["loader"], stats["order"]
    mean, std = [], []
    for b in names:
        key, pos = (
            (resampling, order["s2"].index(b))
            if b in SPECTRAL_BANDS
            else ("native", order["native"].index(b))
        )
        mean.append(loader[key]["mean"][pos])
        std.append(loader[key]["std"][pos])
    return np.asarray(mean, np.float32), np.asarray(std, np.float32)


class BENDataset:
    """Samples ``{"image", "labels"[, "reference_map"][, "patch_id"]}`` of a dataset (docs/torch.md)."""

    def __init__(
        self,
        root: str | Path,
        *,
        format: str = "lmdb",
        split: str | Sequence[str] | None = "train",
        bands: str = "all",
        band_order: Sequence[str] | None = None,
        resampling: str = "bilinear",
        class_order: str = "alphabetical",
        normalize: bool = True,
        stats: Path | str | dict | None = None,
        include_snowy: bool = True,
        include_cloudy: bool = True,
        noise: str | None = None,
        return_map: bool = False,
        return_id: bool = False,
    ) -> None:
        import_torch()
        self.root = Path(root)
        self.format = _choice("format", format, FORMATS)
        self.resampling = _choice("resampling", resampling, RESAMPLINGS)
        order = _choice("class_order", class_order, CLASS_ORDERS)
        self.band_names = _band_names(bands, band_order)
        self.classes = tuple(BEN19.alphabetical if order == "alphabetical" else BEN19.classes)
        self.return_map, self.return_id = return_map, return_id
        split_kwargs = {"format": format, "bands": bands, "band_order": band_order, "resampling": resampling}
        table = _rows(self.root, split, include_snowy, include_cloudy)
        self.patch_ids = table.column("patch_id").to_pylist()
        self.s1_names = table.column("s1_name").to_pylist()
        self._labels = self._multi_hot(table.column("labels").to_pylist(), noise)
        self._reader = _reader(self.root, self.format)
        self._s1 = any(b in S1_BANDS for b in self.band_names)
        self._pid = os.getpid()
        self.mean = self.std = None
        if normalize:
            figures = _stats_arrays(self.root, stats, self.resampling, self.band_names)
            self.mean, self.std = figures if figures is not None else self._fly(split_kwargs)

    def _fly(self, kwargs: dict) -> tuple[np.ndarray, np.ndarray]:
        """Train-split mean and std per channel as stats.json defines them (population figures over
        valid values: S2 nodata 0 left out, S1 only of paired patches and finite), from the images."""
        train = BENDataset(self.root, split="train", normalize=False, **kwargs)
        if len(train) == 0:
            raise InvalidParameterError(f"{self.root}: no train patches to compute statistics from")
        n, sums, squares = ([0] * len(self.band_names) for _ in range(3))
        for i in range(len(train)):
            image = train.raw_image(i)
            for c, band in enumerate(self.band_names):
                if band in S1_BANDS:
                    if train.s1_names[i] is None:
                        continue
                    v = image[c][np.isfinite(image[c])].astype(np.float64)
                    n[c], sums[c], squares[c] = n[c] + v.size, sums[c] + v.sum(), squares[c] + (v * v).sum()
                else:
                    v = image[c][image[c] != 0].astype(np.int64)
                    n[c], sums[c], squares[c] = (
                        n[c] + v.size,
                        sums[c] + int(v.sum()),
                        squares[c] + int((v * v).sum()),
                    )
        mean = [s / k for s, k in zip(sums, n, strict=True)]
        var = [(k * q - s * s) / (k * k) for s, q, k in zip(sums, squares, n, strict=True)]
        return np.asarray(mean, np.float32), np.sqrt(np.asarray(var, np.float64)).astype(np.float32)

    def _multi_hot(self, labels: list[list[str]], noise: str | None) -> np.ndarray:
        if noise is not None:
            noisy = _noisy(self.root, noise)
            labels = [noisy.get(p, lab) for p, lab in zip(self.patch_ids, labels, strict=True)]
        index = {c: i for i, c in enumerate(self.classes)}
        out = np.zeros((len(labels), len(self.classes)), np.float32)
        for row, names in enumerate(labels):
            for name in names or ():
                out[row, index[name]] = 1.0
        return out

    def __len__(self) -> int:
        return len(self.patch_ids)

    def _parallel(self) -> bool:
        """numba threads only in the process that built the dataset and outside DataLoader workers:
        GNU OpenMP aborts a forked child of a process that used it, and each worker has its core."""
        import torch

        return os.getpid() == self._pid and torch.utils.data.get_worker_info() is None

    @contextmanager
    def _source(self):
        """Yields ``arrays(i)`` for rows of one batch: from LMDB, views in one read transaction."""
        if not isinstance(self._reader, LmdbReader):
            yield self._arrays
            return
        with self._reader.views() as get:

            def arrays(i: int) -> dict[str, np.ndarray]:
                pid, s1_name = self.patch_ids[i], self.s1_names[i] if self._s1 else None
                out = dict(get(pid))
                if s1_name is not None:
                    out.update(get(s1_name))
                if self.return_map:
                    out[REFERENCE_MAP] = get(map_key(pid))[MAP_BAND]
                return out

            yield arrays

    def _arrays(self, i: int) -> dict[str, np.ndarray]:
        pid, s1_name = self.patch_ids[i], self.s1_names[i] if self._s1 else None
        if isinstance(self._reader, ZarrReader):
            return self._reader.patch(pid, s1=self._s1 and s1_name is not None, reference_map=self.return_map)
        return self._reader.patch(pid, s1_name, reference_map=self.return_map)

    def _batch(self, rows: list[int], normalize: bool) -> tuple[np.ndarray, list[np.ndarray]]:
        """(B, C, 120, 120) float32 images of ``rows`` and their maps (when ``return_map``): the
        bands of one native size of all rows upsampled together, written in place."""
        image = np.zeros((len(rows), len(self.band_names), SIDE, SIDE), np.float32)
        groups: dict[tuple, tuple[list, list, list]] = {}
        maps = []
        with self._source() as arrays:
            for b, i in enumerate(rows):
                values = arrays(i)
                for c, band in enumerate(self.band_names):
                    if band in S1_BANDS:
                        if self.s1_names[i] is not None:
                            image[b, c] = values[band]
                    elif values[band].shape[-1] == SIDE:
                        image[b, c] = values[band]
                    else:
                        group = groups.setdefault(values[band].shape, ([], [], []))
                        for part, v in zip(group, (values[band], b, c), strict=True):
                            part.append(v)
                if self.return_map:
                    maps.append(values[REFERENCE_MAP].astype(np.int64))
            for native, bs, cs in groups.values():
                slots = (np.asarray(bs), np.asarray(cs))
                to_side_into(np.stack(native), image, slots, self.resampling, 0, parallel=self._parallel())
        if normalize and self.mean is not None:
            image -= self.mean[:, None, None]
            image /= self.std[:, None, None]
        return image, maps

    def raw_image(self, i: int) -> np.ndarray:
        """The un-normalised (C, 120, 120) float32 image of row ``i`` (numpy)."""
        return self._batch([i], normalize=False)[0][0]

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        """The samples of a batch (what a ``DataLoader`` fetches): read in one pass, upsampled together."""
        import torch

        n = len(self)
        for i in indices:
            if not -n <= i < n:
                raise IndexError(f"index {i} is out of range for {n} samples")
        rows = [i % n for i in indices]
        image, maps = self._batch(rows, normalize=True)
        images, labels = torch.from_numpy(image), torch.from_numpy(self._labels[rows])
        samples = []
        for b, i in enumerate(rows):
            out: dict[str, Any] = {"image": images[b], "labels": labels[b]}
            if self.return_map:
                out["reference_map"] = torch.from_numpy(maps[b])
            if self.return_id:
                out["patch_id"] = self.patch_ids[i]
            samples.append(out)
        return samples

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.__getitems__([i])[0]
