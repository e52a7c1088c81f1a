"""The text of a dataset card: README.md with Hugging Face front matter (docs/card.md).

``render(facts, marker)`` is a pure function of the card facts (``facts.card_facts``): no clock, numbers
formatted one fixed way, so the same dataset gives the same bytes. The front matter is written by hand
(strings quoted as JSON, which YAML reads as double-quoted scalars): no YAML library at run time.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from rsprep.core.bands import BANDS_BY_NAME, SPECTRAL_BANDS
from rsprep.core.values import S1_BANDS, native_pixels
from rsprep.store import dataset as ds

TAGS = (
    "remote-sensing", "earth-observation", "satellite-imagery", "sentinel-2", "sentinel-1", "multi-label",
    "land-cover", "corine-land-cover", "bigearthnet", "reben",
)  # fmt: skip
FLAGGED_CONFIG = "snow_cloud_or_shadow"
CAPTIONS = {
    "class_frequency": "Patches per class and split",
    "footprints": "Patch footprints by split",
    "preview": "Sampled patches: RGB (B04, B03, B02) and reference map in the CLC colours",
    "cooccurrence": "Label co-occurrence",
    "fractions": "SCL cloud, shadow and snow fractions",
}
STAT_KEYS = ("mean", "std", "min", "max", "p1", "p99", "nodata")
NOMENCLATURES = {"ben19": "BEN-19", "ben43": "BEN-43 (BigEarthNet v1)"}


def render(facts: dict[str, Any], marker: str) -> str:
    """The whole README.md."""
    counted = (_splits, _classes, _countries, _seasons, _cardinality)
    if not (facts["tables"].get("metadata") or facts["tables"].get("flagged")):
        counted = (_no_tables,)
    rest = (_label_rule, _bands, _outputs, _stats, _figures, _provenance, _loading, _licence)
    blocks = [front_matter(facts), marker, f"# {facts['pretty_name']}", _summary(facts)]
    blocks += [section(facts) for section in (*counted, *rest)]
    return "\n\n".join(blocks) + "\n"


def front_matter(facts: dict[str, Any]) -> str:
    """The YAML block Hugging Face reads: licence, name, task, tags, size and the parquet configs."""
    q = json.dumps
    lines = ["---", f"license: {q(facts['licence']['id'])}", f"pretty_name: {q(facts['pretty_name'])}"]
    lines += ["task_categories:", f"- {q('image-classification')}"]
    lines += ["task_ids:", f"- {q('multi-label-image-classification')}", "tags:"]
    lines += [f"- {q(t)}" for t in TAGS]
    lines += ["size_categories:", f"- {q(facts['size_category'])}"]
    tables = facts["tables"]
    configs = [
        (name, tables[key]["file"])
        for name, key in (("default", "metadata"), (FLAGGED_CONFIG, "flagged"))
        if key in tables
    ]
    if configs:
        lines.append("configs:")
    for name, file in configs:
        lines += [f"- config_name: {q(name)}", f"  data_files: {q(file)}"]
    return "\n".join([*lines, "---"])


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(out + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def n(value: int) -> str:
    return f"{int(value):,}"


def share(part: int, total: int) -> str:
    return f"{100 * part / total:.1f} %" if total else "–"


def num(value: Any) -> str:
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.4f}"
    return str(int(value)) if isinstance(value, int | float) else str(value)


def floats(values: Sequence[float | None]) -> str:
    """A Python list literal; ``None`` where a band had no valid pixel (e.g. S1 of a dataset without S1)."""
    return "[" + ", ".join("None" if v is None else f"{v:.4f}" for v in values) + "]"


def code(value: Any) -> str:
    return "`" + json.dumps(value, sort_keys=True, ensure_ascii=False) + "`"


def _counted(title: str, counts: dict[str, int], total: int, what: str) -> str:
    rows = [(k, n(v), share(v, total)) for k, v in counts.items()]
    return f"## {title}\n\n" + table((what, "patches", "share"), rows)


def _summary(facts: dict[str, Any]) -> str:
    how = "built with rsprep" if facts["kind"] == "rsprep" else "an official reBEN folder (no build.json)"
    rows = [(t["file"], n(t["rows"])) for t in facts["tables"].values()]
    return (
        f"{n(facts['patches'])} Sentinel-2 patches with their Sentinel-1 partners, CORINE Land Cover "
        f"reference maps and multi-labels; {how}. Card written by rsprep {facts['rsprep_version']}.\n\n"
        + (table(("file", "rows"), rows) if rows else "The patches were counted in the pixel output.")
    )


def _no_tables(facts: dict[str, Any]) -> str:
    return (
        f"## Splits, classes, countries, seasons\n\nNot available: this folder holds no {ds.METADATA} "
        "(the labels, splits and countries of the patches)."
    )


def _splits(facts: dict[str, Any]) -> str:
    rows = [
        (s, n(v["metadata"]), n(v["flagged"]), n(v["total"]), share(v["total"], facts["patches"]))
        for s, v in facts["splits"].items()
    ]
    return "## Splits\n\n" + table(("split", ds.METADATA, ds.FLAGGED, "total", "share"), rows)


def _classes(facts: dict[str, Any]) -> str:
    c = facts["classes"]
    order, splits, total = c["native_order"], list(c["per_split"]), c["total"]
    rows = []
    for i, name in enumerate(c["native"]):
        codes = ", ".join(map(str, c["clc_codes"][i]))
        rows.append((i, name, codes, *(n(c["per_split"][s][i]) for s in splits), n(total[i])))
    at = {name: i for i, name in enumerate(c["native"])}
    alpha = [(i, name, at[name], n(total[at[name]])) for i, name in enumerate(c["alphabetical"])]
    unknown = f" {n(c['unknown_labels'])} label(s) name no class of the nomenclature." * bool(
        c["unknown_labels"]
    )
    return (
        f"## Classes\n\nPatches per class, in the {order} order (# = the index in a {order}-order "
        f"multi-hot vector, as TorchGeo's):\n\n{table(('#', 'class', 'CLC codes', *splits, 'total'), rows)}"
        "\n\nThe alphabetical order (the order of the `labels` lists in the metadata and of ConfigILM's "
        f"vectors):{unknown}\n\n{table(('#', 'class', f'{order} #', 'total'), alpha)}"
    )


def _countries(facts: dict[str, Any]) -> str:
    return _counted("Countries", facts["countries"], facts["patches"], "country")


def _seasons(facts: dict[str, Any]) -> str:
    s = facts["seasons"]
    return (
        _counted("Seasons", s["counts"], facts["patches"], "season") + "\n\nMeteorological season of "
        f"the sensing date: {n(s['from_sidecar'])} patches from {ds.SIDECAR}, {n(s['from_patch_id'])} "
        "from the date in the patch id."
    )


def _cardinality(facts: dict[str, Any]) -> str:
    c = facts["cardinality"]
    rows = [(k, n(v), share(v, facts["patches"])) for k, v in c["histogram"].items()]
    return f"## Labels per patch\n\nMean {c['mean']:.3f}, min {c['min']}, max {c['max']}.\n\n" + table(
        ("labels", "patches", "share"), rows
    )


def _label_rule(facts: dict[str, Any]) -> str:
    r = facts["label_rule"]
    return (
        f"## Label rule and nomenclature\n\n{NOMENCLATURES.get(r['nomenclature'], r['nomenclature'])}: "
        "the CLC level-3 codes of each class are listed with the classes; every other code, 0 (no CLC "
        "polygon) and 999 (CLC NODATA) are UNLABELED. A patch is labelled when less than "
        f"{r['max_unlabeled']:g} of its pixels are UNLABELED; its labels are the classes present in its "
        f"reference map. These parameters come from {r['source']}."
    )


def _bands(facts: dict[str, Any]) -> str:
    rows = [(b, x.resolution, f"{x.central_wavelength_nm:g}", native_pixels(b), "uint16 L2A DN, nodata 0")
            for b, x in ((b, BANDS_BY_NAME[b]) for b in SPECTRAL_BANDS)]  # fmt: skip
    rows += [(b, 10, "C band", 120, "float32 dB") for b in S1_BANDS]
    rows.append(("reference map", 10, "–", 120, "uint16 CLC code, 0 = no polygon"))
    header = ("band", "resolution (m)", "wavelength (nm)", "pixels per side (1200 m)", "values")
    return "## Bands\n\n" + table(header, rows)


def _outputs(facts: dict[str, Any]) -> str:
    out = facts["outputs"]
    blocks = ["## Band order of each output"]
    if not out:
        blocks.append("No pixel output in this folder yet (`rsprep convert lmdb|zarr|tiff`).")
    if "lmdb" in out:
        lm = out["lmdb"]
        what = {"s2": "S2 `patch_id`", "s1": "S1 `s1_name`", "map": "`<patch_id>_reference_map`"}
        rows = [(what[g], f"`{lm['example_keys'][g]}`", ", ".join(v)) for g, v in lm["values"].items()]
        blocks += [
            f"**LMDB** (`{lm['path']}/data.mdb`, {n(lm['entries'])} keys): each value is a "
            "safetensors dict; its arrays, as stored:",
            table(("key", "example", "arrays"), rows),
        ]
    if "zarr" in out:
        z, stacked = out["zarr"], out["zarr"]["s2_stacked"] or {}
        orders = {
            "labels": f"{z['class_order']} order: " + "; ".join(z["classes"] or []),
            "s2_stacked": f"{stacked.get('resampling')} to 10 m: " + ", ".join(stacked.get("bands") or []),
        }
        rows = [(f"`{a}`", v["shape"], v["dtype"], orders.get(a, "")) for a, v in z["arrays"].items()]
        blocks += [
            f"**Zarr** (`{z['path']}`): row i of every array is patch `patch_id[i]`; S2 bands (`s2/<band>`) "
            f"{', '.join(z['bands'] or [])}; S1 bands (`s1/<band>`) {', '.join(z['s1_bands'] or [])}.",
            table(("array", "shape", "dtype", "order"), rows),
        ]
    if "tiff" in out:
        names = {"s2": "S2 (`<key>` = patch_id)", "s1": "S1 (`<key>` = s1_name)", "map": "reference map"}
        files = [
            f"- {names[g]}, e.g. `{v['folder']}/`: " + ", ".join(f"`{f}`" for f in v["files"])
            for g, v in out["tiff"].items()
        ]
        blocks += ["**GeoTIFF layout** (the official reBEN layout, one file per band):", "\n".join(files)]
    return "\n\n".join(blocks)


def _stats(facts: dict[str, Any]) -> str:
    s = facts["stats"]
    if s is None:
        return "## Statistics\n\nNo `stats.json` yet: run `rsprep stats DATASET`, then `rsprep card` again."
    if "error" in s:
        return f"## Statistics\n\n{s['error']}"
    read, sample = "all", s.get("sample")
    if sample:
        read = f"a sample of {n(sample['patches'])} of {n(sample['of'])} (seed {sample['seed']})"
    bands = s.get("bands", {})
    order = [b for b in s.get("order", {}).get("native", list(bands)) if b in bands]
    rows = [(b, bands[b].get("resolution_m"), *(num(bands[b].get(k)) for k in STAT_KEYS)) for b in order]
    text = (
        f"## Statistics\n\nFrom `stats.json` (rsprep {s.get('rsprep_version')}): split {s.get('split')}, "
        f"{read} of its {n(s.get('patches', 0))} patches, read from {s.get('source')}. Nodata (S2 0, "
        "non-finite S1) is left out and counted; std is the population std.\n\n"
        + table(("band", "resolution (m)", *STAT_KEYS), rows)
    )
    loader = []
    for name, v in s.get("loader", {}).items():
        bands_of = s["order"]["native"] if name == "native" else s["order"]["s2"]
        loader.append(f"# {name}: {', '.join(bands_of)}\n{name}_mean = {floats(v['mean'])}")
        loader.append(f"{name}_std = {floats(v['std'])}")
    if any(x is None for v in s.get("loader", {}).values() for x in (*v["mean"], *v["std"])):
        loader.append("# None: the band has no valid pixel in the statistics' patches")
    if loader:
        text += "\n\nNormalisation constants for loaders:\n\n```python\n" + "\n".join(loader) + "\n```"
    return text


def _figures(facts: dict[str, Any]) -> str:
    f = facts["figures"]
    blocks = ["## Figures"]
    for name, caption in CAPTIONS.items():
        note = f["notes"].get(name)
        if name in f["files"]:
            blocks += [f"![{caption}]({f['files'][name]})"] + ([f"*{caption}: {note}.*"] if note else [])
        else:
            blocks.append(f"*{caption}: not drawn, {note}.*")
    return "\n\n".join(blocks)


def _provenance(facts: dict[str, Any]) -> str:
    p = facts["provenance"]
    if p is None:
        return "## Provenance\n\nNo `build.json`: how this folder was made is not recorded here."
    blocks = [
        f"## Provenance\n\nFrom `build.json` (rsprep {p['rsprep_version']}); wall-clock times are left out."
    ]
    for stage, rec in p["stages"].items():
        items = [f"- {key}: {code(value)}" for key, value in rec.items() if key != "rsprep_version"]
        blocks.append(f"### {stage}\n\n- rsprep {rec.get('rsprep_version')}\n" + "\n".join(items))
    if p.get("products") is not None:
        rows = [_product_row(pr) for pr in p["products"]]
        header = ("product", "quality check", "stages (inputs digest)")
        blocks.append(f"### Products of the work store `{p['work']}`\n\n" + table(header, rows))
    else:
        blocks.append("The work store named in build.json is not there: no per-product records.")
    return "\n\n".join(blocks)


def _product_row(pr: dict[str, Any]) -> tuple[str, str, str]:
    quality = "passed" if pr["quality_passed"] else "**failed** " + ", ".join(pr["failed_quality_checks"])
    digests = "; ".join(f"{st} `{(r['inputs_digest'] or '')[:12]}`" for st, r in pr["stages"].items())
    return f"`{pr['store']}`", quality, digests


LOAD_RSPREP = """With rsprep (no torch):

```python
import pyarrow.parquet as pq
from rsprep.formats.readers import LmdbReader, TiffReader, ZarrReader

root = "{name}"
meta = pq.read_table(f"{{root}}/metadata.parquet").to_pylist()
patch_id, s1_name = meta[0]["patch_id"], meta[0]["s1_name"]
{reads}
# {{"B01": uint16 (20, 20), ..., "VV": float32 (120, 120), "reference_map": uint16 (120, 120)}}
```"""
READS = {
    "lmdb": 'arrays = LmdbReader(f"{{root}}/{path}").patch(patch_id, s1_name)',
    "zarr": 'arrays = ZarrReader(f"{{root}}/{path}").patch(patch_id)  # and the multi-hot "labels"',
    "tiff": "arrays = TiffReader(root).patch(patch_id, s1_name)",
}
LOAD_TORCHGEO = """TorchGeo reads the GeoTIFF layout with `metadata.parquet` (splits `train`, `val`, `test`;
not the flagged patches):

```python
from torchgeo.datasets import BigEarthNetV2
ds = BigEarthNetV2(root="{name}", split="train", bands="all")
```"""
LOAD_CONFIGILM = """ConfigILM reads the LMDB with both metadata files (`ds.channel_order` names the
14 channels):

```python
from configilm.extra.DataSets.BENv2_DataSet import BENv2DataSet
files = {{
    "images_lmdb": "{name}/{lmdb}",
    "metadata_parquet": "{name}/metadata.parquet",
    "metadata_snow_cloud_parquet": "{name}/metadata_for_patches_with_snow_cloud_or_shadow.parquet",
}}
ds = BENv2DataSet(files, split="train", img_size=(14, 120, 120))
```"""
LICENCE = """## Licence and citation

Licence: `{id}`{url}; {source}. Contains modified Copernicus Sentinel data; the reference maps
come from CORINE Land Cover 2018 (© European Union, Copernicus Land Monitoring Service).

reBEN: K. N. Clasen, L. Hackel, T. Burgert, G. Sumbul, B. Demir, V. Markl, *reBEN: Refined BigEarthNet
Dataset for Remote Sensing Image Analysis*, IGARSS 2025 (arXiv:2407.03653)."""


def _loading(facts: dict[str, Any]) -> str:
    out, name = facts["outputs"], facts["dataset"]
    reads = [READS[k].format(path=out[k].get("path")) for k in READS if k in out] or ["# no pixel output yet"]
    rsprep = LOAD_RSPREP.format(name=name, reads="\n".join(reads)) if "metadata" in facts["tables"] else ""
    torchgeo = LOAD_TORCHGEO.format(name=name) if "tiff" in out else "TorchGeo needs the GeoTIFF layout."
    configilm = (
        LOAD_CONFIGILM.format(name=name, lmdb=out["lmdb"]["path"])
        if "lmdb" in out
        else ("ConfigILM needs the LMDB (`rsprep convert lmdb`).")
    )
    return "\n\n".join(b for b in ("## Loading", rsprep, torchgeo, configilm) if b)


def _licence(facts: dict[str, Any]) -> str:
    lic = facts["licence"]
    return LICENCE.format(id=lic["id"], url=f" ({lic['url']})" if lic["url"] else "", source=lic["source"])
