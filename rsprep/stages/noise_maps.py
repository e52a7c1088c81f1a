"""Reference-map-consistent ``swap`` noise: noisy maps from the work store's reference maps.

The dataset's ``build.json`` names its work store; each swapped patch's map is read from its store,
one present class's pixels are relabelled to an absent class, and the noisy labels are derived from
the noisy map with the same label rule (and threshold) as the clean ones. The noisy maps of the
swapped patches are written as Zarr (``noise/<name>_reference_maps.zarr``).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from rsprep.core.grid import parse_patch_ids
from rsprep.core.labels import label_patches
from rsprep.core.nomenclature import Nomenclature
from rsprep.errors import InvalidParameterError
from rsprep.store import dataset as ds
from rsprep.store.atomic import building
from rsprep.store.workstore import REFERENCE_ARRAYS, REFERENCE_MAP, compressors, consolidate, find_stores


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
) -> tuple[np.ndarray, dict[str, Any]]:
    """Noisy label matrix of the target rows, and where the noisy maps went."""
    noisy = clean.copy()
    work = _work_store(Path(target), Path(source))
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
            maps[k] = _swap(block[j], nomenclature, src, dst)
    if maps is not None:
        derived = label_patches(maps, nomenclature, max_unlabeled)
        rows = np.array([r for r, _, _ in swaps])
        noisy[rows] = derived.present & derived.rule_passed[:, None]
    _write_maps(dest, maps, [ids[r] for r, _, _ in swaps], swaps, nomenclature)
    return noisy, {"path": str(dest), "patches": len(swaps), "max_unlabeled": max_unlabeled}


def _swap(reference_map: np.ndarray, nomenclature: Nomenclature, src: int, dst: int) -> np.ndarray:
    out = reference_map.copy()
    out[np.isin(out, np.asarray(nomenclature.codes[src], dtype=out.dtype))] = nomenclature.codes[dst][0]
    return out


def _write_maps(dest: Path, maps, patch_ids: list[str], swaps, nomenclature: Nomenclature) -> None:
    shape = (len(patch_ids), *(maps.shape[1:] if maps is not None else (0, 0)))
    dest.parent.mkdir(parents=True, exist_ok=True)
    with building(dest) as tmp:
        group = zarr.open_group(tmp, mode="w", zarr_format=3)
        arr = group.create_array(
            "reference_map",
            shape=shape,
            chunks=(1, *shape[1:]) if shape[1] else (1, 1, 1),
            dtype="uint16",
            compressors=compressors(),
            fill_value=0,
            dimension_names=("patch", "y", "x"),
            attributes={
                "patch_id": patch_ids,
                "swap_from": [nomenclature.classes[s] for _, s, _ in swaps],
                "swap_to": [nomenclature.classes[d] for _, _, d in swaps],
                "description": "noisy CLC reference maps of the swapped patches, row i = patch_id[i]",
            },
        )
        if maps is not None and len(maps):
            arr[:] = maps
        consolidate(tmp)
