"""Building one synthetic archive: products, CLC, Sentinel-1 scenes, countries and the manifest."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from rsprep.synth import Progress, SynthConfig


def build_archive(root: Path, cfg: SynthConfig, progress: Progress) -> dict[str, Any]:
    """Write every file of a synthetic archive into ``root`` and return its manifest."""
    from rsprep import __version__
    from rsprep.synth import layout
    from rsprep.synth.landcover import make_truth, world_bounds

    size = layout.tile_size_m(cfg.patches_per_side, cfg.patch_size, cfg.full_size)
    tiles = layout.tile_layout(cfg.tiles, size)
    acqs = layout.acquisitions(cfg.acquisitions)
    specs = layout.product_specs(tiles, acqs, level=cfg.level, baseline=cfg.baseline)
    margin = max(cfg.patch_size, (size // 10) // 60 * 60)
    world = world_bounds([t.bounds for t in tiles], margin)
    truth = make_truth(world, cell_size=1.1 * cfg.patch_size, seed=cfg.seed)
    progress("ground truth")
    tile_docs, products = _write_s2(root, cfg, specs, tiles, acqs, world, truth, size, progress)
    clc = _write_clc(root, truth, progress)
    countries = _write_countries(root, cfg, truth, progress)
    scenes = _write_s1(root, cfg, acqs, truth, progress) if cfg.s1 else []
    return {
        "generator": "rsprep synth",
        "rsprep_version": __version__,
        "parameters": asdict(cfg),
        "crs": f"EPSG:{layout.EPSG}",
        "world_bounds": list(world),
        "patch_size": cfg.patch_size,
        "tile_size_m": size,
        "tiles": list(tile_docs.values()),
        "products": products,
        "clc": clc,
        "countries": countries,
        "s1": scenes,
    }


def _write_s2(
    root: Path, cfg: SynthConfig, specs, tiles, acqs, world, truth, size: int, progress: Progress
) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Render and write every Sentinel-2 product; return the manifest's tile and product entries."""
    from pyproj import Transformer

    from rsprep.core.grid import patches_per_side
    from rsprep.synth import layout
    from rsprep.synth.render import render_product
    from rsprep.synth.safe_writer import write_product, zip_product
    from rsprep.synth.sky import make_sky

    n = patches_per_side(size, cfg.patch_size)
    to_wgs84 = Transformer.from_crs(f"EPSG:{layout.EPSG}", "EPSG:4326", always_xy=True)
    tile_docs: dict[str, dict[str, Any]] = {}
    products: list[dict[str, Any]] = []
    s2_dir = root / "s2"
    s2_dir.mkdir()
    skies = {a.index: make_sky(a, tiles, world, patch_size=cfg.patch_size, seed=cfg.seed) for a in acqs}
    for spec in specs:
        t = spec.tile
        first_of_tile = t.name not in tile_docs
        sky = skies[spec.acquisition.index]
        rendered = render_product(
            spec, truth, sky, patch_size=cfg.patch_size, seed=cfg.seed, with_codes=first_of_tile
        )
        footprint = _footprint(t, size, to_wgs84)
        path = write_product(spec, rendered, s2_dir, content=cfg.content, footprint=footprint)
        if cfg.zip:
            path = zip_product(path)
        if first_of_tile:
            assert rendered.code_counts is not None
            tile_docs[t.name] = _tile_doc(t, size, n, rendered.code_counts)
        rel = path.relative_to(root).as_posix()
        products.append(_product_doc(spec, rel, rendered.patch_stats, sky, cfg.content, n))
        del rendered
        progress(spec.product_uri)
    return tile_docs, products


def _footprint(t, size: int, to_wgs84) -> str:
    """The tile's corner ring in EPSG:4326, as the "lat lon …" text of the product metadata."""
    corners = [
        (t.ulx, t.uly),
        (t.ulx + size, t.uly),
        (t.ulx + size, t.uly - size),
        (t.ulx, t.uly - size),
        (t.ulx, t.uly),
    ]
    lon, lat = to_wgs84.transform(*zip(*corners, strict=True))
    return " ".join(f"{la:.9f} {lo:.9f}" for la, lo in zip(lat, lon, strict=True))


def _tile_doc(t, size: int, n: int, code_counts) -> dict[str, Any]:
    """The manifest entry of one tile, with the CLC code counts of each of its patches."""
    from rsprep.synth import layout

    return {
        "name": t.name,
        "epsg": layout.EPSG,
        "ulx": t.ulx,
        "uly": t.uly,
        "size_m": size,
        "column": t.column,
        "row": t.row,
        "patches_per_side": n,
        "patch_codes": {
            f"{x}_{y}": {str(c): k for c, k in sorted(counts.items())}
            for (x, y), counts in sorted(code_counts.items(), key=lambda kv: (kv[0][1], kv[0][0]))
        },
    }


def _product_doc(spec, path: str, patch_stats, sky, content: str, n: int) -> dict[str, Any]:
    """The manifest entry of one product, with the statistics of each of its patches."""
    from rsprep.core.grid import parse_product_uri, patch_name

    prefix = parse_product_uri(spec.product_uri).patch_prefix
    return {
        "index": spec.index,
        "path": path,
        "product_uri": spec.product_uri,
        "patch_prefix": prefix,
        "tile": spec.tile.name,
        "level": spec.level,
        "datatake": spec.acquisition.datatake.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "season": spec.acquisition.season,
        "baseline": spec.baseline,
        "boa_add_offset": -1000 if spec.has_offset else 0,
        "quality_passed": spec.failed_check is None,
        "failed_checks": [spec.failed_check] if spec.failed_check else [],
        "roles": list(spec.roles),
        "content": content,
        "swath_edge": sky.swath_edge is not None,
        "patches": {
            patch_name(prefix, x, y, n): stats
            for (x, y), stats in sorted(patch_stats.items(), key=lambda kv: (kv[0][1], kv[0][0]))
        },
    }


def _write_clc(root: Path, truth, progress: Progress) -> dict[str, Any]:
    """Write the CLC GeoPackage; return its manifest entry."""
    from rsprep.synth.vectors import CLC_CRS, CLC_LAYER, write_clc

    clc_path = root / "clc" / f"{CLC_LAYER}.gpkg"
    clc_counts = write_clc(truth, clc_path)
    progress("CLC")
    return {
        "path": clc_path.relative_to(root).as_posix(),
        "layer": CLC_LAYER,
        "code_field": "Code_18",
        "crs": CLC_CRS,
        "n_polygons": sum(clc_counts.values()),
        "polygons_per_code": {str(k): v for k, v in sorted(clc_counts.items())},
    }


def _write_countries(root: Path, cfg: SynthConfig, truth, progress: Progress) -> dict[str, Any]:
    """Write the country borders GeoPackage; return its manifest entry."""
    from rsprep.synth.vectors import COUNTRY_LAYER, write_countries

    countries_path = root / "countries" / "countries.gpkg"
    names = write_countries(truth, countries_path, patch_size=cfg.patch_size)
    progress("countries")
    return {
        "path": countries_path.relative_to(root).as_posix(),
        "layer": COUNTRY_LAYER,
        "name_field": "NAME",
        "crs": "EPSG:4326",
        "names": names,
    }


def _write_s1(root: Path, cfg: SynthConfig, acqs, truth, progress: Progress) -> list[dict[str, Any]]:
    """Write every Sentinel-1 scene; return their manifest entries."""
    from rsprep.synth.s1 import s1_specs, write_scene

    scenes = []
    s1_dir = root / "s1"
    for s in s1_specs(acqs):
        doc = write_scene(s, truth, s1_dir, seed=cfg.seed, winter=acqs[s.acquisition].snowy)
        doc["files"] = {pol: p.relative_to(root).as_posix() for pol, p in doc["files"].items()}
        scenes.append(doc)
        progress(s.name)
    return scenes
