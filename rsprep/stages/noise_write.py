"""Writing one noise variant (docs/noise.md#outputs): its report, its files, all or nothing.

A variant's files are built in a hidden temporary folder ``.<name>.tmp-<pid>`` beside them and then
switched into place by renames only: the previous variant's files are moved aside first (its report
first), the new files are moved in with the report last. The report ``<name>.json`` is the marker of a
complete variant: files of a variant without it (left by an older rsprep on a full disk) never count
as an existing variant and are replaced by the next run. A failure while building leaves the previous
variant untouched; a failure while switching moves it back.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rsprep import __version__
from rsprep.core.noise import NoiseOptions, NoiseResult
from rsprep.core.nomenclature import Nomenclature
from rsprep.errors import WriteError
from rsprep.store import dataset as ds
from rsprep.store.workstore import REFERENCE_MAP, compressors, consolidate

#: The files of one variant ``<name>``: key -> suffix. The report is the completeness marker.
OUTPUTS = {
    "labels": ".parquet",
    "flips": "_flips.parquet",
    "report": ".json",
    "maps": "_reference_maps.zarr",
}
MARKER = "report"


def variant_paths(noise_dir: Path, name: str) -> dict[str, Path]:
    """The final paths of variant ``name`` in ``noise_dir``."""
    return {k: noise_dir / f"{name}{suffix}" for k, suffix in OUTPUTS.items()}


def is_complete(paths: dict[str, Path]) -> bool:
    """Whether a complete variant is there (its report exists); a half variant is not one."""
    return paths[MARKER].is_file()


@contextlib.contextmanager
def staging(noise_dir: Path, name: str) -> Iterator[Path]:
    """A fresh hidden folder in ``noise_dir`` to build the variant in; removed however the block ends
    (and ``noise_dir`` too, when this run created it and it is left empty)."""
    created = not noise_dir.exists()
    tmp = noise_dir / f".{name}.tmp-{os.getpid()}"
    try:
        noise_dir.mkdir(parents=True, exist_ok=True)
        _remove(tmp)
        tmp.mkdir()
    except OSError as exc:
        raise _error(noise_dir, exc) from exc
    try:
        yield tmp
    finally:
        _remove(tmp)
        if created:
            with contextlib.suppress(OSError):
                noise_dir.rmdir()  # only when empty: nothing was switched in


def checked(final: Path, write: Callable[[], object]) -> None:
    """Run ``write`` (of the temporary copy of ``final``); an I/O error becomes one naming ``final``."""
    try:
        write()
    except OSError as exc:
        raise _error(final, exc) from exc


def switch(tmp: Path, paths: dict[str, Path]) -> None:
    """Replace the variant at ``paths`` by the files built in ``tmp`` (named as their final paths)."""
    aside = tmp.with_name(tmp.name.replace(".tmp-", ".old-"))
    _remove(aside)
    moved: list[Path] = []  # previous files moved aside, the marker first
    placed: list[Path] = []  # new files moved in, the marker last
    order = [MARKER] + [k for k in paths if k != MARKER]
    try:
        aside.mkdir()
        for k in order:
            if paths[k].exists() or paths[k].is_symlink():
                os.replace(paths[k], aside / paths[k].name)
                moved.append(paths[k])
        for k in reversed(order):
            if (tmp / paths[k].name).exists():
                os.replace(tmp / paths[k].name, paths[k])
                placed.append(paths[k])
    except OSError as exc:
        for p in placed:
            _remove(p)
        for p in reversed(moved):  # the marker last: the previous variant is complete again
            os.replace(aside / p.name, p)
        with contextlib.suppress(OSError):
            aside.rmdir()
        raise _error(paths[MARKER], exc) from exc
    _remove(aside)


def write_parquet(table: pa.Table, path: Path) -> None:
    """A variant table: ZSTD, the official files' row groups, the Arrow schema stored."""
    pq.write_table(table, path, compression="zstd", row_group_size=ds.ROW_GROUP_SIZE)


def write_maps(dest: Path, maps, patch_ids: list[str], swaps, nomenclature: Nomenclature) -> None:
    """The noisy reference maps of the swapped patches as a Zarr v3 group at ``dest``."""
    import zarr

    shape = (len(patch_ids), *(maps.shape[1:] if maps is not None else (0, 0)))
    dest.parent.mkdir(parents=True, exist_ok=True)
    group = zarr.open_group(dest, mode="w", zarr_format=3)
    arr = group.create_array(
        REFERENCE_MAP,
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
    consolidate(dest)


def _file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _class_rows(result: NoiseResult, active: np.ndarray, n: int) -> list[dict[str, Any]]:
    per_class = []
    for st, on in zip(result.stats, active, strict=True):
        d = asdict(st)
        d["active"] = bool(on)
        d["remove_rate"] = st.removed / st.positives if st.positives else 0.0
        d["add_rate_of_positives"] = st.added / st.positives if st.positives else 0.0
        d["add_rate_of_negatives"] = st.added / st.negatives if st.negatives else 0.0
        d["flip_rate"] = (st.removed + st.added) / n if n else 0.0
        d["positives_noisy"] = st.positives - st.removed + st.added
        per_class.append(d)
    return per_class


def report(
    options: NoiseOptions,
    name: str,
    labels: Any,
    result: NoiseResult,
    flips: pa.Table,
    maps: dict[str, Any] | None,
    *,
    dataset: Path,
) -> dict[str, Any]:
    """The variant's JSON report; its paths relative to the ``dataset`` folder where they lie inside or
    beside it (:func:`rsprep.store.dataset.recorded_path`), else absolute."""
    n = len(labels.target_rows)
    opts = asdict(options)
    opts["matrix"] = ds.recorded_path(options.matrix, dataset) if options.matrix else None
    if maps is not None:
        maps = {**maps, "path": ds.recorded_path(maps["path"], dataset)}
    return {
        "name": name,
        "rsprep_version": __version__,
        "configuration": opts,
        "seed": options.seed,
        "input": {
            "path": ds.recorded_path(labels.source, dataset),
            "sha256": _file_hash(Path(labels.source)),
            "rows": labels.table.num_rows,
        },
        "target_rows": n,
        "classes": _class_rows(result, labels.active, n),
        "totals": {
            "removed": int(sum(s.removed for s in result.stats)),
            "added": int(sum(s.added for s in result.stats)),
            "patches_changed": len(set(flips.column("patch_id").to_pylist())),
            "swaps": len(result.swaps),
        },
        "noisy_maps": maps,
    }


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _error(path: Path, exc: OSError) -> WriteError:
    return WriteError(
        exc.errno,
        f"writing {path} failed ({exc.strerror or exc}); no half variant is left and the previous one, "
        "if any, is untouched: free disk space (or raise the file-size limit) and run the command again",
    )
