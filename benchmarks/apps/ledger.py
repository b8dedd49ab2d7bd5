"""The latency scenario's pgq task: record on the server's clock when it started.

It writes over a connection of its own (opened by the first, warm-up job), so the time it
records is the task's start, not a completion the worker batches. The URL comes from
``$PGQ_BENCH_LEDGER_URL``.
"""

import os
import threading
from typing import Any

import psycopg

import pgq
from benchmarks.db import sql

RECORD_START = "bench.record_start"
LEDGER_URL_ENV = "PGQ_BENCH_LEDGER_URL"

_lock = threading.Lock()
_conn: list[psycopg.Connection[Any]] = []


@pgq.task(name=RECORD_START, pass_context=True)
def record_start(ctx: Any, **_args: Any) -> None:
    with _lock:
        if not _conn:
            _conn.append(psycopg.connect(os.environ[LEDGER_URL_ENV], autocommit=True))
        _conn[0].execute(sql("ledger_insert"), {"job_id": ctx.id})
