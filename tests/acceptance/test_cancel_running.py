"""`pgq cancel ID` against a real `pgq work`: running async and sync jobs, and queued ones.

A running job cannot be stopped from outside its worker: the command sets
``cancel_requested``, and the worker sees it at its next heartbeat (every lease/3 seconds;
``--lease 3`` makes that every second). An async task is cancelled (CancelledError), a sync
task sees ``ctx.should_stop()``; either way the job ends ``cancelled``, whatever the task
returns afterwards. The tasks (``apps/observe_tasks.py``) note what they saw.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from observe import APP, create_events_table, events_of, free_port, scrape, states, value
from worker_procs import WorkerProcess, job, run_pgq, wait_for

import pgq


@pytest.fixture
def start(
    start_worker: Callable[..., WorkerProcess], conn: psycopg.Connection[Any]
) -> Callable[..., WorkerProcess]:
    create_events_table(conn)

    def run(*args: str) -> WorkerProcess:
        worker = start_worker("--app", APP, "-q", "slow", "-q", "default", "--lease", "3", *args)
        worker.wait_started()
        return worker

    return run


def cancel(db_url: str, tmp_path: Path, *ids: int) -> dict[str, Any]:
    """Run `pgq cancel IDS --json` and return what it printed."""
    result = run_pgq(["cancel", *map(str, ids), "--json"], db_url, tmp_path)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def wait_started(conn: psycopg.Connection[Any], job_id: int) -> None:
    wait_for(lambda: events_of(conn, job_id) == ["started"], what=f"job {job_id} started")


def wait_state(conn: psycopg.Connection[Any], job_id: int, state: str) -> dict[str, Any]:
    wait_for(lambda: states(conn, [job_id]) == [state], what=f"job {job_id} {state}")
    return job(conn, job_id)


def assert_cancelled_once(row: dict[str, Any]) -> None:
    assert row["state"] == "cancelled"
    assert row["finished_at"] is not None
    assert (row["attempts"], row["errors"], row["cancel_requested"]) == (1, [], False)
    assert row["lease_expires_at"] is None


def test_a_running_async_job_is_cancelled_at_the_next_heartbeat(
    start: Callable[..., WorkerProcess], conn: psycopg.Connection[Any], db_url: str, tmp_path: Path
) -> None:
    port = free_port()
    worker = start("--metrics-port", str(port))
    running = pgq.enqueue(conn, "obs.wait_async", queue="slow")  # sleeps an hour
    wait_started(conn, running)

    said = cancel(db_url, tmp_path, running)

    assert said == {"cancelled": [], "cancel_requested": [running], "skipped": []}
    assert_cancelled_once(wait_state(conn, running, "cancelled"))
    assert events_of(conn, running) == ["started", "CancelledError"]
    labels = {"queue": "slow", "task": "obs.wait_async"}
    samples = scrape(port)
    assert value(samples, "pgq_jobs_cancelled_total", **labels) == 1
    assert value(samples, "pgq_jobs_retried_total", **labels) == 0
    assert value(samples, "pgq_jobs_failed_total", **labels) == 0
    # The worker goes on with other jobs.
    after = pgq.enqueue(conn, "obs.ok")
    wait_state(conn, after, "succeeded")
    assert worker.proc.poll() is None


def test_a_running_sync_job_sees_should_stop_and_ends_cancelled_whatever_it_returns(
    start: Callable[..., WorkerProcess], conn: psycopg.Connection[Any], db_url: str, tmp_path: Path
) -> None:
    worker = start()
    running = pgq.enqueue(conn, "obs.wait_sync", queue="slow")  # loops until should_stop()
    wait_started(conn, running)

    said = cancel(db_url, tmp_path, running)

    assert said == {"cancelled": [], "cancel_requested": [running], "skipped": []}
    assert_cancelled_once(wait_state(conn, running, "cancelled"))
    # ctx.cancelled was true, and the task's normal return did not make it a success.
    assert events_of(conn, running) == ["started", "stopped: cancelled"]
    after = pgq.enqueue(conn, "obs.ok")
    wait_state(conn, after, "succeeded")
    assert worker.proc.poll() is None


def test_a_queued_job_that_is_cancelled_never_runs(
    start: Callable[..., WorkerProcess], conn: psycopg.Connection[Any], db_url: str, tmp_path: Path
) -> None:
    start("--concurrency", "1")
    blocker = pgq.enqueue(conn, "obs.wait_sync", queue="slow")  # holds the only slot
    wait_started(conn, blocker)
    target = pgq.enqueue(conn, "obs.ok")  # due now, waiting for the slot
    later = pgq.enqueue(conn, "obs.ok")  # due after the target: claimed after it

    said = cancel(db_url, tmp_path, target)
    assert said == {"cancelled": [target], "cancel_requested": [], "skipped": []}
    cancel(db_url, tmp_path, blocker)  # frees the slot

    wait_state(conn, later, "succeeded")
    row = job(conn, target)
    assert (row["state"], row["attempts"], row["worker_id"]) == ("cancelled", 0, None)
    assert events_of(conn, target) == []
    assert events_of(conn, later) == ["ran"]
