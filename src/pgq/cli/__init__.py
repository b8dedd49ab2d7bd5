"""The ``pgq`` command line: parses options, then calls the library. No logic of its own."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from typer import _click as click  # typer 0.29 carries its own click: its types are these
from typer.core import TyperArgument, TyperGroup

from pgq import __version__
from pgq.errors import PgqError


class _PlainArgument(TyperArgument):
    """An argument's help row without typer's Python type after its name (``ID``, not
    ``ID <str>``): the name already says what to type, and typer adds the type even when
    a metavar is given."""

    def display_type_rich(self, ctx: click.Context) -> str | None:
        return None


class _PlainHelpGroup(TyperGroup):
    """Gives each command's arguments the plain help row as click resolves the command,
    for `pgq CMD --help` and for typer's CliRunner alike."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        for param in command.params if command is not None else ():
            if type(param) is TyperArgument:
                param.__class__ = _PlainArgument
        return command


app = typer.Typer(
    cls=_PlainHelpGroup,
    name="pgq",
    help="pgq: a job queue in your own PostgreSQL database.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain help, laid out like click's: typer's rich panels label every option with its
    # Python type (`<str>`, `<bool>`, even for --help), which reads like a bug.
    rich_markup_mode=None,
)

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        metavar="URL",
        help="PostgreSQL URL. Default: $PGQ_DATABASE_URL, else $DATABASE_URL, else "
        "postgresql://postgres@localhost:5432/postgres.",
        show_default=False,
    ),
]


def _print_version(value: bool) -> None:
    if value:
        # The distribution's version and where this pgq lives: with PgQueuer installed too,
        # that tells which `pgq` answered (docs/getting-started.md, "The names").
        typer.echo(f"pgq {__version__} (pgq-jobs, {Path(__file__).parent.parent})")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print pgq's version and where it is installed, then exit.",
        ),
    ] = False,
) -> None:
    """pgq: a job queue in your own PostgreSQL database."""


def fail(message: str, code: int = 2) -> NoReturn:
    """Print a one-line error to stderr and exit: the CLI never shows a traceback."""
    typer.echo(f"pgq: error: {message}", err=True)
    raise typer.Exit(code)


def _register_commands() -> None:
    # Each module adds its commands to `app` when imported; one module per area.
    from pgq.cli import (  # noqa: F401
        dashboard,
        flow,
        health,
        maintenance,
        ops,
        periodic,
        schema,
        worker,
        workflow,
    )


def main() -> None:
    _register_commands()
    try:
        app()
    except PgqError as exc:  # anything a command did not turn into a message itself
        typer.echo(f"pgq: error: {exc}", err=True)
        sys.exit(2)
