"""A readable summary of a Sentinel-2 product, as ``rsprep inspect`` prints it (callable from the library)."""

from __future__ import annotations

from rsprep.core.bands import SPECTRAL_BANDS
from rsprep.inputs.safe import S2Product
from rsprep.inputs.safe_manifest import Checked
from rsprep.inputs.safe_xml import iso


def format_product(product: S2Product, integrity: Checked | None = None) -> str:
    """A readable multi-line summary of ``product``, with the outcome of checking its files against
    ``manifest.safe`` when ``integrity`` is given (``rsprep.inputs.safe_manifest.verify_files``)."""
    p = product
    lines = [
        f"Product        {p.product_uri}",
        f"Path           {p.path}" + (f" [{p.safe_root}]" if p.safe_root else ""),
        f"Level          {p.level} ({p.product_format})",
        f"Patch prefix   {p.patch_prefix}",
        f"Tile           {p.tile_id}  {p.crs_name} (EPSG:{p.epsg}){'' if p.is_utm else '  NOT UTM'}",
        f"Datatake       {iso(p.datatake_time)}  orbit R{p.relative_orbit:03d}  {p.mission}",
        f"Sensing time   {iso(p.sensing_time) or '-'}",
        f"Baseline       {p.processing_baseline}",
        f"Quantification {p.quantification_value:g}",
    ]
    offs = sorted(set(p.add_offsets[b] for b in SPECTRAL_BANDS))
    if not p.offsets_in_metadata:
        lines.append("Add offset     0 (not in metadata)")
    elif len(offs) == 1:
        lines.append(f"Add offset     {offs[0]} (all bands)")
    else:
        lines.append("Add offset     " + ", ".join(f"{b}={p.add_offsets[b]}" for b in SPECTRAL_BANDS))
    lines.append("Special values " + ", ".join(f"{k}={v}" for k, v in sorted(p.special_values.items())))
    lines.append("Geocoding")
    for res, g in sorted(p.geocoding.items()):
        lines.append(f"  {res:>2} m  UL ({g.ulx:.0f}, {g.uly:.0f})  {g.ncols} × {g.nrows} px")
    verdict = "PASSED" if p.quality_passed else "FAILED (" + ", ".join(p.failed_quality_checks) + ")"
    lines.append(f"Quality        {verdict}")
    for k, v in p.quality_checks.items():
        lines.append(f"  {k:<22} {v}")
    lines.append(
        "Cover          "
        + f"cloud {_pct(p.cloud_cover_percent)}  snow/ice {_pct(p.snow_ice_percent)}  "
        + f"cloud shadow {_pct(p.cloud_shadow_percent)}  nodata {_pct(p.nodata_percent)}"
    )
    lines.append("Band files")
    corrupt = {x.split(": ", 1)[0] for x in integrity.problems} if integrity is not None else set()
    for b in p.bands:
        if b.ok:
            state = "CORRUPT" if b.path in corrupt else "ok"
        elif not b.listed:
            state = "NOT LISTED"
        elif not b.exists:
            state = "MISSING"
        elif b.error:
            state = "UNREADABLE"
        elif b.actual_shape is None:
            state = "not checked"
        else:
            state = f"SIZE MISMATCH ({b.actual_shape[1]} × {b.actual_shape[0]} px)"
        size = f"{b.declared_shape[1]} × {b.declared_shape[0]}" if b.declared_shape else "?"
        lines.append(f"  {b.band:<4} {b.resolution:>2} m  {size:>13}  {state:<12} {b.path}")
    problems = p.problems
    if integrity is not None:
        bad = len(integrity.problems)
        verdict = f"{bad} problem(s)" if bad else "ok"
        lines.append(f"Integrity      {verdict}: {integrity.files} file(s) checked against manifest.safe")
        problems = [*problems, *integrity.problems]
    if problems:
        lines.append(f"Problems       {len(problems)}")
        lines.extend(f"  - {x}" for x in problems)
    else:
        lines.append("Problems       none")
    return "\n".join(lines)


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f} %"
