"""A sync task past its timeout, or cancelled while it runs, against a real `pgq work`:
its job's row never says the attempt ended while its code still runs.

With the thread pool the code cannot be stopped: the job stays ``running`` (its lease
renewed, the stop asked through ``ctx``) until the task returns, and only then is the
timeout or cancel written. With the process pool the child running it is stopped, and the
outcome is written once the child is gone. The task (``pool.until_gate*`` in
``apps/pool_tasks.py``) notes what it saw and runs until the test opens its gate.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pool_events import create_pool_events, event_at, events, open_gate, pid_alive
from worker_procs import WorkerProcess, db_now, job, run_pgq, wait_for

import pgq

pools = pytest.mark.parametrize("pool", ["thread", "process"])


@pytest.fixture
def start(
    start_worker: Callable[..., WorkerProcess], conn: psycopg.Connection[Any]
) -> Callable[[str], WorkerProcess]:
    create_pool_events(conn)

    def run(pool: str) -> WorkerProcess:
        # --lease 3: heartbeats every second, so renewals and cancels are seen quickly.
        worker = start_worker("--app", "pool_tasks", "--pool", pool, "--lease", "3")
        worker.wait_started()
        return worker

    return run


def saw(conn: psycopg.Connection[Any], job_id: int, event: str) -> None:
    wait_for(lambda: event in [e for _, _, e in events(conn, job_id)], what=f"{event!r}")


def assert_still_running_and_renewed(conn: psycopg.Connection[Any], job_id: int) -> None:
    """The row says running, with no error yet, and the heartbeat keeps extending it."""
    first = job(conn, job_id)
    assert (first["state"], first["errors"], first["finished_at"]) == ("running", [], None)
    assert first["lease_expires_at"] > db_now(conn)

    def renewed() -> bool:
        row = job(conn, job_id)
        assert row["state"] == "running", f"the row changed while the code runs: {row}"
        return bool(row["lease_expires_at"] > first["lease_expires_at"])

    wait_for(renewed, what="a heartbeat renewing the lease")


def error_time(row: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(row["errors"][-1]["at"])


@pools
def test_a_sync_task_past_its_timeout_keeps_its_job_running_until_its_code_stops(
    start: Callable[[str], WorkerProcess], conn: psycopg.Connection[Any], pool: str
) -> None:
    start(pool)
    job_id = pgq.enqueue(conn, "pool.until_gate_timeout")  # timeout=1, retry in 10 min
    saw(conn, job_id, "started")
    [(_, child, _)] = events(conn, job_id)

    if pool == "thread":
        saw(conn, job_id, "saw timeout")  # the deadline passed; the code goes on
        assert_still_running_and_renewed(conn, job_id)
        open_gate(conn, job_id)

    wait_for(lambda: job(conn, job_id)["state"] == "queued", what="the timeout written")
    row = job(conn, job_id)
    assert [e["kind"] for e in row["errors"]] == ["timeout"]
    assert row["attempts"] == 1
    if pool == "thread":
        assert error_time(row) >= event_at(conn, job_id, "returning")
    else:
        assert not pid_alive(child), "written only once the child was gone"
        assert "returning" not in [e for _, _, e in events(conn, job_id)]


@pools
def test_a_sync_task_cancelled_while_it_runs_keeps_its_job_running_until_its_code_stops(
    start: Callable[[str], WorkerProcess],
    conn: psycopg.Connection[Any],
    db_url: str,
    tmp_path: Path,
    pool: str,
) -> None:
    start(pool)
    job_id = pgq.enqueue(conn, "pool.until_gate")
    saw(conn, job_id, "started")
    [(_, child, _)] = events(conn, job_id)

    result = run_pgq(["cancel", str(job_id), "--json"], db_url, tmp_path)
    assert json.loads(result.stdout)["cancel_requested"] == [job_id], result.stderr

    if pool == "thread":
        saw(conn, job_id, "saw cancelled")
        assert job(conn, job_id)["cancel_requested"] is True
        assert_still_running_and_renewed(conn, job_id)
        open_gate(conn, job_id)

    wait_for(lambda: job(conn, job_id)["state"] == "cancelled", what="the cancel written")
    row = job(conn, job_id)
    assert (row["attempts"], row["errors"], row["cancel_requested"]) == (1, [], False)
    if pool == "thread":
        assert row["finished_at"] >= event_at(conn, job_id, "returning")
    else:
        assert not pid_alive(child), "written only once the child was gone"
