"""PgQueuer's side of the peers run (``make bench-peers``): its factory and entrypoints.

``python -m pgqueuer run benchmarks.apps.pgqueuer_app:create`` starts a worker on
``$PGQ_BENCH_PEER_URL`` with the asyncpg driver (PgQueuer's own recommendation).
Only importable in the peers' venv (.venv-peers), where pgqueuer is installed.
"""

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import psycopg
from pgqueuer import PgQueuer
from pgqueuer.db import AsyncpgDriver
from pgqueuer.models import Job

from benchmarks.db import sql

PEER_URL_ENV = "PGQ_BENCH_PEER_URL"

_ledger: list[psycopg.AsyncConnection[Any]] = []


@asynccontextmanager
async def create() -> AsyncIterator[PgQueuer]:
    connection = await asyncpg.connect(os.environ[PEER_URL_ENV])
    queuer = PgQueuer(AsyncpgDriver(connection))
    lock = asyncio.Lock()

    @queuer.entrypoint("noop")
    async def noop(job: Job) -> None:
        return None

    @queuer.entrypoint("record_start")
    async def record_start(job: Job) -> None:
        # The server's clock, first thing (see scenarios/latency.py).
        async with lock:
            if not _ledger:
                url = os.environ[PEER_URL_ENV]
                _ledger.append(await psycopg.AsyncConnection.connect(url, autocommit=True))
            await _ledger[0].execute(sql("ledger_insert"), {"job_id": job.id})

    try:
        yield queuer
    finally:
        await connection.close()
