"""Tasks for the reaper's process tests: each records every attempt in ``attempt_ledger``.

A worker imports this with ``--app reaper_tasks``. The ledger row (job id, attempt, worker
pid, database time) is written over the task thread's own autocommit connection, never
through pgq, and before the task does anything else: a row means "this attempt started
in this process", whatever happened to the process afterwards. The ledger connection is
named ``ledger``, not ``pgq ...``, so tests that terminate pgq's backends leave it alone.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from typing import Any

import psycopg

import pgq
from pgq.runner import JobContext

LEDGER_RETRY_FOR = 30.0  # seconds a ledger write keeps trying through a database restart
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


def _execute(query: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    """Run ``query`` on this thread's ledger connection, reconnecting through an outage.

    The witness must not lose rows when the database restarts under it; a write that still
    fails after LEDGER_RETRY_FOR raises, and the attempt fails like any task error.
    """
    deadline = time.monotonic() + LEDGER_RETRY_FOR
    while True:
        try:
            cur = _ledger().execute(query, params)
            return cur.fetchall() if cur.description else []
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            conn = getattr(_local, "conn", None)
            if conn is not None:
                conn.close()
            time.sleep(0.2)


def record(ctx: JobContext) -> None:
    _execute(
        "INSERT INTO attempt_ledger (job_id, attempt, pid, at) VALUES (%s, %s, %s, now())",
        (ctx.id, ctx.attempt, os.getpid()),
    )


@pgq.task(name="rt.sleep", pass_context=True)
def sleep(ctx: JobContext, seconds: float) -> None:
    """Sleeps ``seconds`` in small steps and never looks at ctx.should_stop()."""
    record(ctx)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(min(0.05, seconds))


@pgq.task(name="rt.sleep_async", pass_context=True)
async def sleep_async(ctx: JobContext, seconds: float) -> None:
    """The same on the worker's event loop (the ledger write blocks it briefly)."""
    record(ctx)
    await asyncio.sleep(seconds)


@pgq.task(name="rt.gated", pass_context=True)
def gated(ctx: JobContext) -> None:
    """Attempt 1 returns only once the test inserts the job's id into ``gates``; later
    attempts return at once. Never looks at ctx.should_stop(), like a task stuck in I/O."""
    record(ctx)
    while ctx.attempt == 1 and not _execute("SELECT 1 FROM gates WHERE job_id = %s", (ctx.id,)):
        time.sleep(GATE_POLL)


# So long that no heartbeat is due while the test runs: after SIGCONT the worker's first
# move is then always to write the finished attempt's outcome (with a short lease an
# overdue heartbeat could notice the lost lease first and turn it into a release).
STOP_SELF_LEASE = 600.0


@pgq.task(name="rt.stop_self", pass_context=True, lease=STOP_SELF_LEASE)
def stop_self(ctx: JobContext) -> None:
    """Attempt 1 freezes its whole process (SIGSTOP) right before it returns: the worker
    resumes (SIGCONT) with a finished attempt whose outcome it has not written yet."""
    record(ctx)
    if ctx.attempt == 1:
        os.kill(os.getpid(), signal.SIGSTOP)


@pgq.task(name="rt.poison", pass_context=True)
def poison(ctx: JobContext, after: float = 0.0) -> None:
    """Kills its own worker process on every attempt, ``after`` seconds in, as a segfault
    or the OOM killer would."""
    record(ctx)
    time.sleep(after)
    os._exit(1)
