"""Tasks for the process pool and sync-stop tests (``--app pool_tasks``).

Every task notes what it does in ``pool_events(job_id, attempt, pid, event, at)`` over an
autocommit connection of its own (in the child process that runs it, with ``--pool
process``), so the table is an independent witness of which process ran which attempt,
and when, in database time. The tests create the table (and ``pool_gates``).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import psycopg

import pgq
from pgq.runner import JobContext

NOW = pgq.Backoff(base=0.0, jitter=0.0)  # a retry comes due at once
LATER = pgq.Backoff(base=600.0, jitter=0.0)  # a retry stays queued while the test looks
STEP = 0.02  # seconds between a task's looks at its gate or its context
LEAK_BYTES = 30 * 1024 * 1024  # what pool.leak keeps per job

_local = threading.local()
_leaked: list[bytearray] = []


def _db() -> psycopg.Connection[Any]:
    conn: psycopg.Connection[Any] | None = getattr(_local, "conn", None)
    if conn is None or conn.closed:
        conn = psycopg.connect(
            os.environ["PGQ_DATABASE_URL"], autocommit=True, application_name="pool_events"
        )
        _local.conn = conn
    return conn


def note(ctx: JobContext, event: str) -> None:
    _db().execute(
        "INSERT INTO pool_events (job_id, attempt, pid, event, at) "
        "VALUES (%s, %s, %s, %s, clock_timestamp())",
        (ctx.id, ctx.attempt, os.getpid(), event),
    )


def gate_open(ctx: JobContext) -> bool:
    row = _db().execute("SELECT 1 FROM pool_gates WHERE job_id = %s", (ctx.id,)).fetchone()
    return row is not None


@pgq.task(name="pool.pid", pass_context=True)
def pid(ctx: JobContext) -> None:
    note(ctx, "ran")


@pgq.task(name="pool.noop")
def noop() -> None:
    """Nothing at all: the benchmark's job."""


@pgq.task(name="pool.spin", pass_context=True, timeout=1.0, max_attempts=2, backoff=NOW)
def spin(ctx: JobContext) -> None:
    """CPU-bound and deaf: never looks at its context, never returns."""
    note(ctx, "started")
    n = 0
    while True:
        n += 1


@pgq.task(name="pool.leak", pass_context=True)
def leak(ctx: JobContext) -> None:
    """Leaks LEAK_BYTES per job into a module global, as leaky task code does."""
    _leaked.append(bytearray(os.urandom(1)) * LEAK_BYTES)
    note(ctx, "ran")


@pgq.task(name="pool.die_once", pass_context=True, backoff=NOW)
def die_once(ctx: JobContext) -> None:
    """Attempt 1 waits forever (the test kills its process); later attempts return."""
    note(ctx, "started")
    if ctx.attempt == 1:
        while True:
            time.sleep(STEP)


@pgq.task(name="pool.until_gate", pass_context=True)
def until_gate(ctx: JobContext) -> None:
    """Ignores cancels until the test opens its gate, noting what it saw."""
    _until_gate(ctx)


@pgq.task(name="pool.until_gate_timeout", pass_context=True, timeout=1.0, backoff=LATER)
def until_gate_timeout(ctx: JobContext) -> None:
    """Ignores its timeout until the test opens its gate, noting what it saw."""
    _until_gate(ctx)


def _until_gate(ctx: JobContext) -> None:
    note(ctx, "started")
    seen = None
    while not gate_open(ctx):
        if ctx.stop_reason != seen:
            seen = ctx.stop_reason
            note(ctx, f"saw {seen}")
        time.sleep(STEP)
    note(ctx, "returning")


@pgq.task(name="pool.until_stop", pass_context=True)
def until_stop(ctx: JobContext) -> None:
    """Runs until asked to stop, notes why, and returns."""
    note(ctx, "started")
    while not ctx.should_stop():
        time.sleep(STEP)
    note(ctx, f"stopped: {ctx.stop_reason}")


@pgq.task(name="pool.forever", pass_context=True)
def forever(ctx: JobContext) -> None:
    """Deaf to everything, forever: only a signal ends it."""
    note(ctx, "started")
    while True:
        time.sleep(STEP)


@pgq.task(name="pool.deaf_to_sigterm", pass_context=True, timeout=1.0, max_attempts=1)
def deaf_to_sigterm(ctx: JobContext) -> None:
    """Ignores SIGTERM itself, so only the SIGKILL that follows can end it."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    note(ctx, "started")
    while True:
        time.sleep(STEP)
