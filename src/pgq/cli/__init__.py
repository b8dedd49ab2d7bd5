"""The ``pgq`` command line: parses options, then calls the library. No logic of its own."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from pgq import __version__
from pgq.errors import PgqError

app = typer.Typer(
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
