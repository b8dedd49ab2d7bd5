"""Tasks for the metrics and cancel acceptance tests (``--app observe_tasks``).

Tasks note what happened to them in an ``observe_events(job_id, event)`` table over their
own autocommit connection, never through pgq, so the table is an independent witness of
what ran and how it ended. The tests create the table.
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

NOW = pgq.Backoff(base=0.0, jitter=0.0)  # a retry comes due at once
STEP = 0.05  # seconds between a sync task's looks at ctx.should_stop()
FOREVER = 3600.0  # seconds: longer than any test waits

_local = threading.local()


def note(ctx: JobContext, event: str) -> None:
    conn: psycopg.Connection[Any] | None = getattr(_local, "conn", None)
    if conn is None or conn.closed:
        conn = psycopg.connect(os.environ["PGQ_DATABASE_URL"], autocommit=True)
        _local.conn = conn
    conn.execute("INSERT INTO observe_events (job_id, event) VALUES (%s, %s)", (ctx.id, event))


# --- metrics: one task per outcome ------------------------------------------------------------


@pgq.task(name="obs.ok", pass_context=True)
def ok(ctx: JobContext) -> None:
    note(ctx, "ran")


@pgq.task(name="obs.flaky", pass_context=True, backoff=NOW)
def flaky(ctx: JobContext) -> None:
    """Fails its first attempt, succeeds on the second."""
    note(ctx, "ran")
    if ctx.attempt == 1:
        raise RuntimeError("first attempt fails")


@pgq.task(name="obs.broken", queue="mail", max_attempts=2, backoff=NOW, pass_context=True)
def broken(ctx: JobContext) -> None:
    note(ctx, "ran")
    raise RuntimeError("always fails")


@pgq.task(name="obs.fail", queue="mail", pass_context=True)
def fail(ctx: JobContext) -> None:
    note(ctx, "ran")
    raise pgq.Fail("not worth retrying")


@pgq.task(name="obs.snooze", pass_context=True)
async def snooze(ctx: JobContext) -> None:
    """Snoozes its first run (not counted as an attempt), succeeds on the next."""
    note(ctx, "ran")
    if not _has_event(ctx, "snoozed"):
        note(ctx, "snoozed")
        raise pgq.Snooze(0.0)


def _has_event(ctx: JobContext, event: str) -> bool:
    conn: psycopg.Connection[Any] = _local.conn
    query = "SELECT count(*) FROM observe_events WHERE job_id = %s AND event = %s"
    row = conn.execute(query, (ctx.id, event)).fetchone()
    return row is not None and row[0] > 0


# --- long tasks: until stopped ----------------------------------------------------------------


@pgq.task(name="obs.wait_sync", queue="slow", pass_context=True)
def wait_sync(ctx: JobContext) -> str:
    """Runs until ctx.should_stop(), then returns normally (a value, not an error)."""
    note(ctx, "started")
    deadline = time.monotonic() + FOREVER
    while not ctx.should_stop() and time.monotonic() < deadline:
        time.sleep(STEP)
    note(ctx, f"stopped: {ctx.stop_reason}")
    return "finished anyway"


@pgq.task(name="obs.wait_async", queue="slow", pass_context=True)
async def wait_async(ctx: JobContext) -> None:
    """Sleeps for an hour unless cancelled (asyncio.CancelledError)."""
    note(ctx, "started")
    try:
        await asyncio.sleep(FOREVER)
    except asyncio.CancelledError:
        note(ctx, "CancelledError")
        raise
    note(ctx, "slept")
