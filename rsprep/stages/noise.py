"""The noise stage (docs/noise.md): one label-noise variant of a dataset's labels, clean ones unchanged.

Reads ``metadata.parquet`` of a dataset folder (or any parquet file with patch_id, labels and split),
applies one of the models of :mod:`rsprep.core.noise` to the rows of the target splits and writes, in
``noise/`` beside the input:

- ``<name>.parquet``: patch_id, split, labels (clean) and labels_noisy of every row;
- ``<name>_flips.parquet``: one row per changed (patch, class) entry;
- ``<name>.json``: the configuration, the input's SHA-256 and the per-class statistics;
- ``<name>_reference_maps.zarr`` (``swap`` only): the noisy reference maps of the swapped patches.

``swap`` needs the reference maps: the dataset's ``build.json`` names its work store; each swapped
patch's map is read from its store, one present class's pixels are relabelled to an absent class, and
the noisy labels are derived from the noisy map with the same label rule (and threshold) as the clean ones.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rsprep.core.grid import parse_patch_ids
from rsprep.core.labels import label_patches
from rsprep.core.noise import (
    Matrix,
    NoiseOptions,
    NoiseResult,
    active_classes,
    check_cap,
    choose_swaps,
    class_stats,
    classwise,
    detect_nomenclature,
    label_matrix,
    labels_from_matrix,
    sample_mode,
    swap_map,
)
from rsprep.core.nomenclature import Nomenclature
from rsprep.errors import InvalidParameterError, OutputExistsError
from rsprep.stages import noise_write as nw
from rsprep.store import dataset as ds
from rsprep.store.atomic import LOCK_WAIT
from rsprep.store.lock import locked
from rsprep.store.workstore import REFERENCE_ARRAYS, REFERENCE_MAP, find_stores


@dataclass
class _Labels:
    """The input rows sorted by patch_id, as bool matrices, and which of them the noise acts on."""

    table: pa.Table
    source: Path
    nomenclature: Nomenclature
    classes: list[str]
    active: np.ndarray  # bool (C,)
    clean_all: np.ndarray  # bool (n, C)
    target_rows: np.ndarray  # int64, rows of the target splits
    matrix: Matrix | None

    @property
    def clean(self) -> np.ndarray:
        return self.clean_all[self.target_rows]


def make_noise(
    target: Path,
    options: NoiseOptions,
    *,
    name: str | None = None,
    out_dir: Path | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write one noise variant of the labels of ``target``, all or nothing; returns the JSON report
    (also written). The report holds no wall-clock time: the same input and seed give the same bytes."""
    options.validate()
    target = Path(target)
    with locked(target, "noise input", wait=LOCK_WAIT):  # no split rewrites the labels meanwhile
        table, source, noise_dir = _input(target)
        folder = Path(out_dir) if out_dir else noise_dir
        with locked(folder, "noise folder", wait=LOCK_WAIT):  # sweeps dead runs' temporaries
            return _make(table, source, target, folder, options, name, overwrite)


def _make(
    table: pa.Table,
    source: Path,
    target: Path,
    folder: Path,
    options: NoiseOptions,
    name: str | None,
    overwrite: bool,
) -> dict[str, Any]:
    name = name or options.default_name()
    paths = _output_paths(folder, name, overwrite)
    labels = _prepare(table, source, options)
    with nw.staging(paths["labels"].parent, name) as tmp:
        temp = {k: tmp / p.name for k, p in paths.items()}
        result, maps_written = _apply(labels, options, Path(target), temp["maps"], paths["maps"])
        noisy_all = labels.clean_all.copy()
        noisy_all[labels.target_rows] = result.noisy
        out = pa.table(
            {
                "patch_id": labels.table.column("patch_id"),
                "split": labels.table.column("split"),
                "labels": labels_from_matrix(labels.clean_all, labels.classes),
                "labels_noisy": labels_from_matrix(noisy_all, labels.classes),
            }
        )
        flips = _flip_log(labels.table.column("patch_id"), labels.clean_all, noisy_all, labels.classes)
        dataset = Path(target) if Path(target).is_dir() else Path(source).parent
        report = nw.report(options, name, labels, result, flips, maps_written, dataset=dataset)
        report["outputs"] = {
            k: ds.recorded_path(p, dataset) for k, p in paths.items() if k != "maps" or maps_written
        }
        for key, tab in (("labels", out), ("flips", flips)):
            nw.checked(paths[key], lambda t=tab, k=key: nw.write_parquet(t, temp[k]))
        text = json.dumps(report, indent=2, sort_keys=True) + "\n"
        nw.checked(paths["report"], lambda: temp["report"].write_text(text, encoding="utf-8"))
        nw.switch(tmp, paths)
    return report


def _input(target: Path) -> tuple[pa.Table, Path, Path]:
    """(table, the parquet read, the noise folder) for a dataset folder or a parquet file."""
    target = Path(target)
    if target.is_dir():
        path = target / ds.METADATA
        if not path.is_file():
            raise InvalidParameterError(f"{target} holds no {ds.METADATA}; build it with `rsprep metadata`")
        return ds.read_table(path, "metadata"), path, target / "noise"
    return ds.read_table(target, "noise input"), target, target.parent / "noise"


def _output_paths(noise_dir: Path, name: str, overwrite: bool) -> dict[str, Path]:
    """The files of variant ``name``; refused when a complete variant exists (unless ``overwrite``).

    Files of a variant without its report (a half variant) do not count: the run replaces them.
    """
    if not name or "/" in name or name.startswith("."):
        raise InvalidParameterError(f"--name {name!r} must be a plain file name")
    paths = nw.variant_paths(noise_dir, name)
    if nw.is_complete(paths) and not overwrite:
        raise OutputExistsError(
            f"noise variant {noise_dir / name} exists; pass --overwrite or give another --name"
        )
    return paths


def _prepare(table: pa.Table, source: Path, options: NoiseOptions) -> _Labels:
    """Check the columns, sort by patch_id, find the nomenclature, the target rows and the matrix."""
    for col in ("patch_id", "labels", "split"):
        if col not in table.column_names:
            raise InvalidParameterError(
                f"{source} has no {col} column; noise needs patch_id, labels and split"
            )
    table = table.take(pc.sort_indices(table.column("patch_id")))
    nom = detect_nomenclature(table.column("labels"), str(source))
    classes = list(nom.classes)
    active = active_classes(nom, options.classes)
    clean_all = label_matrix(table.column("labels"), classes)
    split = np.asarray(table.column("split").to_numpy(zero_copy_only=False), dtype=object)
    target_rows = np.flatnonzero(np.isin(split, np.array(options.splits, dtype=object)))
    matrix = read_matrix(options.matrix, classes) if options.mode == "matrix" else None
    labels = _Labels(table, source, nom, classes, active, clean_all, target_rows, matrix)
    check_cap(labels.clean, classes, active, options, matrix, str(source))
    return labels


def _apply(
    labels: _Labels, options: NoiseOptions, target: Path, maps_path: Path, maps_final: Path
) -> tuple[NoiseResult, dict[str, Any] | None]:
    """The noisy target rows, and (``swap`` only) where the noisy maps go (written to ``maps_path``,
    the temporary copy of ``maps_final``)."""
    clean = labels.clean
    if options.mode == "sample":
        return sample_mode(clean, labels.classes, labels.active, options), None
    if options.mode != "swap":
        return classwise(clean, labels.classes, labels.active, options, labels.matrix), None
    swaps = choose_swaps(clean, labels.active, options)
    ids = labels.table.column("patch_id").take(pa.array(labels.target_rows)).to_pylist()
    noisy, maps_written = apply_swaps(
        target, labels.source, ids, clean, swaps, labels.nomenclature, maps_path, final=maps_final
    )
    return NoiseResult(noisy, class_stats(clean, noisy, labels.classes), swaps), maps_written


def _flip_log(
    patch_id: pa.ChunkedArray, clean: np.ndarray, noisy: np.ndarray, classes: list[str]
) -> pa.Table:
    """One row (patch_id, class, action ``add``/``remove``) per changed entry, in row-major order."""
    rows, cols = np.nonzero(clean != noisy)
    action = np.where(noisy[rows, cols], "add", "remove").astype(object)
    return pa.table(
        {
            "patch_id": patch_id.take(pa.array(rows, pa.int64())),
            "class": pa.array(np.array(classes, dtype=object)[cols], pa.string()),
            "action": pa.array(action, pa.string()),
        }
    )


# --------------------------------------------------------------------------------------------
# The matrix file
# --------------------------------------------------------------------------------------------
def read_matrix(path: Path, classes: list[str]) -> Matrix:
    """Per-class (P(1→0), P(0→1)) from JSON ``{"class": [p10, p01]}`` / ``{"class": {"p10":…, "p01":…}}``
    or CSV with columns class, p10, p01. Classes not listed get (0, 0)."""
    path = Path(path)
    if not path.is_file():
        raise InvalidParameterError(f"noise matrix {path} does not exist")
    try:
        rows = _read_matrix_rows(path)
    except (json.JSONDecodeError, KeyError, IndexError, TypeError, pa.ArrowInvalid) as exc:
        raise InvalidParameterError(
            f"noise matrix {path}: expected JSON {{class: [p10, p01]}} "
            f"or CSV with columns class,p10,p01 ({exc})"
        ) from exc
    unknown = sorted(set(rows) - set(classes))
    if unknown:
        raise InvalidParameterError(
            f"noise matrix {path} names unknown class(es): {', '.join(map(repr, unknown))}"
        )
    for k, (p10, p01) in rows.items():
        for label, v in (("P(1→0)", p10), ("P(0→1)", p01)):
            if not isinstance(v, int | float) or not 0.0 <= v <= 1.0:
                raise InvalidParameterError(f"noise matrix {path}: {label} of {k!r} is {v!r}, outside [0, 1]")
    return {k: (float(a), float(b)) for k, (a, b) in rows.items()}


def _read_matrix_rows(path: Path) -> dict[str, tuple[Any, Any]]:
    if path.suffix.lower() == ".json":
        doc = json.loads(path.read_text())
        return {k: (v["p10"], v["p01"]) if isinstance(v, dict) else (v[0], v[1]) for k, v in doc.items()}
    import pyarrow.csv as pcsv

    t = pcsv.read_csv(path)
    return dict(
        zip(
            t.column("class").to_pylist(),
            zip(t.column("p10").to_pylist(), t.column("p01").to_pylist(), strict=True),
            strict=True,
        )
    )


# --------------------------------------------------------------------------------------------
# swap: the work store's reference maps in, noisy maps out
# --------------------------------------------------------------------------------------------
def _work_store(target: Path, source: Path) -> Path:
    folder = target if target.is_dir() else source.parent
    work = ds.work_store(folder)
    if work is None or not work.is_dir():
        raise InvalidParameterError(
            f"--mode swap needs the reference maps, but {folder / ds.BUILD} names no existing work store "
            f"({work or 'none'}); run swap on a dataset folder built by `rsprep metadata` "
            "whose work store is still present"
        )
    return work


def apply_swaps(
    target: Path,
    source: Path,
    ids: list[str],
    clean: np.ndarray,
    swaps: list[tuple[int, int, int]],
    nomenclature: Nomenclature,
    dest: Path,
    *,
    final: Path | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Noisy label matrix of the target rows, and where the noisy maps go: written to ``dest`` (a
    fresh path, e.g. in the variant's temporary folder), recorded and named in errors as ``final``."""
    final = final or dest
    noisy = clean.copy()
    work = _work_store(Path(target), Path(source))
    maps, max_unlabeled = _swapped_maps(work, ids, swaps, nomenclature)
    if maps is not None:
        derived = label_patches(maps, nomenclature, max_unlabeled)
        rows = np.array([r for r, _, _ in swaps])
        noisy[rows] = derived.present & derived.rule_passed[:, None]
    swapped = [ids[r] for r, _, _ in swaps]
    nw.checked(final, lambda: nw.write_maps(dest, maps, swapped, swaps, nomenclature))
    return noisy, {"path": str(final), "patches": len(swaps), "max_unlabeled": max_unlabeled}


def _swapped_maps(
    work: Path, ids: list[str], swaps: list[tuple[int, int, int]], nomenclature: Nomenclature
) -> tuple[np.ndarray | None, float | None]:
    """uint16 (len(swaps), h, w) noisy maps (None without swaps) and the stores' ``--max-unlabeled``."""
    stores = {s.name: s for s in find_stores(work)}
    names = parse_patch_ids([ids[r] for r, _, _ in swaps]) if swaps else None
    by_store: dict[str, list[int]] = defaultdict(list)
    for k in range(len(swaps)):
        by_store[names.prefix[k]].append(k)
    maps = None
    max_unlabeled = None
    for prefix, ks in sorted(by_store.items()):
        store = stores.get(prefix)
        if store is None:
            raise InvalidParameterError(
                f"the work store {work} has no store {prefix} for patch {ids[swaps[ks[0]][0]]}"
            )
        rec = store.require_stage("reference", "run `rsprep reference` again")
        mu = float(rec["parameters"]["max_unlabeled"])
        if max_unlabeled is not None and mu != max_unlabeled:
            raise InvalidParameterError(f"{work}: stores were labelled with different --max-unlabeled values")
        max_unlabeled = mu
        arr = store.zarr(REFERENCE_ARRAYS)[REFERENCE_MAP]
        if maps is None:
            maps = np.zeros((len(swaps), *arr.shape[1:]), dtype=np.uint16)
        n = store.grid.n
        index = np.array([names.y[k] * n + names.x[k] for k in ks])
        order = np.argsort(index)
        block = arr.get_orthogonal_selection((index[order],))
        for j, k in enumerate(np.asarray(ks)[order]):
            _, src, dst = swaps[k]
            maps[k] = swap_map(block[j], nomenclature, src, dst)
    return maps, max_unlabeled
