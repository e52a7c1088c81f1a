"""``rsprep recipe``: the built-in recipes, a resolved recipe, the recipe JSON schema, a recipe's input
list (docs/recipes.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from rsprep.cli.options import Json

app = typer.Typer(
    help="Recipes: list the built-in ones, show a resolved recipe, print the JSON schema or an input list.",
    no_args_is_help=True,
)

Sets = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="KEY.PATH=VALUE",
        help="Override a recipe value (YAML-parsed), e.g. --set split.seed=3; repeatable.",
        show_default=False,
    ),
]


@app.command("list")
def list_recipes() -> None:
    """The built-in recipes, one per line: name and description."""
    from rsprep.build.recipe import builtin_recipes, load_recipe

    recipes = builtin_recipes()
    width = max(len(n) for n in recipes)
    for name in recipes:
        typer.echo(f"{name:<{width}}  {load_recipe(name).description}")


@app.command("show")
def show(
    source: Annotated[
        str, typer.Argument(metavar="NAME|FILE", help="A built-in recipe name or a YAML file.")
    ],
    sets: Sets = None,
    json_out: Json = False,
) -> None:
    """Print the resolved recipe (every default filled in, --set applied) as YAML, or JSON with --json."""
    import json

    import yaml

    from rsprep.build.recipe import load_recipe

    resolved = load_recipe(source, sets or ()).resolved()
    if json_out:
        typer.echo(json.dumps(resolved, indent=2))
        return
    typer.echo(f"# the resolved recipe {resolved['name']!r} (docs/recipes.md)")
    typer.echo(
        yaml.safe_dump(resolved, sort_keys=False, allow_unicode=True, default_flow_style=None, width=100),
        nl=False,
    )


@app.command("schema")
def schema() -> None:
    """Print the JSON schema of recipes (schemas/recipe.schema.json is this output)."""
    import json

    from rsprep.build.recipe import recipe_schema

    typer.echo(json.dumps(recipe_schema(), indent=2))


@app.command("inputs")
def inputs(
    source: Annotated[
        str, typer.Argument(metavar="NAME|FILE", help="A built-in recipe name or a YAML file.")
    ],
    missing: Annotated[
        bool, typer.Option("--missing", help="Only the listed products that no product under --s2 matches.")
    ] = False,
    s2: Annotated[
        list[Path] | None,
        typer.Option("--s2", help="With --missing: the Sentinel-2 products you have (repeatable)."),
    ] = None,
    fmt: Annotated[
        Literal["csv", "txt"],
        typer.Option("--format", help="csv: name, product_id, sha256; txt: one product id per line."),
    ] = "csv",
    sets: Sets = None,
) -> None:
    """Print the recipe's input list (inputs.product_list), e.g. the product ids to feed a downloader."""
    import csv
    import sys

    from rsprep.build.input_list import missing_products, require_list
    from rsprep.build.recipe import load_recipe

    resolved = load_recipe(source, sets or ())
    if missing and not s2:
        raise typer.BadParameter("give the products you have with --s2 DIR", param_hint="--missing")
    if s2 and not missing:
        raise typer.BadParameter("--s2 is read with --missing only; add --missing", param_hint="--s2")
    _path, listed = require_list(resolved)
    shown = missing_products(resolved, s2 or []) if missing else listed
    if fmt == "txt":
        for e in shown:
            typer.echo(e.product_id)
        return
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(["name", "product_id", "sha256"])
    writer.writerows([e.name, e.product_id, e.sha256 or ""] for e in shown)
