"""Two real `pgq work` processes share 5,000 jobs: every job runs exactly once.

Each task writes a ledger row (job id, worker pid, database time) over its own connection,
so the ledger is a witness independent of pgq's own bookkeeping. Both workers are up and
LISTENing before the jobs are committed in one transaction, so both get a share.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from worker_procs import WorkerProcess, scalar, wait_for

import pgq

JOBS = 5_000
DRAIN_TIMEOUT = 120.0  # seconds the two workers get to run every job (bounded, not timed)
LISTENERS = """
    SELECT count(*) FROM pg_stat_activity
    WHERE datname = current_database() AND application_name = 'pgq listener'
      AND query LIKE '%%LISTEN pgq%%'
"""


@pytest.mark.slow
def test_two_workers_run_every_job_exactly_once(
    db_url: str, ledger: psycopg.Connection[Any], start_worker: Callable[..., WorkerProcess]
) -> None:
    workers = [start_worker("--concurrency", "8", "--grace", "10") for _ in range(2)]
    for worker in workers:
        worker.wait_started()
    wait_for(lambda: scalar(ledger, LISTENERS) == 2, what="both workers LISTENing")

    # Half sync, half async tasks, committed together: one NOTIFY wakes both workers.
    specs = [pgq.JobSpec("acc.record" if n % 2 else "acc.record_async") for n in range(JOBS)]
    with psycopg.connect(db_url) as tx:
        ids = pgq.enqueue_many(tx, specs)
    assert len(ids) == JOBS

    wait_for(
        lambda: scalar(
            ledger, "SELECT count(*) = 0 FROM pgq.jobs WHERE state IN ('queued', 'running')"
        ),
        DRAIN_TIMEOUT,
        "every job finished",
    )
    for worker in workers:
        worker.signal(signal.SIGTERM)
    for worker in workers:
        assert worker.wait_exit(30) == 0, worker.log()

    assert scalar(ledger, "SELECT count(*) FROM ledger") == JOBS
    assert scalar(ledger, "SELECT count(DISTINCT job_id) FROM ledger") == JOBS
    ran = {r[0] for r in ledger.execute("SELECT job_id FROM ledger").fetchall()}
    assert ran == set(ids)
    per_pid = dict(ledger.execute("SELECT pid, count(*) FROM ledger GROUP BY pid").fetchall())
    assert set(per_pid) == {w.pid for w in workers}, "both workers did work"
    states = ledger.execute(
        "SELECT state::text, attempts, count(*) FROM pgq.jobs GROUP BY 1, 2"
    ).fetchall()
    assert states == [("succeeded", 1, JOBS)]
