"""Results and the task's own transaction with real `pgq work` processes: pgq.wait from
another process, writes that commit only with the success, and a worker killed (-9)
inside a task's open transaction, which leaves nothing behind.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from worker_procs import WorkerProcess, job, scalar, wait_for

import pgq

WORKER_ARGS = ("--app", "results_tasks", "--concurrency", "4", "--grace", "5")
WAIT_TIMEOUT = 60.0


@pytest.fixture
def tx_ledger(conn: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    conn.execute("CREATE TABLE IF NOT EXISTS process_tx_ledger (key text, attempt int, pid int)")
    conn.execute("TRUNCATE process_tx_ledger")
    return conn


def ledger_rows(conn: psycopg.Connection[Any], key: str) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT attempt, pid FROM process_tx_ledger WHERE key = %s ORDER BY attempt", (key,)
    ).fetchall()


def children(conn: psycopg.Connection[Any], key: str) -> list[int]:
    rows = conn.execute(
        "SELECT id FROM pgq.jobs WHERE task = 'res.child' AND args->>'key' = %s", (key,)
    )
    return [r[0] for r in rows]


@pytest.mark.parametrize("pool", ["thread", "process"])
def test_wait_returns_results_and_a_raise_leaves_no_writes(
    db_url: str,
    tx_ledger: psycopg.Connection[Any],
    start_worker: Callable[..., WorkerProcess],
    pool: str,
) -> None:
    worker = start_worker(*WORKER_ARGS, "--pool", pool)
    worker.wait_started()
    with psycopg.connect(db_url) as tx:
        plain = pgq.enqueue(tx, "res.doubles", {"n": 21})
        written = pgq.enqueue(tx, "res.tx_write", {"key": "ok"})
        raised = pgq.enqueue(tx, "res.tx_raise", {"key": "bad"}, max_attempts=1)

    assert pgq.wait(db_url, plain, timeout=WAIT_TIMEOUT) == {"n": 42}
    outcome = pgq.wait(db_url, written, timeout=WAIT_TIMEOUT)
    writer = outcome["pid"]  # the worker's, or with the process pool one of its children
    assert outcome == {"key": "ok", "pid": writer}
    assert (writer == worker.pid) == (pool == "thread")
    with pytest.raises(pgq.JobFailed, match="bad: raised after writing"):
        pgq.wait(db_url, raised, timeout=WAIT_TIMEOUT)

    assert ledger_rows(tx_ledger, "ok") == [(1, writer)]
    (child,) = children(tx_ledger, "ok")
    assert pgq.wait(db_url, child, timeout=WAIT_TIMEOUT) == "child of ok"
    assert ledger_rows(tx_ledger, "bad") == []
    assert children(tx_ledger, "bad") == []


def test_kill_9_inside_a_tasks_transaction_commits_nothing_of_it(
    db_url: str, tx_ledger: psycopg.Connection[Any], start_worker: Callable[..., WorkerProcess]
) -> None:
    doomed = start_worker(*WORKER_ARGS)
    doomed.wait_started()
    job_id = pgq.enqueue(tx_ledger, "res.tx_stuck", {"key": "stuck"})
    # The first attempt has written inside its transaction and now waits there.
    wait_for(
        lambda: scalar(
            tx_ledger,
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgq task' "
            "AND state = 'idle in transaction' AND datname = current_database()",
        ),
        what="the task's transaction open",
    )
    assert ledger_rows(tx_ledger, "stuck") == []  # not committed, so not visible

    doomed.signal(signal.SIGKILL)
    doomed.wait_exit(10)
    survivor = start_worker(*WORKER_ARGS)  # its reaper takes the job back once the lease lapses
    survivor.wait_started()

    assert pgq.wait(db_url, job_id, timeout=WAIT_TIMEOUT) == 2
    assert ledger_rows(tx_ledger, "stuck") == [(2, survivor.pid)]
    assert len(children(tx_ledger, "stuck")) == 1
    row = job(tx_ledger, job_id)
    assert (row["state"], row["attempts"]) == ("succeeded", 2)
    assert [e["kind"] for e in row["errors"]] == ["lease_expired"]
