"""PgQueuer through its own public API: ``Queries.enqueue`` and ``pgqueuer run``.

Enqueues use its synchronous ``SyncQueries`` on an autocommit psycopg connection (it
requires autocommit), so each job is its own transaction; a list enqueues a batch in one
statement. The worker is ``python -m pgqueuer run ... --mode drain`` with its default
settings and the asyncpg driver. First claim and last completion come from its
``pgqueuer_log`` table (``picked`` and ``successful`` entries, database time).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Iterator
from typing import Any

import psycopg
from pgqueuer.db import SyncPsycopgDriver
from pgqueuer.queries import Queries, SyncQueries

from benchmarks.db import Span, connect, one

NAME = "pgqueuer"
FACTORY = "benchmarks.apps.pgqueuer_app:create"
PEER_URL_ENV = "PGQ_BENCH_PEER_URL"  # read by benchmarks/apps/pgqueuer_app.py


class Peer:
    name = NAME
    url_env = PEER_URL_ENV

    def __init__(self, url: str) -> None:
        self.url = url
        self.queries: Any = None

    @contextlib.contextmanager
    def opened(self) -> Iterator[Peer]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            self.queries = SyncQueries(SyncPsycopgDriver(conn))
            try:
                yield self
            finally:
                self.queries = None

    def install(self) -> None:
        async def install() -> None:
            async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
                await Queries.from_psycopg_connection(conn).install()

        asyncio.run(install())

    def enqueue_one(self, i: int) -> int:
        return int(self.queries.enqueue("noop", b'{"i": %d}' % i)[0])

    def enqueue_ledger(self) -> int:
        return int(self.queries.enqueue("record_start", None)[0])

    def enqueue_many(self, n: int, start: int = 0) -> list[int]:
        payloads = [b'{"i": %d}' % i for i in range(start, start + n)]
        return [int(i) for i in self.queries.enqueue(["noop"] * n, payloads, [0] * n)]

    def worker_command(self, drain: bool) -> list[str]:
        command = [sys.executable, "-m", "pgqueuer", "run", FACTORY]
        return [*command, "--mode", "drain"] if drain else command

    def span(self, first: int, last: int) -> Span:
        with connect(self.url) as conn:
            done, seconds = one(conn, "pgqueuer_drain_span", {"first": first, "last": last})
        return Span(int(done), float(seconds or 0.0))


def version() -> Any:
    from importlib.metadata import version as installed

    return installed("pgqueuer")
