"""Tasks for the flow-control process tests: each attempt writes its start and its end to
``flow_ledger`` in database time (``clock_timestamp()``), over the task thread's own
connection, never through pgq. A start row is written after the claim and an end row
before the outcome is written, so each ledger interval lies inside the time the job held
its slot: an overlap the ledger shows really happened.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import psycopg

import pgq
from pgq.runner import JobContext

QUEUE = "flow"
_local = threading.local()


def _ledger() -> psycopg.Connection[Any]:
    conn = getattr(_local, "conn", None)
    if conn is None or conn.closed:
        conn = psycopg.connect(
            os.environ["PGQ_DATABASE_URL"], autocommit=True, application_name="ledger"
        )
        _local.conn = conn
    return conn


def _write(ctx: JobContext, kind: str, key: str, seq: int) -> None:
    _ledger().execute(
        "INSERT INTO flow_ledger (job_id, attempt, key, seq, pid, kind, at) "
        "VALUES (%s, %s, %s, %s, %s, %s, clock_timestamp())",
        (ctx.id, ctx.attempt, key, seq, os.getpid(), kind),
    )


def _run(ctx: JobContext, key: str, seq: int, seconds: float) -> None:
    _write(ctx, "start", key, seq)
    time.sleep(seconds)
    _write(ctx, "end", key, seq)


@pgq.task(
    name="flow.two_per_key",
    queue=QUEUE,
    pass_context=True,
    concurrency_limit=2,
    concurrency_key=lambda args: f"two:{args['key']}",
)
def two_per_key(ctx: JobContext, key: int, seq: int, seconds: float = 0.01) -> None:
    _run(ctx, f"two:{key}", seq, seconds)


@pgq.task(
    name="flow.in_order",
    queue=QUEUE,
    pass_context=True,
    concurrency_limit=1,
    concurrency_key=lambda args: f"one:{args['key']}",
)
def in_order(ctx: JobContext, key: int, seq: int, seconds: float = 0.005) -> None:
    _run(ctx, f"one:{key}", seq, seconds)


@pgq.task(
    name="flow.hangs_first",
    queue=QUEUE,
    pass_context=True,
    concurrency_limit=1,
    concurrency_key="hangs",
)
def hangs_first(ctx: JobContext, seq: int) -> None:
    """The first attempt of seq 0 never returns (its worker is killed); the rest run."""
    _write(ctx, "start", "hangs", seq)
    while seq == 0 and ctx.attempt == 1:
        time.sleep(0.05)
    _write(ctx, "end", "hangs", seq)


@pgq.task(name="flow.plain", queue="other", pass_context=True)
def plain(ctx: JobContext, seq: int) -> None:
    _run(ctx, "plain", seq, 0.0)


@pgq.task(name="flow.rated", queue=QUEUE, pass_context=True, rate_limit="20/s",
          rate_key="api")  # fmt: skip
def rated(ctx: JobContext, seq: int) -> None:
    _run(ctx, "api", seq, 0.0)


# The no-churn tests (test_flow_no_churn.py): every job of queue "held" waits on a limit
# that has no room. These tasks write nothing to the database, so whatever transactions the
# test database counts while they wait are the worker's own.
HELD = "held"


@pgq.task(name="flow.holds_slot", queue=HELD, pass_context=True, concurrency_limit=1,
          concurrency_key="held")  # fmt: skip
def holds_slot(ctx: JobContext, seq: int, seconds: float = 60.0) -> None:
    """Holds the key's only slot until the worker stops (or ``seconds`` pass)."""
    deadline = time.monotonic() + seconds
    while not ctx.should_stop() and time.monotonic() < deadline:
        time.sleep(0.05)


@pgq.task(name="flow.scarce", queue=HELD, rate_limit="2/h", rate_key="scarce")
def scarce(seq: int) -> None:
    """Returns at once; its key admits two starts an hour, so the rest of its jobs wait."""
