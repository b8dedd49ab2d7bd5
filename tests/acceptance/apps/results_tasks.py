"""Tasks for the results and task-transaction process tests (``--app results_tasks``).

Each writes to ``process_tx_ledger(key, attempt, pid)`` through ``ctx.transaction()``, so a row
there exists exactly when the attempt's transaction, and with it the job's success,
committed. The first attempt of ``res.tx_stuck`` stops inside its open transaction,
for the test to kill its worker there.
"""

from __future__ import annotations

import os
import time

import pgq
from pgq.runner import JobContext

STUCK_POLL = 0.05  # seconds between looks at should_stop while stuck


def _write(ctx: JobContext, key: str) -> None:
    tx = ctx.transaction()
    tx.execute(
        "INSERT INTO process_tx_ledger (key, attempt, pid) VALUES (%s, %s, %s)",
        (key, ctx.attempt, os.getpid()),
    )
    pgq.enqueue(tx, "res.child", {"key": key})


@pgq.task(name="res.child")
def child(key: str) -> str:
    return f"child of {key}"


@pgq.task(name="res.doubles")
def doubles(n: int) -> dict[str, int]:
    return {"n": n * 2}


@pgq.task(name="res.tx_write", pass_context=True)
def tx_write(ctx: JobContext, key: str) -> dict[str, object]:
    _write(ctx, key)
    return {"key": key, "pid": os.getpid()}


@pgq.task(name="res.tx_raise", pass_context=True, max_attempts=1)
def tx_raise(ctx: JobContext, key: str) -> None:
    _write(ctx, key)
    raise RuntimeError(f"{key}: raised after writing")


@pgq.task(name="res.tx_stuck", pass_context=True, lease=2.0, backoff=pgq.Backoff(base=0.01))
def tx_stuck(ctx: JobContext, key: str) -> int:
    _write(ctx, key)
    while ctx.attempt == 1:  # killed in here, its transaction open
        time.sleep(STUCK_POLL)
    return ctx.attempt
