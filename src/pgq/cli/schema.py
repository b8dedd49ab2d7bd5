"""`pgq migrate`: create or upgrade the schema, or print its DDL."""

from __future__ import annotations

from typing import Annotated

import typer

from pgq import migrate as migrations
from pgq.cli import DatabaseUrl, app, fail
from pgq.db import connect, redact, resolve_database_url
from pgq.errors import PgqError


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
