"""The ``rsprep`` root command: global options, logging set-up and the one error boundary."""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import click
import typer
from typer.core import TyperGroup

from rsprep import __version__
from rsprep.cli.context import set_verbosity, verbosity
from rsprep.errors import RsprepError

log = logging.getLogger("rsprep")


def _passthrough() -> tuple[type[BaseException], ...]:
    """Exceptions that carry their own exit code: click's, and those of the click copy that newer
    typer versions vendor as ``typer._click`` (their classes differ from click's)."""
    kinds: set[type[BaseException]] = {
        click.exceptions.Exit,
        click.exceptions.Abort,
        click.ClickException,
        typer.Exit,
        typer.Abort,
    }
    try:
        from typer._click import exceptions as vendored
    except ImportError:  # typer versions that use click itself
        pass
    else:
        kinds |= {
            getattr(vendored, name)
            for name in ("Exit", "Abort", "ClickException")
            if isinstance(getattr(vendored, name, None), type)
        }
    return tuple(kinds)


_PASSTHROUGH = _passthrough()


class _BoundaryGroup(TyperGroup):
    """Turns library errors into one line on stderr and exit code 1 (usage errors stay exit 2)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except _PASSTHROUGH:
            raise
        except RsprepError as exc:
            _report(exc)
            raise typer.Exit(1) from exc
        except OSError as exc:  # disk full, permissions, GDAL I/O errors
            _report(exc)
            raise typer.Exit(1) from exc
        except KeyboardInterrupt as exc:
            typer.echo(
                "rsprep: interrupted; finished outputs are complete and a partial one never replaces them "
                "(`rsprep convert` resumes where it stopped when run again)",
                err=True,
            )
            raise typer.Exit(130) from exc


def _report(exc: BaseException) -> None:
    if verbosity() >= 2:
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    msg = str(exc) or exc.__class__.__name__
    if isinstance(exc, OSError) and not isinstance(exc, RsprepError) and exc.filename:
        msg = f"{exc.strerror or exc}: {exc.filename}"
    typer.echo(f"rsprep: error: {msg}", err=True)


app = typer.Typer(
    cls=_BoundaryGroup,
    name="rsprep",
    help="Build deep-learning-ready remote-sensing datasets (reBEN and friends) from raw archives.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"rsprep {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="More logging; -vv adds tracebacks.")
    ] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Errors only, no progress bars.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """rsprep: raw satellite archives in, deep-learning-ready datasets out."""
    set_verbosity(-1 if quiet else verbose)
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    root = logging.getLogger("rsprep")
    root.handlers.clear()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("rsprep: %(levelname)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False


def _register() -> None:
    # Each command lives in its own module; importing them is cheap (heavy imports are inside functions).
    from rsprep.cli import build as build_cmd
    from rsprep.cli import card as card_cmd
    from rsprep.cli import convert as convert_cmd
    from rsprep.cli import inspect as inspect_cmd
    from rsprep.cli import metadata as metadata_cmd
    from rsprep.cli import noise as noise_cmd
    from rsprep.cli import patch as patch_cmd
    from rsprep.cli import recipe as recipe_cmd
    from rsprep.cli import reference as reference_cmd
    from rsprep.cli import s1 as s1_cmd
    from rsprep.cli import smoke_train as smoke_train_cmd
    from rsprep.cli import split as split_cmd
    from rsprep.cli import stack as stack_cmd
    from rsprep.cli import stats as stats_cmd
    from rsprep.cli import synth as synth_cmd
    from rsprep.cli import v1 as v1_cmd
    from rsprep.cli import validate as validate_cmd

    app.command("inspect")(inspect_cmd.inspect)
    app.command("synth")(synth_cmd.synth)
    app.command("patch")(patch_cmd.patch)
    app.command("stack")(stack_cmd.stack)
    app.command("s1")(s1_cmd.s1)
    app.command("reference")(reference_cmd.reference)
    app.command("metadata")(metadata_cmd.metadata)
    app.command("split")(split_cmd.split)
    app.command("noise")(noise_cmd.noise)
    app.command("convert")(convert_cmd.convert)
    app.command("validate")(validate_cmd.validate)
    app.command("card")(card_cmd.card)
    app.command("stats")(stats_cmd.stats)
    app.command("smoke-train")(smoke_train_cmd.smoke_train)
    app.add_typer(recipe_cmd.app, name="recipe")
    app.add_typer(v1_cmd.app, name="v1")
    app.command("build")(build_cmd.build)


_register()


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
