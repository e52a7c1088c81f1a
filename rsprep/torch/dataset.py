"""``BENDataset``: a torch ``Dataset`` over a dataset's LMDB, Zarr store or GeoTIFF layout (docs/torch.md).

Rows are those of both metadata files, sorted by patch_id, filtered by split and by the snow / cloud
flags. Each sample is built from the numpy arrays of :mod:`rsprep.formats.readers`: the S2 bands
upsampled to 120 × 120 with :func:`rsprep.core.kernels.to_side` (as the stack stage does), stacked in
``band_order``, then VV and VH (zeros for patches without an S1 partner), normalised with the
``loader`` figures of ``stats.json``. torch is imported in the constructor only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rsprep.core import kernels
from rsprep.core.bands import SPECTRAL_BANDS
from rsprep.core.nomenclature import BEN19
from rsprep.core.values import S1_BANDS
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


def _one_thread_in_worker(torch) -> None:
    """In a DataLoader worker, run the numba kernels on one thread, as torch does its own: with
    several workers, each worker's OpenMP threads would compete for the same cores."""
    if torch.utils.data.get_worker_info() is not None:
        import numba

        if numba.get_num_threads() != 1:
            numba.set_num_threads(1)


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

    def _arrays(self, i: int) -> dict[str, np.ndarray]:
        pid, s1_name = self.patch_ids[i], self.s1_names[i] if self._s1 else None
        if isinstance(self._reader, ZarrReader):
            return self._reader.patch(pid, s1=self._s1 and s1_name is not None, reference_map=self.return_map)
        return self._reader.patch(pid, s1_name, reference_map=self.return_map)

    def _image(self, arrays: dict[str, np.ndarray], i: int) -> np.ndarray:
        has_s1 = self.s1_names[i] is not None
        image = np.zeros((len(self.band_names), SIDE, SIDE), np.float32)
        by_size: dict[tuple, list[int]] = {}
        for c, band in enumerate(self.band_names):
            if band in S1_BANDS:
                if has_s1:
                    image[c] = arrays[band]
            else:
                by_size.setdefault(arrays[band].shape, []).append(c)
        # the bands of one native size go through to_side together (each band is one "patch" to it)
        for channels in by_size.values():
            native = np.stack([arrays[self.band_names[c]] for c in channels])
            image[channels] = kernels.to_side(native, SIDE, self.resampling, nodata=0)
        return image

    def raw_image(self, i: int) -> np.ndarray:
        """The un-normalised (C, 120, 120) float32 image of row ``i`` (numpy)."""
        return self._image(self._arrays(i), i)

    def __getitem__(self, i: int) -> dict[str, Any]:
        import torch

        _one_thread_in_worker(torch)
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} is out of range for {len(self)} samples")
        i %= len(self)
        arrays = self._arrays(i)
        image = self._image(arrays, i)
        if self.mean is not None:
            image = (image - self.mean[:, None, None]) / self.std[:, None, None]
        out: dict[str, Any] = {
            "image": torch.from_numpy(image),
            "labels": torch.from_numpy(self._labels[i].copy()),
        }
        if self.return_map:
            out["reference_map"] = torch.from_numpy(arrays["reference_map"].astype(np.int64))
        if self.return_id:
            out["patch_id"] = self.patch_ids[i]
        return out
