"""``rsprep recipe``: the built-in recipes, a resolved recipe, the recipe JSON schema (docs/recipes.md)."""

from __future__ import annotations

from typing import Annotated

import typer

from rsprep.cli.options import Json

app = typer.Typer(
    help="Recipes: list the built-in ones, show a resolved recipe, print the JSON schema.",
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
