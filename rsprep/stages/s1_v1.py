"""``rsprep s1 --s1-v1``: the S1 partner of every valid patch from BigEarthNet v1.0 (docs/reben.md).

The official reBEN took its S1 patches from BigEarthNet v1.0 instead of pairing scenes: each patch
gets the v1 S1 patch that the v1 alignment names (patch_id → s1_name), used as it is after checking
that it lies on the S2 patch's 10 m grid (:mod:`rsprep.inputs.s1_v1`). The outputs are those of the
scene-pairing stage (:mod:`rsprep.stages.s1`): ``s1.zarr`` (VV, VH) and ``s1.parquet``, recorded in
the manifest as the ``s1`` stage with ``source: v1``, so every later stage reads them alike.

Per valid patch: ``paired`` (its v1 patch is read), ``no BigEarthNet v1.0 S1 patch`` (the alignment
names none: s1_name null, left out of the dataset unless ``keep_unpaired``), or, for a named v1 patch
that is missing or unreadable in the folder, a :class:`BadS1Error` that fails the store, unless
``skip_bad`` (``--skip-bad-s1``) leaves the patch unpaired and records it. A v1 patch on another
grid is always an error (:class:`~rsprep.inputs.s1_v1.S1GridError`): it means a wrong mapping or
folder, not a damaged file.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from rsprep.errors import InvalidParameterError
from rsprep.inputs.s1 import FIX, BadS1Error
from rsprep.inputs.s1_v1 import Georef, check_folder, patch_files, read_v1_patch, s1_names
from rsprep.stages.runner import DONE, SKIPPED, StageResult, check_workers, execute, store_tasks
from rsprep.stages.s1_pair import INVALID_S2, PAIRED, Pairing
from rsprep.stages.s1_write import result as _result
from rsprep.stages.s1_write import write_arrays, write_table
from rsprep.store.atomic import building, digest, fingerprint_files
from rsprep.store.workstore import (
    PATCH_TABLE,
    S1_ARRAYS,
    S1_TABLE,
    TileStore,
    find_stores,
    stage_record,
)

STAGE = "s1"
SOURCE = "BigEarthNet-S1-v1.0"
NO_V1 = "no BigEarthNet v1.0 S1 patch"
MISSING = "BigEarthNet v1.0 S1 patch missing or unreadable (--skip-bad-s1)"
V1_POLARISATIONS = ("VV", "VH")
_TIME = re.compile(r"_(\d{8}T\d{6})_")


@dataclass(frozen=True)
class S1V1Options:
    """Which polarisations are copied, and whether a missing v1 patch fails the store."""

    polarisations: tuple[str, ...] = V1_POLARISATIONS
    skip_bad: bool = False  # leave missing / unreadable v1 patches unpaired (recorded) instead of failing

    def __post_init__(self) -> None:
        object.__setattr__(self, "polarisations", tuple(p.upper() for p in self.polarisations))

    def validate(self) -> None:
        """Raises:
        InvalidParameterError: no polarisation, or one that v1 does not have (only VV and VH).
        """
        bad = [p for p in self.polarisations if p not in V1_POLARISATIONS]
        if bad or not self.polarisations:
            raise InvalidParameterError(
                f"polarisation(s) {bad or list(self.polarisations)}: BigEarthNet v1.0 S1 patches hold "
                f"{' and '.join(V1_POLARISATIONS)} only"
            )

    def parameters(self) -> dict:
        """What decides whether a stored result is current (as recorded in the manifest)."""
        return {"source": "v1", "polarisations": list(self.polarisations)}

    @classmethod
    def of(cls, options) -> S1V1Options:
        """The v1 options of the s1 stage's options (:class:`rsprep.stages.s1.S1Options`): polarisations
        and ``skip_bad``; the scene-only ones do not apply."""
        return cls(tuple(options.polarisations), bool(options.skip_bad))


@dataclass(frozen=True)
class V1Source:
    """The S1 source of a build whose recipe says ``s1.source: v1``: the v1 folder, checked once."""

    root: Path

    @classmethod
    def open(cls, v1_dir: str | Path) -> V1Source:
        """Raises:
        InputNotFoundError: the folder does not exist or holds no v1 S1 patch.
        """
        return cls(check_folder(v1_dir))


@dataclass
class V1Inputs:
    """What one store's v1 S1 stage reads: the partner of each valid patch and the files found."""

    names: list[str | None]  # per grid patch: the v1 S1 partner (None: invalid patch or none)
    files: list[Path]  # the existing files of the named patches
    digest: str  # the stage's input digest (patch stage, folder, mapping, files)


def stage_inputs(
    store: TileStore, v1_dir: Path, options: S1V1Options, names: Mapping[str, str | None] | None = None
) -> V1Inputs:
    """The partners and input digest of ``store`` (the build's plan asks this without writing)."""
    patch_rec = store.require_stage("patch", "run `rsprep patch` first")
    table = store.table(PATCH_TABLE)
    ids = table.column("patch_id").to_pylist()
    valid = np.asarray(table["valid"].to_numpy(zero_copy_only=False), dtype=bool)
    found = s1_names([p for p, v in zip(ids, valid, strict=True) if v], names)
    partner = [found.get(p) if v else None for p, v in zip(ids, valid, strict=True)]
    files = [f for n in partner if n for f in patch_files(v1_dir, n, options.polarisations).values()]
    existing = [f for f in files if f.is_file()]
    fp = fingerprint_files(existing)
    mapping = digest([[p, n] for p, n in zip(ids, partner, strict=True) if n])
    key = [patch_rec["inputs_digest"], patch_rec["parameters"], str(v1_dir.resolve()), mapping, fp["digest"]]
    return V1Inputs(partner, existing, digest(key))


def s1_v1_store(
    store: TileStore,
    v1_dir: str | Path,
    options: S1V1Options | None = None,
    *,
    names: Mapping[str, str | None] | None = None,
    force: bool = False,
) -> StageResult:
    """Give every valid patch of ``store`` its v1 S1 patch; write ``s1.zarr`` and ``s1.parquet``.

    ``names``: patch_id → s1_name; by default BigEarthNet v1.0's tables (:func:`s1_names`).

    Raises:
        WorkStoreError: the patch stage has not run.
        BadS1Error: a named v1 patch is missing or unreadable (unless ``skip_bad``); nothing is written.
        S1GridError: a v1 patch lies on another grid than its S2 patch; nothing is written.
    """
    t0 = time.perf_counter()
    opts = options or S1V1Options()
    opts.validate()
    root = Path(v1_dir)
    got = stage_inputs(store, root, opts, names)
    params = opts.parameters()
    rec = store.stage(STAGE) or {}
    if (
        not force
        and (opts.skip_bad or not rec.get("excluded"))
        and store.is_current(STAGE, params, got.digest)
        and (store.path / S1_TABLE).is_file()
    ):
        return _result(store, SKIPPED, rec.get("valid", 0), rec.get("paired", 0), t0, rec.get("excluded", []))
    table = store.table(PATCH_TABLE)
    valid = np.asarray(table["valid"].to_numpy(zero_copy_only=False), dtype=bool)
    pairing = _pair(store, root, got.names, valid, opts)
    m = int((pairing.array_index >= 0).sum())
    with (
        building(store.path / S1_ARRAYS) as tmp_arrays,
        building(store.path / S1_TABLE, folder=False) as tmp_table,
    ):
        write_arrays(
            tmp_arrays, pairing, opts.polarisations, store.grid, m, {"resampling": "none", "source": SOURCE}
        )
        write_table(tmp_table, table, pairing)
    store.record_stage(
        STAGE,
        stage_record(
            params,
            got.digest,
            outputs=[S1_ARRAYS, S1_TABLE],
            v1=str(root),
            excluded=pairing.excluded,
            paired=m,
            valid=int(valid.sum()),
            no_v1=sum(1 for s in pairing.status if s == NO_V1),
        ),
    )
    return _result(store, DONE, int(valid.sum()), m, t0, pairing.excluded)


def _pair(store: TileStore, root: Path, partner: list[str | None], valid, opts: S1V1Options) -> Pairing:
    """Read the v1 patch of every valid patch that has one; a bad one raises or (skip_bad) is excluded."""
    grid = store.grid
    sensing = datetime.fromisoformat(store.product["sensing_time"].replace("Z", "+00:00"))
    n = grid.count
    status = [INVALID_S2 if not v else NO_V1 for v in valid]
    s1_name: list[str | None] = [None] * n
    scene: list[str | None] = [None] * n
    delta: list[float | None] = [None] * n
    data: list[dict[str, np.ndarray]] = []
    index = np.full(n, -1, dtype=np.int32)
    excluded: list[str] = []
    for i, name in enumerate(partner):
        if name is None:
            continue
        x, y = grid.xy(i)
        what = f"S2 patch {grid.patch_id(x, y)} of store {store.name}"
        expected = Georef(f"EPSG:{grid.epsg}", grid.transform(x, y, 10), grid.pixels(10), grid.pixels(10))
        try:
            arrays = read_v1_patch(patch_files(root, name, opts.polarisations), expected, what)
        except BadS1Error as exc:
            if not opts.skip_bad:
                raise
            excluded.append(str(exc))
            status[i] = MISSING
            continue
        index[i] = len(data)
        data.append(arrays)
        status[i], s1_name[i], scene[i] = PAIRED, name, _scene(name)
        delta[i] = _delta_hours(name, sensing)
    p = grid.pixels(10)
    stacked = {
        pol: np.stack([d[pol] for d in data]) if data else np.zeros((0, p, p), np.float32)
        for pol in opts.polarisations
    }
    return Pairing(scene, s1_name, delta, status, stacked, index, excluded)


def _scene(s1_name: str) -> str:
    """The scene part of a v1 S1 name (``S1A_IW_GRDH_1SDV_20170613T165043`` of ``..._33UUP_87_48``)."""
    return "_".join(s1_name.split("_")[:-3])


def _delta_hours(s1_name: str, sensing: datetime) -> float | None:
    """Hours from the S2 sensing time to the S1 start written in ``s1_name`` (None: no time in it)."""
    m = _TIME.search(s1_name)
    if m is None:
        return None
    start = datetime.strptime(m.group(1), "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
    if sensing.tzinfo is None:
        sensing = sensing.replace(tzinfo=UTC)
    return round((start - sensing).total_seconds() / 3600.0, 4)


def s1_v1_work(
    work: str | Path,
    v1_dir: str | Path,
    options: S1V1Options | None = None,
    *,
    names: Mapping[str, str | None] | None = None,
    workers: int = 1,
    force: bool = False,
    on_result: Callable[[StageResult], None] | None = None,
) -> list[StageResult]:
    """Give every store of ``work`` its v1 S1 patches (in ``workers`` processes).

    The folder is checked and the names of every store's valid patches looked up once (one
    alignment for the whole work store) before any store is touched; a failing store never stops
    the others.
    """
    opts = options or S1V1Options()
    opts.validate()
    check_workers(workers)
    root = check_folder(v1_dir)
    stores = find_stores(work)
    ids = [p for s in stores for p in _valid_ids(s)]
    mapping = s1_names(ids, names)
    per_store = [{p: mapping.get(p) for p in _valid_ids(s)} for s in stores]
    tasks = [
        store_tasks(STAGE, _s1_v1_one, [s], root, opts, force, sub)[0]
        for s, sub in zip(stores, per_store, strict=True)
    ]
    return execute(tasks, workers=workers, on_result=on_result)


def _valid_ids(store: TileStore) -> list[str]:
    store.require_stage("patch", "run `rsprep patch` first")
    t = store.table(PATCH_TABLE)
    valid = t.column("valid").to_pylist()
    return [p for p, v in zip(t.column("patch_id").to_pylist(), valid, strict=True) if v]


def _s1_v1_one(path: str, root: Path, options: S1V1Options, force: bool, names: dict) -> StageResult:
    return s1_v1_store(TileStore.open(path), root, options, names=names, force=force)


__all__ = ["FIX", "MISSING", "NO_V1", "S1V1Options", "V1Source", "s1_v1_store", "s1_v1_work", "stage_inputs"]
