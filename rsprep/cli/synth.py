"""``rsprep synth``: write a synthetic archive (S2 SAFE products, CLC, S1, countries)."""

from __future__ import annotations

from typing import Annotated

import typer

from rsprep.cli.options import OutDir, Overwrite, PatchSize, Seed


def synth(
    out: OutDir,
    tiles: Annotated[
        int, typer.Option("--tiles", help="Number of neighbouring, overlapping tiles (1-36).")
    ] = 2,
    patches: Annotated[
        int, typer.Option("--patches", help="Complete patches per tile side (the tile adds half a patch).")
    ] = 4,
    full_size: Annotated[
        bool, typer.Option("--full-size", help="Real 10980 × 10980 px tiles (91 × 91 patches of 1200 m).")
    ] = False,
    patch_size: PatchSize = 1200,
    acquisitions: Annotated[
        int, typer.Option("--acquisitions", help="Dates per tile, one season each (1-12).")
    ] = 2,
    baseline: Annotated[
        str,
        typer.Option("--baseline", help="Processing baseline, e.g. 99.99 (sen2cor, reBEN), 05.09, 02.14."),
    ] = "99.99",
    seed: Seed = 0,
    s1: Annotated[bool, typer.Option("--s1/--no-s1", help="Also write Sentinel-1 scenes.")] = True,
    level: Annotated[
        str, typer.Option("--level", help="Product level: L2A, or L1C (for the sen2cor path).")
    ] = "L2A",
    content: Annotated[
        str,
        typer.Option(
            "--content", help="Band files: jp2 (lossless JPEG2000) or gtiff (GeoTIFF in .jp2, faster)."
        ),
    ] = "jp2",
    as_zip: Annotated[
        bool, typer.Option("--zip", help="Write each product as a .zip, as downloaded.")
    ] = False,
    overwrite: Overwrite = False,
) -> None:
    """Write a format-faithful synthetic archive derived from one land-cover ground truth."""
    from tqdm import tqdm

    from rsprep.cli.context import quiet
    from rsprep.synth import SynthConfig, plan_steps, synthesize

    cfg = SynthConfig(
        tiles=tiles,
        patches_per_side=patches,
        full_size=full_size,
        patch_size=patch_size,
        acquisitions=acquisitions,
        baseline=baseline,
        seed=seed,
        s1=s1,
        level=level.upper(),
        content=content.lower(),
        zip=as_zip,
    )
    cfg.validate()
    with tqdm(total=plan_steps(cfg), desc="synth", unit="step", disable=quiet(), leave=False) as bar:
        manifest = synthesize(
            out,
            cfg,
            overwrite=overwrite,
            progress=lambda step: (bar.set_postfix_str(step[:40]), bar.update()),
        )
    n_patches = sum(len(p["patches"]) for p in manifest["products"])
    typer.echo(
        f"wrote {out}: {len(manifest['products'])} {cfg.level} products ({n_patches} patches), "
        f"{manifest['clc']['n_polygons']} CLC polygons, {len(manifest['s1'])} S1 scenes"
    )
