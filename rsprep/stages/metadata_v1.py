"""``rsprep metadata`` with v1 alignment (the ``reben`` recipe's default; docs/dataset.md#v1-alignment).

Every gathered patch is aligned with BigEarthNet v1.0 from its ``patch_id`` alone
(:func:`rsprep.inputs.v1_align.align_patch_ids`): ``s2v1_name``, ``s1_name`` (v1's S1 partner, whose
pixels the S1 patches must then be) and both flags come from v1. A patch without a v1 counterpart has
no S1 partner, so it stays out unless ``keep_unpaired`` (then with a null ``s1_name`` and its SCL
flags). The SCL flags and v1's country and season go to the sidecar for comparison.

The S1 pixels of the store must be v1's partners (the s1 stage with ``--s1-v1``): a patch that the s1
stage paired with another S1 patch is an error (its pixels would be stored under v1's name), and a
patch the s1 stage left without S1 pixels (e.g. ``--skip-bad-s1``) has no partner either.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rsprep.store.workstore import WorkStoreError

#: Examples named in a warning.
EXAMPLES = 3


@dataclass
class Aligned:
    table: pa.Table  # the patches that stay, s1_name replaced by v1's partner
    s2v1: pa.Array
    v1_snow: np.ndarray  # bool; False where a kept patch has no counterpart (see flags())
    v1_cloud: np.ndarray
    matched: np.ndarray  # bool per kept patch
    country: pa.Array  # v1_country
    season: pa.Array  # v1_season
    info: dict
    warnings: list[str] = field(default_factory=list)

    def flags(self, scl_snow: np.ndarray, scl_cloud: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """v1's flags where a counterpart exists, the SCL flags elsewhere."""
        return np.where(self.matched, self.v1_snow, scl_snow), np.where(
            self.matched, self.v1_cloud, scl_cloud
        )

    def sidecar_columns(self, scl_snow: np.ndarray, scl_cloud: np.ndarray) -> dict[str, pa.Array]:
        return {
            "scl_contains_seasonal_snow": pa.array(scl_snow),
            "scl_contains_cloud_or_shadow": pa.array(scl_cloud),
            "v1_country": self.country,
            "v1_season": self.season,
        }


def align_gathered(table: pa.Table, counts: dict, *, keep_unpaired: bool, tables_folder, work) -> Aligned:
    """Align the gathered ``table`` (gathered with every valid, labelled patch) and update ``counts``."""
    from rsprep.inputs.v1_align import align_patch_ids
    from rsprep.inputs.v1_tables import load_v1_tables

    tables = load_v1_tables(tables_folder)
    aligned = align_patch_ids(table.column("patch_id"), tables)
    matched = np.asarray(pc.is_valid(aligned.column("s2v1_name")).to_numpy(zero_copy_only=False), dtype=bool)
    _refuse_other_pairings(table, aligned, matched, work)
    has_pixels = np.asarray(pc.is_valid(table.column("s1_name")).to_numpy(zero_copy_only=False), dtype=bool)
    paired = matched & has_pixels
    keep = paired | keep_unpaired
    unmatched = int((~matched).sum())
    counts["no_v1_counterpart"] = unmatched
    counts["no_s1_partner"] = 0 if keep_unpaired else int((~paired).sum())
    counts["kept"] = int(keep.sum())
    if not keep.any():
        first = table.column("patch_id").slice(0, EXAMPLES).to_pylist()
        raise WorkStoreError(
            f"{work}: none of the {table.num_rows} valid, labelled patches has a BigEarthNet v1 counterpart "
            f"in {tables.source} (e.g. {first}); v1 alignment is for reBEN's products (docs/inputs.md): "
            "turn it off (--no-v1-alignment, or --set metadata.v1_alignment=false) for other products"
        )
    mask = pa.array(keep)
    warnings = []
    if (matched & ~has_pixels).any():
        warnings.append(
            f"{int((matched & ~has_pixels).sum())} patch(es) with a v1 counterpart have no S1 pixels in the "
            "work store (the s1 stage did not run or skipped them)"
            + ("; kept without an S1 partner" if keep_unpaired else "; left out")
        )
    kept = aligned.filter(mask)
    table = table.filter(mask)
    none = pa.nulls(int(keep.sum()), pa.string())
    s1_name = pc.if_else(pa.array(paired[keep]), kept.column("s1_name"), none)
    table = table.set_column(table.column_names.index("s1_name"), "s1_name", s1_name)
    info = {
        "alignment": True,
        "source": tables.source,
        "matched": int(matched[keep].sum()),
        "no_v1_counterpart": unmatched,
    }
    return Aligned(
        table=table,
        s2v1=kept.column("s2v1_name").combine_chunks(),
        v1_snow=_bools(kept.column("contains_seasonal_snow")),
        v1_cloud=_bools(kept.column("contains_cloud_or_shadow")),
        matched=matched[keep],
        country=kept.column("v1_country").combine_chunks(),
        season=kept.column("v1_season").combine_chunks(),
        info=info,
        warnings=warnings,
    )


def _refuse_other_pairings(table: pa.Table, aligned: pa.Table, matched: np.ndarray, work) -> None:
    """An error when the s1 stage paired patches with other S1 patches than v1's partners."""
    stage = table.column("s1_name").combine_chunks()
    v1 = aligned.column("s1_name").combine_chunks()
    differ = pc.fill_null(pc.not_equal(stage, v1), False).to_numpy(zero_copy_only=False) & matched
    if not differ.any():
        return
    rows = np.flatnonzero(differ)[:EXAMPLES]
    ids = table.column("patch_id")
    examples = "; ".join(f"{ids[i].as_py()}: {stage[i].as_py()} (v1: {v1[i].as_py()})" for i in rows.tolist())
    raise WorkStoreError(
        f"{work}: {int(differ.sum())} patch(es) hold S1 pixels of another S1 patch than their BigEarthNet v1 "
        f"partner, e.g. {examples}; with v1 alignment s1_name is v1's, so the S1 pixels must be v1's "
        "patches: run the s1 stage from them (rsprep s1 --s1-v1 DIR, or the recipe's s1.source: v1), "
        "or turn v1 alignment off (--no-v1-alignment, --set metadata.v1_alignment=false)"
    )


def _bools(column) -> np.ndarray:
    return np.asarray(pc.fill_null(column, False).to_numpy(zero_copy_only=False), dtype=bool)
