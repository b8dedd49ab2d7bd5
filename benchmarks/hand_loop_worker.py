"""The latency scenario's yardstick: the fewest hops a LISTEN-woken worker can take with
pgq's own statements.

One thread and blocking psycopg, no event loop and no worker threads: LISTEN on one
connection; on each notification claim with pgq's claim statement (and the worker's
generic plan) on a second, run the latency task's ledger insert inline on a third, as the
pgq task does over its own connection, then write the outcome with pgq's finish statement.
What ``pgq work`` adds on top (its event loop, the hand-off to a thread, leases,
heartbeats, batching outcomes) is the difference between the two figures, measured in
one run.

Run by the latency scenario as ``python -m benchmarks.hand_loop_worker`` with
``$PGQ_DATABASE_URL`` set; it runs until it is sent SIGTERM.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

import psycopg

from benchmarks.apps.ledger import RECORD_START
from benchmarks.db import sql
from benchmarks.scenarios.drain import all_succeeded
from pgq import store
from pgq.worker import CONCURRENCY_DEFAULT

POLL_INTERVAL = 1.0  # seconds: a look at the table without a notification, as the worker's


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    url = os.environ["PGQ_DATABASE_URL"]
    with (
        psycopg.connect(url, autocommit=True) as listener,
        psycopg.connect(url, autocommit=True) as claimer,
        psycopg.connect(url, autocommit=True) as ledger,
    ):
        store.fetch(claimer, store.use_generic_plans())
        store.fetch(listener, store.listen())
        while True:
            run_due(claimer, ledger)
            for _ in listener.notifies(timeout=POLL_INTERVAL, stop_after=1):
                pass


def run_due(claimer: psycopg.Connection[Any], ledger: psycopg.Connection[Any]) -> None:
    """Claim, run and finish jobs until none is due."""
    claim = store.claim_jobs(
        queues=["default"],
        tasks=[RECORD_START],
        leases=[30.0],
        limit=CONCURRENCY_DEFAULT,
        worker_id="hand-loop",
    )
    while rows := store.fetch(claimer, claim):
        for row in rows:
            ledger.execute(sql("ledger_insert"), {"job_id": row[0]})
        store.fetch(claimer, all_succeeded(rows))


if __name__ == "__main__":
    main()
