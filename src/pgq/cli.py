"""The ``pgq`` command line: parses options, then calls the library. No logic of its own."""

from __future__ import annotations

import sys
from typing import Annotated, NoReturn

import typer

from pgq import migrate as migrations
from pgq.db import connect, redact, resolve_database_url
from pgq.errors import PgqError

app = typer.Typer(
    name="pgq",
    help="pgq: a job queue in your own PostgreSQL database.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="PostgreSQL URL. Default: $PGQ_DATABASE_URL, else $DATABASE_URL, else "
        "postgresql://postgres@localhost:5432/postgres.",
        show_default=False,
    ),
]


@app.callback()
def _root() -> None:
    """pgq: a job queue in your own PostgreSQL database."""


def fail(message: str, code: int = 2) -> NoReturn:
    """Print a one-line error to stderr and exit: the CLI never shows a traceback."""
    typer.echo(f"pgq: error: {message}", err=True)
    raise typer.Exit(code)


@app.command()
def migrate(
    database_url: DatabaseUrl = None,
    sql: Annotated[
        bool, typer.Option("--sql", help="Print the DDL instead of applying it.")
    ] = False,
) -> None:
    """Create or upgrade the pgq schema. Safe to run again: a no-op when up to date."""
    if sql:
        typer.echo(migrations.upgrade_sql(), nl=False)
        return
    try:
        url = resolve_database_url(database_url)
        migrations.upgrade(url)
        with connect(url) as conn:
            version = migrations.schema_version(conn)
    except PgqError as exc:
        fail(str(exc))
    typer.echo(f"pgq schema is at version {version} on {redact(url)}")


def main() -> None:
    try:
        app()
    except PgqError as exc:  # anything a command did not turn into a message itself
        typer.echo(f"pgq: error: {exc}", err=True)
        sys.exit(2)
