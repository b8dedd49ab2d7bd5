"""Tasks for the acceptance tests: each records its execution in a ledger table.

A worker subprocess imports this with ``--app acceptance_tasks``. Every thread writes the
ledger over its own psycopg connection (autocommit), never through pgq, so the ledger is
an independent witness of what ran, where, and when (in database time).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any

import psycopg

import pgq
from pgq.runner import JobContext

_local = threading.local()


def _ledger() -> psycopg.Connection[Any]:
    conn = getattr(_local, "conn", None)
    if conn is None or conn.closed:
        conn = psycopg.connect(
            os.environ["PGQ_DATABASE_URL"], autocommit=True, application_name="ledger"
        )
        _local.conn = conn
    return conn


def record(ctx: JobContext) -> None:
    _ledger().execute(
        "INSERT INTO ledger (job_id, pid, at) VALUES (%s, %s, now())", (ctx.id, os.getpid())
    )


@pgq.task(name="acc.record", pass_context=True)
def record_sync(ctx: JobContext) -> None:
    record(ctx)


@pgq.task(name="acc.record_async", pass_context=True)
async def record_async(ctx: JobContext) -> None:
    record(ctx)


@pgq.task(name="acc.sleep", pass_context=True)
def sleep_sync(ctx: JobContext, seconds: float) -> None:
    """Sleeps in small steps and never looks at ctx.should_stop()."""
    record(ctx)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.05)


@pgq.task(name="acc.sleep_async", pass_context=True)
async def sleep_async(ctx: JobContext, seconds: float) -> None:
    record(ctx)
    await asyncio.sleep(seconds)
