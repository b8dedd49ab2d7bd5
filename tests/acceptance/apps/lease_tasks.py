"""Tasks for the lease-overlap tests (``--app lease_tasks``): each attempt writes its span.

An attempt inserts ``(job_id, attempt, pid, started_at)`` into ``attempt_spans`` as it
starts and sets ``ended_at`` (and the stop reason it saw) as it returns, over the task
thread's own autocommit connection and in database time, never through pgq: the table is
an independent witness of when each attempt of each job really ran. The tests create it.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import psycopg

import pgq

LEASES = (1, 2, 3, 5, 30)  # seconds: one task per lease, named lt.sleep_lease_<n>
GATE_POLL = 0.05  # seconds between looks at the gate table

_local = threading.local()


def _ledger() -> psycopg.Connection[Any]:
    conn = getattr(_local, "conn", None)
    if conn is None or conn.closed:
        conn = psycopg.connect(
            os.environ["PGQ_DATABASE_URL"], autocommit=True, application_name="ledger"
        )
        _local.conn = conn
    return conn


def _started(ctx: pgq.JobContext) -> int:
    row = (
        _ledger()
        .execute(
            "INSERT INTO attempt_spans (job_id, attempt, pid, started_at) "
            "VALUES (%s, %s, %s, clock_timestamp()) RETURNING span",
            (ctx.id, ctx.attempt, os.getpid()),
        )
        .fetchone()
    )
    assert row is not None
    return int(row[0])


def _ended(span: int, ctx: pgq.JobContext) -> None:
    _ledger().execute(
        "UPDATE attempt_spans SET ended_at = clock_timestamp(), stop_reason = %s WHERE span = %s",
        (ctx.stop_reason, span),
    )


def _sleep(ctx: pgq.JobContext, seconds: float) -> None:
    """Sleeps ``seconds`` and never looks at ctx.should_stop(), like code stuck in I/O."""
    span = _started(ctx)
    time.sleep(seconds)
    _ended(span, ctx)


for _lease in LEASES:
    pgq.task(name=f"lt.sleep_lease_{_lease}", lease=_lease, pass_context=True)(_sleep)


@pgq.task(name="lt.gated", pass_context=True)
def gated(ctx: pgq.JobContext) -> None:
    """Attempt 1 returns only once the test inserts the job's id into ``gates``; later
    attempts return at once. Never looks at ctx.should_stop()."""
    span = _started(ctx)
    while (
        ctx.attempt == 1
        and not _ledger().execute("SELECT 1 FROM gates WHERE job_id = %s", (ctx.id,)).fetchone()
    ):
        time.sleep(GATE_POLL)
    _ended(span, ctx)
