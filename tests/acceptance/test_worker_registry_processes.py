"""The worker registry with real `pgq work` processes: a row while a worker lives, gone
after SIGTERM at once, and after kill -9 only once the stale bound has passed.

The kill -9 case runs in real database time (the bound is 30 s): the row must still be
there after the reaper passed several times within the bound, and gone soon after it.
"""

from __future__ import annotations

import signal
import socket
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from worker_procs import WorkerProcess, db_now, scalar, wait_for

import pgq
from pgq.worker_registry import STALE_AFTER

REAPER_INTERVAL = "0.5"  # seconds between the reaper's passes


def pgq_backends(conn: psycopg.Connection[Any]) -> set[int]:
    """The pids of the backends pgq processes opened on this database."""
    rows = conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'pgq %%' "
        "AND datname = current_database()"
    ).fetchall()
    return {pid for (pid,) in rows}


def row(conn: psycopg.Connection[Any], worker_id: str) -> dict[str, Any] | None:
    cur = conn.execute("SELECT * FROM pgq.workers WHERE id = %s", (worker_id,))
    values = cur.fetchone()
    if values is None:
        return None
    return dict(zip([c.name for c in cur.description or []], values, strict=True))


def test_a_worker_is_registered_while_it_runs_and_leaves_on_sigterm(
    conn: psycopg.Connection[Any], start_worker: Callable[..., WorkerProcess]
) -> None:
    worker = start_worker("--concurrency", "3", "-q", "default")
    worker_id = worker.worker_id()

    found = wait_for(lambda: row(conn, worker_id), what="the worker's row")
    assert (found["hostname"], found["pid"]) == (socket.gethostname(), worker.pid)
    assert (found["queues"], found["concurrency"], found["version"]) == (
        ["default"],
        3,
        pgq.__version__,
    )
    assert "acc.record" in found["tasks"]
    assert scalar(conn, "SELECT alive FROM pgq.worker_status WHERE id = %s", (worker_id,))

    worker.signal(signal.SIGTERM)
    assert worker.wait_exit(30) == 0, worker.log()
    assert row(conn, worker_id) is None


@pytest.mark.slow
def test_after_kill9_the_row_stays_until_the_bound_then_the_reaper_removes_it(
    conn: psycopg.Connection[Any],
    start_worker: Callable[..., WorkerProcess],
    start_reaper: Callable[..., WorkerProcess],
) -> None:
    before = pgq_backends(conn)  # others' (a pooler's, say): not the worker's
    worker = start_worker("--no-reaper")
    worker_id = worker.worker_id()
    wait_for(lambda: row(conn, worker_id), what="the worker's row")
    worker.signal(signal.SIGKILL)
    assert worker.wait_exit(10) == -signal.SIGKILL
    # Once its backends are gone nothing it sent can still land: this is its last beat.
    wait_for(lambda: pgq_backends(conn) <= before, what="the killed worker's backends gone")
    last_seen = row(conn, worker_id)["last_seen_at"]  # type: ignore[index]
    reaper = start_reaper(REAPER_INTERVAL)

    # Within the bound the reaper passes many times and leaves the row (dead, but within
    # the time a live worker may miss beats in).
    almost = last_seen + timedelta(seconds=STALE_AFTER - 3)
    wait_for(lambda: db_now(conn) >= almost, STALE_AFTER + 10, "near the bound")
    assert row(conn, worker_id) is not None, "removed before the bound"

    wait_for(lambda: row(conn, worker_id) is None, 20, "the row removed after the bound")
    assert db_now(conn) >= last_seen + timedelta(seconds=STALE_AFTER)
    reaper.wait_logged(f"worker {worker_id} (pid {worker.pid}")
    assert "removed from pgq.workers" in reaper.log()
