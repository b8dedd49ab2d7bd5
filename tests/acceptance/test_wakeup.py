"""A LISTENing worker: woken by NOTIFY, not by its poll; survives losing its connections.

The worker polls only every 30 s here, so a job picked up within a few seconds was picked
up because of a notification (or the poll the listener does after reconnecting). The
bounds are generous: this checks behaviour, not speed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from worker_procs import WorkerProcess, job, scalar, wait_for

import pgq

POLL = "30"
PICKUP_BOUND = 10.0  # seconds: well under the 30 s poll interval
IDLE_WINDOW = 3.0  # seconds over which an idle worker's CPU time is measured
IDLE_CPU_MAX = 1.0  # seconds of CPU an idle worker may use in that window

# Backends of this test's database that belong to the worker (it names its connections
# "pgq claim", "pgq writer", "pgq listener"); other databases on the server are left alone.
WORKER_BACKENDS = """
    SELECT pid, application_name FROM pg_stat_activity
    WHERE datname = current_database() AND application_name LIKE 'pgq%%'
      AND pid <> pg_backend_pid()
"""
LISTENING = """
    SELECT pid FROM pg_stat_activity
    WHERE datname = current_database() AND application_name = 'pgq listener'
      AND query LIKE '%%LISTEN pgq%%'
"""


def listener_pid(conn: psycopg.Connection[Any]) -> int | None:
    rows = conn.execute(LISTENING).fetchall()
    return rows[0][0] if len(rows) == 1 else None


def enqueue_committed(db_url: str) -> int:
    """Enqueue one job in a transaction of its own, committed on return."""
    with psycopg.connect(db_url) as tx:
        job_id = pgq.enqueue(tx, "acc.record")
    assert job_id is not None
    return job_id


def ran(ledger: psycopg.Connection[Any], job_id: int) -> bool:
    return bool(scalar(ledger, "SELECT count(*) FROM ledger WHERE job_id = %s", (job_id,)))


def terminate_worker_backends(conn: psycopg.Connection[Any]) -> set[str]:
    """Kill every connection of the worker; the names of those killed."""
    backends = conn.execute(WORKER_BACKENDS).fetchall()
    for pid, _ in backends:
        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
    return {name for _, name in backends}


def assert_idle_and_calm(worker: WorkerProcess) -> None:
    """Alive, and not spinning: little CPU over an idle window."""
    before = worker.cpu_seconds()
    time.sleep(IDLE_WINDOW)  # the measurement window itself, not a wait for a condition
    used = worker.cpu_seconds() - before
    assert worker.proc.poll() is None, f"the worker died:\n{worker.log()}"
    assert used < IDLE_CPU_MAX, f"an idle worker used {used:.2f}s of CPU in {IDLE_WINDOW}s"


def start_listening(
    start_worker: Callable[..., WorkerProcess], conn: psycopg.Connection[Any], poll: str
) -> WorkerProcess:
    worker = start_worker("--poll-interval", poll, "--concurrency", "4")
    worker.wait_started()
    wait_for(lambda: listener_pid(conn), what="the worker's LISTEN")
    return worker


def run_one(db_url: str, conn: psycopg.Connection[Any]) -> None:
    """Run a job through the worker, so that all its connections (writer too) are open."""
    job_id = enqueue_committed(db_url)
    wait_for(lambda: job(conn, job_id)["state"] == "succeeded", what="a first job's outcome")


def kill_connections(conn: psycopg.Connection[Any]) -> None:
    killed = terminate_worker_backends(conn)
    assert killed >= {"pgq claim", "pgq writer", "pgq listener"}, killed


@pytest.fixture
def listening_worker(
    start_worker: Callable[..., WorkerProcess], conn: psycopg.Connection[Any]
) -> WorkerProcess:
    return start_listening(start_worker, conn, POLL)


def test_a_committed_job_is_picked_up_without_waiting_for_the_poll(
    db_url: str, ledger: psycopg.Connection[Any], listening_worker: WorkerProcess
) -> None:
    job_id = enqueue_committed(db_url)

    wait_for(lambda: ran(ledger, job_id), PICKUP_BOUND, "pick-up by NOTIFY")
    wait_for(lambda: job(ledger, job_id)["state"] == "succeeded", what="the job's outcome")


def test_an_idle_listening_worker_does_not_spin(listening_worker: WorkerProcess) -> None:
    assert_idle_and_calm(listening_worker)


def test_after_its_connections_are_killed_the_worker_reconnects_and_keeps_working(
    db_url: str,
    ledger: psycopg.Connection[Any],
    start_worker: Callable[..., WorkerProcess],
) -> None:
    """Recovery at all: a short poll interval, so it may come from the poll."""
    worker = start_listening(start_worker, ledger, "2")
    run_one(db_url, ledger)
    old_listener = listener_pid(ledger)

    kill_connections(ledger)
    job_id = enqueue_committed(db_url)

    wait_for(lambda: ran(ledger, job_id), 20, "pick-up after reconnecting")
    wait_for(lambda: job(ledger, job_id)["state"] == "succeeded", what="the job's outcome")
    assert listener_pid(ledger) not in (None, old_listener), "the listener is back"
    assert_idle_and_calm(worker)
    later = enqueue_committed(db_url)
    wait_for(lambda: ran(ledger, later), PICKUP_BOUND, "pick-up by NOTIFY once recovered")


def test_a_job_enqueued_once_the_listener_is_back_is_picked_up_without_the_poll(
    db_url: str, ledger: psycopg.Connection[Any], listening_worker: WorkerProcess
) -> None:
    run_one(db_url, ledger)
    old_listener = listener_pid(ledger)
    kill_connections(ledger)
    wait_for(
        lambda: listener_pid(ledger) not in (None, old_listener), what="the listener's reconnect"
    )

    job_id = enqueue_committed(db_url)

    wait_for(lambda: ran(ledger, job_id), PICKUP_BOUND, "pick-up after reconnecting")


def test_a_job_enqueued_while_the_connections_are_down_is_found_after_reconnecting(
    db_url: str, ledger: psycopg.Connection[Any], listening_worker: WorkerProcess
) -> None:
    run_one(db_url, ledger)
    kill_connections(ledger)
    job_id = enqueue_committed(db_url)  # before the listener is back: its NOTIFY is lost

    wait_for(lambda: ran(ledger, job_id), PICKUP_BOUND, "pick-up by the poll after reconnect")
