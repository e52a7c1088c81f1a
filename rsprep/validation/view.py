"""The dataset under validation: its tables, which outputs it has, and how it was built.

Opened once; every check reads from here (tables are read once, readers opened lazily).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rsprep.core.nomenclature import BEN19, BEN43, Nomenclature
from rsprep.core.nomenclature import get as get_nomenclature
from rsprep.errors import InputNotFoundError
from rsprep.formats.geotiff import S2_DIR, is_layout
from rsprep.store import dataset as ds

DEFAULT_MAX_UNLABELED = 0.25


@dataclass
class TableFile:
    """One parquet file as read (``table`` is None when it could not be read; ``error`` says why)."""

    path: Path
    table: pa.Table | None
    error: str | None = None


@dataclass
class DatasetView:
    root: Path
    kind: str  # rsprep | official
    metadata: TableFile | None
    flagged: TableFile | None
    sidecar: TableFile | None
    build: dict[str, Any] = field(default_factory=dict)

    # ---- outputs -------------------------------------------------------------------------
    @property
    def lmdb(self) -> Path | None:
        for p in (self.root / "lmdb", self.root):
            if (p / "data.mdb").is_file():
                return p
        return None

    @property
    def zarr(self) -> Path | None:
        from rsprep.formats.zarr import STORE_NAME

        p = self.root / "zarr" / STORE_NAME
        return p if (p / "zarr.json").is_file() else None

    @property
    def tiff(self) -> bool:
        return is_layout(self.root)

    @property
    def outputs(self) -> list[str]:
        return [
            name for name, there in (("lmdb", self.lmdb), ("zarr", self.zarr), ("tiff", self.tiff)) if there
        ]

    # ---- tables --------------------------------------------------------------------------
    @cached_property
    def table(self) -> pa.Table:
        """Both metadata files in the official schema, sorted by patch_id (unreadable files left out)."""
        parts = []
        for tf in (self.metadata, self.flagged):
            if tf is not None and tf.table is not None:
                try:
                    parts.append(ds.conform_metadata(tf.table, tf.path))
                except ds.DatasetError:
                    continue  # the schema check reports it
        if not parts:
            return ds.METADATA_SCHEMA.empty_table()
        return pa.concat_tables(parts).sort_by("patch_id")

    @cached_property
    def patch_ids(self) -> list[str]:
        return self.table.column("patch_id").to_pylist()

    @cached_property
    def s1_names(self) -> list[str | None]:
        return self.table.column("s1_name").to_pylist()

    # ---- how it was built ----------------------------------------------------------------
    @cached_property
    def work(self) -> Path | None:
        w = ds.work_store(self.root) if self.build else None
        return w if w is not None and w.is_dir() else None

    @cached_property
    def label_rule(self) -> tuple[Nomenclature, float, str]:
        """(nomenclature, max unlabeled fraction, where that came from)."""
        rec = self._reference_parameters()
        if rec is not None:
            nom = get_nomenclature(str(rec.get("nomenclature", "ben19")))
            return (
                nom,
                float(rec.get("max_unlabeled", DEFAULT_MAX_UNLABELED)),
                "the work store's reference stage",
            )
        import pyarrow.compute as pc

        names = set(pc.unique(pc.list_flatten(self.table.column("labels"))).to_pylist())
        nom = BEN43 if names and not names <= set(BEN19.alphabetical) else BEN19
        return nom, DEFAULT_MAX_UNLABELED, "the reBEN rule (no work store recorded)"

    def _reference_parameters(self) -> dict[str, Any] | None:
        if self.work is None:
            return None
        from rsprep.store.workstore import find_stores

        try:
            stores = find_stores(self.work)
        except (OSError, ValueError):
            return None
        for s in stores:
            rec = s.stage("reference")
            if rec is not None:
                return rec.get("parameters", {})
        return None

    def noise_variants(self) -> list[Path]:
        folder = self.root / "noise"
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.glob("*.parquet") if not p.stem.endswith("_flips"))

    def sample(self, n: int | None, seed: int) -> np.ndarray:
        """Rows of ``self.table`` for value checks: all (``n`` None) or ``n`` drawn with ``seed``, sorted."""
        rows = len(self.patch_ids)
        if n is None or n >= rows:
            return np.arange(rows)
        return np.sort(np.random.default_rng(seed).choice(rows, size=n, replace=False))


def open_view(root: str | Path) -> DatasetView:
    """Open a dataset folder built by rsprep (``build.json``) or an official reBEN folder.

    Raises:
        InputNotFoundError: the folder does not exist, or holds neither metadata tables nor a GeoTIFF layout
            nor an LMDB.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputNotFoundError(f"dataset folder {root} does not exist")
    build = _read_build(root)
    view = DatasetView(
        root,
        "rsprep" if build.get("format") == "rsprep-dataset" else "official",
        _read(root / ds.METADATA),
        _read(root / ds.FLAGGED),
        _read(root / ds.SIDECAR),
        build,
    )
    if view.metadata is None and not view.outputs:
        raise InputNotFoundError(
            f"{root} holds no {ds.METADATA}, no {S2_DIR}/ and no LMDB: it is not a reBEN dataset; "
            "pass a folder built by `rsprep metadata`/`rsprep build` or an official reBEN download"
        )
    return view


def _read(path: Path) -> TableFile | None:
    if not path.is_file():
        return None
    try:
        return TableFile(path, pq.read_table(path))
    except (pa.ArrowInvalid, OSError) as exc:
        return TableFile(path, None, str(exc))


def _read_build(root: Path) -> dict[str, Any]:
    path = root / ds.BUILD
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {"_unreadable": str(path)}
