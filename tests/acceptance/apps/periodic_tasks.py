"""A one-second schedule for the acceptance tests: each job records the tick it runs for.

``tick_ledger`` is written over the task's own connection, never through pgq, so it is an
independent witness of which ticks ran (at least once each: a worker killed mid-job means
its job runs again elsewhere).
"""

from __future__ import annotations

import os
import threading
from typing import Any

import psycopg

import pgq

_local = threading.local()


def _ledger() -> psycopg.Connection[Any]:
    conn = getattr(_local, "conn", None)
    if conn is None or conn.closed:
        conn = psycopg.connect(
            os.environ["PGQ_DATABASE_URL"], autocommit=True, application_name="ledger"
        )
        _local.conn = conn
    return conn


# overlap="allow": every tick must make a job, even when the previous one waits behind a
# worker that was just killed; catch_up=3: a pass delayed by a loaded machine still
# enqueues the ticks it missed.
@pgq.periodic(every=1, name="every-second", overlap="allow", catch_up=3)
@pgq.task(name="periodic.tick", pass_context=True)
def tick(ctx: pgq.JobContext) -> None:
    _ledger().execute(
        "INSERT INTO tick_ledger (tick, job_id, pid) VALUES (%s, %s, %s)",
        (ctx.job.run_at, ctx.id, os.getpid()),
    )
