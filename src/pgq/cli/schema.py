"""`pgq migrate`: create or upgrade the schema, or print its DDL."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from pgq import migrate as migrations
from pgq.cli import DatabaseUrl, app, fail
from pgq.db import redact, resolve_database_url, resolve_direct_url
from pgq.errors import PgqError


@app.command()
def migrate(
    database_url: DatabaseUrl = None,
    sql: Annotated[
        bool,
        typer.Option("--sql", help="Print the DDL instead of applying it (no database needed)."),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the result as one JSON object.")
    ] = False,
) -> None:
    """Create or upgrade the pgq schema. Safe to run again: a no-op when up to date.

    Connects to --database-url, else $PGQ_DIRECT_URL (PostgreSQL without a pooler, when
    pgq's other connections go through PgBouncer), else the usual database URL.
    """
    if sql and as_json:
        fail("--sql prints SQL; it cannot be combined with --json")
    if sql:
        typer.echo(migrations.upgrade_sql(), nl=False)
        return
    try:
        url = resolve_database_url(database_url or resolve_direct_url())
        change = migrations.upgrade(url)
    except PgqError as exc:
        fail(str(exc))
    if as_json:
        typer.echo(json.dumps(_as_dict(change, url)))
    else:
        typer.echo(_describe(change, url))


def _as_dict(change: migrations.SchemaChange, url: str) -> dict[str, object]:
    return {
        "database_url": redact(url),
        "version_before": change.before,
        "version": change.after,
        "changed": change.changed,
    }


def _describe(change: migrations.SchemaChange, url: str) -> str:
    where = redact(url)
    if not change.changed:
        return f"pgq schema is up to date (version {change.after}) on {where}"
    if change.before is None:
        return f"pgq schema created (version {change.after}) on {where}"
    return f"pgq schema upgraded from version {change.before} to {change.after} on {where}"
