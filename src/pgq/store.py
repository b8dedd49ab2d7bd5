"""One thin function per SQL statement; no policy lives here.

Each function names a statement in ``pgq/sql/<name>.sql`` and binds its parameters. It
returns a :class:`Statement`; :func:`fetch` and :func:`fetch_async` run it on a psycopg
connection, so every statement is written once for sync and async callers alike. Statement
texts never change (arrays are parameters), so psycopg prepares the hot ones.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources
from typing import Any

import psycopg
from psycopg.rows import tuple_row

Row = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Statement:
    name: str
    params: dict[str, Any]

    @property
    def query(self) -> bytes:
        # bytes, not str: psycopg only types LiteralString queries, and these come from files.
        return load_sql(self.name)


@functools.cache
def load_sql(name: str) -> bytes:
    """The text of ``sql/<name>.sql`` (cached)."""
    return resources.files("pgq").joinpath("sql", f"{name}.sql").read_bytes()


def fetch(conn: psycopg.Connection[Any], statement: Statement) -> list[Row]:
    """Run ``statement`` on a sync psycopg connection and return its rows as tuples."""
    with conn.cursor(row_factory=tuple_row) as cur:
        cur.execute(statement.query, statement.params)
        return cur.fetchall() if cur.description else []


async def fetch_async(conn: psycopg.AsyncConnection[Any], statement: Statement) -> list[Row]:
    """Run ``statement`` on an async psycopg connection and return its rows as tuples."""
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(statement.query, statement.params)
        return await cur.fetchall() if cur.description else []


# --- statements -----------------------------------------------------------------------------


def insert_job(
    *,
    queue: str,
    task: str,
    args: str,
    priority: int,
    run_at: Any,
    delay: float,
    max_attempts: int,
    unique_key: str | None,
) -> Statement:
    """Insert one job; returns ``(id, notified)`` or no row when the unique key is live."""
    return Statement("job_insert", locals())


def insert_jobs(
    *,
    queues: list[str],
    tasks: list[str],
    args: list[str],
    priorities: list[int],
    run_ats: list[Any],
    delays: list[float],
    max_attempts: list[int],
    unique_keys: list[str | None],
) -> Statement:
    """Insert many jobs at once; returns one ``(id, notified)`` row per job created."""
    return Statement("job_insert_many", locals())


def get_schema_version() -> Statement:
    """The pgq schema version in this database, or NULL when pgq was never migrated."""
    return Statement("schema_version", {})
