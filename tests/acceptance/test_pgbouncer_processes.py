"""Real `pgq` processes through a real PgBouncer in transaction pooling mode.

The worker and the commands get the PgBouncer URL (one server connection per database,
shared by all of them, see tests/conftest.py); the tasks' ledger and the test's own
connection go straight to PostgreSQL, so they neither lean on the pool nor hide a leak.
After each test the pooled server connection must carry nothing: no prepared statement,
session setting, LISTEN or lock that one client left for the next.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from worker_procs import WorkerProcess, job, run_pgq, scalar, wait_for

import pgq
from pgq import devbouncer, migrate

State = Callable[[], devbouncer.SessionState]
POOLED = {"prepare_threshold": None}
LISTENING = """
    SELECT count(*) FROM pg_stat_activity
    WHERE datname = current_database() AND query LIKE '%%LISTEN pgq%%'
      AND pid <> pg_backend_pid()
"""


@pytest.fixture
def start_pooled(
    start_worker: Callable[..., WorkerProcess], bouncer_url: str, db_url: str
) -> Callable[..., WorkerProcess]:
    """`pgq work --pgbouncer ARGS` through PgBouncer; its tasks' ledger connects directly."""

    def start(*args: str) -> WorkerProcess:
        direct_ledger = {"PGQ_DATABASE_URL": db_url}
        worker = start_worker("--pgbouncer", *args, url=bouncer_url, env=direct_ledger)
        worker.wait_started()
        return worker

    return start


def enqueue_pooled(bouncer_url: str, task: str, n: int = 1, **args: Any) -> list[int]:
    """Enqueue ``n`` jobs through PgBouncer, one transaction each, as a pooled app would."""
    with psycopg.connect(bouncer_url, **POOLED) as tx:
        ids = []
        for _ in range(n):
            ids.append(pgq.enqueue(tx, task, args))
            tx.commit()
    return ids


def stop(worker: WorkerProcess) -> None:
    worker.signal(signal.SIGTERM)
    assert worker.wait_exit(30) == 0, worker.log()


def test_pgq_work_through_pgbouncer_polls_and_drains(
    start_pooled: Callable[..., WorkerProcess],
    ledger: psycopg.Connection[Any],
    bouncer_url: str,
    pool_state: State,
) -> None:
    worker = start_pooled()
    assert "PgBouncer mode, no LISTEN: polling every 0.25s" in worker.log()
    ids = enqueue_pooled(bouncer_url, "acc.record", 20)
    count = "SELECT count(DISTINCT job_id) FROM ledger"
    wait_for(lambda: scalar(ledger, count) == 20, what="20 jobs run")
    assert scalar(ledger, LISTENING) == 0
    stop(worker)
    assert scalar(ledger, "SELECT count(*) FROM ledger") == 20  # each once
    assert {job(ledger, i)["state"] for i in ids} == {"succeeded"}
    assert pool_state().clean, pool_state()


def test_pgq_work_through_pgbouncer_listens_on_the_direct_url(
    start_pooled: Callable[..., WorkerProcess],
    ledger: psycopg.Connection[Any],
    db_url: str,
    bouncer_url: str,
    pool_state: State,
) -> None:
    # A 30 s poll: a job run within seconds was woken by the NOTIFY its enqueue sent
    # through PgBouncer, heard on the direct connection.
    worker = start_pooled("--direct-url", db_url, "--poll-interval", "30")
    assert "PgBouncer mode, LISTEN on postgresql://" in worker.log()
    wait_for(lambda: scalar(ledger, LISTENING) == 1, what="the direct LISTEN")
    [job_id] = enqueue_pooled(bouncer_url, "acc.record")
    wait_for(lambda: job(ledger, job_id)["state"] == "succeeded", timeout=10, what="a wake-up")
    stop(worker)
    assert pool_state().clean, pool_state()


def test_reaper_through_pgbouncer_recovers_a_killed_workers_job(
    start_pooled: Callable[..., WorkerProcess],
    attempt_ledger: psycopg.Connection[Any],
    bouncer_url: str,
    pool_state: State,
) -> None:
    conn = attempt_ledger
    first = start_pooled("--app", "reaper_tasks", "--no-reaper", "--lease", "2")
    [job_id] = enqueue_pooled(bouncer_url, "rt.gated")  # attempt 1 waits for a gate
    wait_for(lambda: job(conn, job_id)["state"] == "running", what="attempt 1 running")
    held_until = job(conn, job_id)["lease_expires_at"]
    # Heartbeats through the pool keep the lease alive while the task runs.
    wait_for(lambda: job(conn, job_id)["lease_expires_at"] > held_until, what="a heartbeat")
    first.signal(signal.SIGKILL)
    assert first.wait_exit(10) == -signal.SIGKILL
    # Once the lease lapsed, the second worker's reaper thread takes it back in its first
    # pass, at start-up, rather than 5 s later.
    lapsed = "SELECT lease_expires_at < now() FROM pgq.jobs WHERE id = %s"
    wait_for(lambda: scalar(conn, lapsed, (job_id,)), what="the lease to lapse")
    second = start_pooled("--app", "reaper_tasks", "--lease", "2")
    wait_for(lambda: job(conn, job_id)["state"] == "succeeded", what="the job recovered")
    stop(second)
    row = job(conn, job_id)
    assert row["attempts"] == 2
    assert [e["kind"] for e in row["errors"]] == ["lease_expired"]
    pids = conn.execute(
        "SELECT pid FROM attempt_ledger WHERE job_id = %s ORDER BY attempt", (job_id,)
    ).fetchall()
    assert [p for (p,) in pids] == [first.pid, second.pid]
    assert pool_state().clean, pool_state()


def test_pgq_cancel_through_pgbouncer_stops_a_running_job(
    start_pooled: Callable[..., WorkerProcess],
    ledger: psycopg.Connection[Any],
    bouncer_url: str,
    tmp_path: Path,
    pool_state: State,
) -> None:
    worker = start_pooled("--lease", "3")  # a heartbeat every second sees the request
    [running] = enqueue_pooled(bouncer_url, "acc.sleep_async", seconds=60)
    wait_for(lambda: job(ledger, running)["state"] == "running", what="the job running")
    [waiting] = enqueue_pooled(bouncer_url, "acc.record")
    later = "UPDATE pgq.jobs SET run_at = now() + interval '1 hour' WHERE id = %s"
    ledger.execute(later, (waiting,))
    result = run_pgq(
        ["cancel", str(running), str(waiting), "--json"],
        bouncer_url,
        tmp_path,
        env={"PGQ_PGBOUNCER": "1"},
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["cancelled"] == [waiting]
    assert json.loads(result.stdout)["cancel_requested"] == [running]
    wait_for(lambda: job(ledger, running)["state"] == "cancelled", what="the running job cancelled")
    stop(worker)
    assert pool_state().clean, pool_state()


def test_pgq_prune_and_reap_through_pgbouncer(
    ledger: psycopg.Connection[Any], bouncer_url: str, tmp_path: Path, pool_state: State
) -> None:
    enqueue_pooled(bouncer_url, "acc.record", 5)
    ledger.execute(
        "UPDATE pgq.jobs SET state = 'succeeded', finished_at = now() - interval '2 days'"
    )
    pooled = {"PGQ_PGBOUNCER": "1"}
    pruned = run_pgq(["prune", "--batch-size", "1", "--json"], bouncer_url, tmp_path, env=pooled)
    assert pruned.returncode == 0, pruned.stderr
    assert json.loads(pruned.stdout)["deleted"]["succeeded"] == 5  # in 6 transactions
    reaped = run_pgq(["reap", "--once", "--json"], bouncer_url, tmp_path, env=pooled)
    assert reaped.returncode == 0, reaped.stderr
    assert scalar(ledger, "SELECT count(*) FROM pgq.jobs") == 0
    assert pool_state().clean, pool_state()


def test_pgq_migrate_goes_to_the_direct_url_when_there_is_one(
    empty_db_url: str, pgbouncer: devbouncer.PgBouncer, tmp_path: Path
) -> None:
    # Through PgBouncer itself it works too: tests/integration/test_pgbouncer.py.
    pooled_url = pgbouncer.url(empty_db_url)
    env = {"PGQ_PGBOUNCER": "1", "PGQ_DIRECT_URL": empty_db_url}
    done = run_pgq(["migrate"], pooled_url, tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert f"created (version {migrate.SCHEMA_VERSION}) on {empty_db_url}" in done.stdout
