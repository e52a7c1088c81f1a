"""``s2v1_name``: the BigEarthNet v1.0 name of the same patch (same tile, day and upper-left corner).

v1 names cannot be derived from v2 names: v1 wrote the datatake time without its leading zero and
sometimes one second off (``S2A_MSIL2A_20171101T94132_0_0`` is v2's ``..._20171101T094131_..._T35VNJ_00_00``),
and it has no tile in the name. So the match needs v1's own metadata:

- a v1 ``BigEarthNet-S2`` folder (or the v1 root; S1 patches are skipped): every
  ``<name>/<name>_labels_metadata.json`` gives ``tile_source``
  (the L1C product, hence the tile), ``acquisition_date`` and ``coordinates`` (ulx, uly); or
- a table (parquet or CSV) with the columns ``patch_id`` and ``s2v1_name`` (e.g. the official mapping).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from rsprep.errors import InputNotFoundError, RsprepError

_TILE = re.compile(r"_T(\d{2}[A-Z]{3})_")
_SUFFIX = "_labels_metadata.json"
_V1_S2 = re.compile(r"^S2[AB]_MSIL2A_")


class V1Error(RsprepError, ValueError):
    """The v1 source cannot be read."""


class V1Index:
    """Look-up of v1 names by (tile, UTC day, ulx, uly) or directly by v2 patch_id."""

    def __init__(self, by_place: dict[tuple[str, str, int, int], str], by_id: dict[str, str], source: Path):
        self.by_place = by_place
        self.by_id = by_id
        self.source = source

    def __len__(self) -> int:
        return len(self.by_place) + len(self.by_id)

    def lookup(
        self, patch_id: np.ndarray, tile: np.ndarray, day: np.ndarray, left: np.ndarray, top: np.ndarray
    ) -> np.ndarray:
        out = np.empty(len(patch_id), dtype=object)
        for i in range(len(patch_id)):
            name = self.by_id.get(patch_id[i])
            if name is None:
                name = self.by_place.get((tile[i], day[i], round(left[i]), round(top[i])))
            out[i] = name
        return out


def read_v1(path: Path) -> V1Index:
    """Index a v1 patch folder or a patch_id → s2v1_name table."""
    path = Path(path)
    if not path.exists():
        raise InputNotFoundError(f"v1 source {path} does not exist")
    if path.is_dir():
        return _from_folder(path)
    return _from_table(path)


def _from_folder(root: Path) -> V1Index:
    by_place: dict[tuple[str, str, int, int], str] = {}
    for meta in sorted(root.rglob(f"*{_SUFFIX}")):
        if not _V1_S2.match(meta.name):  # BigEarthNet-S1 patches carry the same file name
            continue
        try:
            doc = json.loads(meta.read_text())
            coords = doc["coordinates"]
            tile_match = _TILE.search(doc["tile_source"])
            day = doc["acquisition_date"][:10].replace("-", "")
            key = ("T" + tile_match.group(1), day, int(coords["ulx"]), int(coords["uly"]))
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise V1Error(
                f"{meta} is not a BigEarthNet v1 labels_metadata.json with tile_source, acquisition_date "
                f"and coordinates ({exc.__class__.__name__}: {exc})"
            ) from exc
        by_place[key] = meta.name[: -len(_SUFFIX)]
    if not by_place:
        raise V1Error(f"{root} holds no BigEarthNet v1 patch (*{_SUFFIX}); give the v1 BigEarthNet-S2 folder")
    return V1Index(by_place, {}, root)


def _from_table(path: Path) -> V1Index:
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    try:
        if path.suffix.lower() == ".parquet":
            table = pq.read_table(path)
        else:
            table = pcsv.read_csv(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid for both formats
        raise V1Error(f"{path} is neither a parquet nor a CSV table ({exc})") from exc
    missing = [c for c in ("patch_id", "s2v1_name") if c not in table.column_names]
    if missing:
        raise V1Error(
            f"{path} lacks the column(s) {', '.join(missing)}; a v1 mapping needs patch_id and s2v1_name"
        )
    ids = table.column("patch_id").to_pylist()
    names = table.column("s2v1_name").to_pylist()
    return V1Index({}, {i: n for i, n in zip(ids, names, strict=True) if n}, path)
