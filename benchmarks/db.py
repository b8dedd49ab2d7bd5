"""Databases for the scenarios: a fresh migrated one each, and the benchmark's own SQL.

The benchmark's statements (arranging rows, reading spans, the bare floors) live as named
files in benchmarks/sql/, like pgq's own statements in src/pgq/sql/.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from pgq import devdb, migrate

SQL_DIR = Path(__file__).with_name("sql")
POLL_INTERVAL = 0.1  # seconds between looks while waiting on a condition


class BenchError(RuntimeError):
    """A scenario could not be measured (a worker died, a wait ran out, rows went missing)."""


@functools.cache
def sql(name: str) -> bytes:
    """The text of ``benchmarks/sql/<name>.sql``."""
    return (SQL_DIR / f"{name}.sql").read_bytes()


def fetch(conn: psycopg.Connection[Any], name: str, params: Any = None) -> list[tuple[Any, ...]]:
    """Run the named benchmark statement and return its rows (none for a command)."""
    with conn.cursor() as cur:
        cur.execute(sql(name), params)
        return cur.fetchall() if cur.description else []


def one(conn: psycopg.Connection[Any], name: str, params: Any = None) -> tuple[Any, ...]:
    rows = fetch(conn, name, params)
    if len(rows) != 1:
        raise BenchError(f"{name}.sql returned {len(rows)} rows, expected one")
    return rows[0]


def commit_then_clock(conn: psycopg.Connection[Any]) -> Any:
    """COMMIT the transaction txn_begin.sql opened; the server's clock right after it."""
    with conn.cursor() as cur:
        cur.execute(sql("txn_commit_then_clock"))
        if not cur.nextset():
            raise BenchError("txn_commit_then_clock.sql returned no clock")
        row = cur.fetchone()
    if row is None:
        raise BenchError("txn_commit_then_clock.sql returned no clock")
    return row[0]


def connect(url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(url, autocommit=True)


@contextlib.contextmanager
def fresh_database(server: devdb.Server, *, bench_schema: bool = True) -> Iterator[str]:
    """A new database migrated to pgq's newest schema (plus the benchmark's tables)."""
    with devdb.scratch_database(server, prefix="pgq_bench") as url:
        migrate.upgrade(url)
        if bench_schema:
            with connect(url) as conn:
                fetch(conn, "bench_schema_create")
        yield url


@contextlib.contextmanager
def empty_database(server: devdb.Server) -> Iterator[str]:
    """A new empty database (for peers, which install their own schema)."""
    with devdb.scratch_database(server, prefix="pgq_bench") as url:
        with connect(url) as conn:
            fetch(conn, "bench_schema_create")
        yield url


def wait_until(
    condition: Callable[[], bool],
    timeout: float,
    what: str,
    interval: float = POLL_INTERVAL,
) -> None:
    """Poll ``condition`` until it is true; raise BenchError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


@dataclass(frozen=True)
class Span:
    """What a drain did, in database time: first claim to last completion."""

    done: int
    seconds: float


def drain_span(url: str, first_id: int, last_id: int) -> Span:
    """The span of jobs ``first_id``..``last_id``: how many succeeded, claim to completion."""
    with connect(url) as conn:
        done, seconds = one(conn, "job_drain_span", {"first": first_id, "last": last_id})
    return Span(int(done), float(seconds or 0.0))


def server_version(url: str) -> str:
    with connect(url) as conn:
        return str(one(conn, "server_version")[0])


def server_setting(url: str, name: str) -> str:
    with connect(url) as conn:
        return str(one(conn, "server_setting", {"name": name})[0])
