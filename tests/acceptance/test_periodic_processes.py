"""Exactly once per tick across real `pgq work` processes: three workers share a
one-second schedule for about 30 s; one is killed with SIGKILL and another started in its
place. Every tick from the first to the last has exactly one job, and every job that
finished ran for its own tick."""

from __future__ import annotations

import signal
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from worker_procs import WorkerProcess, wait_for

pytestmark = pytest.mark.slow
ARGS = ("--app", "periodic_tasks", "--lease", "3", "--concurrency", "4")


def ledger_ticks(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(DISTINCT tick) FROM tick_ledger").fetchone()
    assert row is not None
    return int(row[0])


def test_three_workers_and_a_kill_make_one_job_per_tick(
    conn: psycopg.Connection[Any], start_worker: Callable[..., WorkerProcess]
) -> None:
    conn.execute("TRUNCATE pgq.schedules")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS tick_ledger (tick timestamptz, job_id bigint, pid int)"
    )
    conn.execute("TRUNCATE tick_ledger")
    workers = [start_worker(*ARGS) for _ in range(3)]
    for worker in workers:
        worker.wait_started()

    wait_for(lambda: ledger_ticks(conn) >= 8, 60, "8 ticks run")
    workers[0].signal(signal.SIGKILL)
    workers[0].wait_exit(10)
    before = ledger_ticks(conn)
    wait_for(lambda: ledger_ticks(conn) >= before + 8, 60, "8 more ticks with one worker dead")
    replacement = start_worker(*ARGS)
    replacement.wait_started()
    before = ledger_ticks(conn)
    wait_for(lambda: ledger_ticks(conn) >= before + 12, 60, "12 more ticks after the restart")
    for worker in (*workers[1:], replacement):
        worker.signal(signal.SIGTERM)
    for worker in (*workers[1:], replacement):
        assert worker.wait_exit(40) == 0, worker.log()

    jobs = conn.execute(
        "SELECT run_at, state::text FROM pgq.jobs WHERE task = 'periodic.tick' ORDER BY run_at"
    ).fetchall()
    ticks = [run_at for run_at, _ in jobs]
    # One job per tick: consecutive seconds, none doubled, none missing.
    assert len(ticks) >= 28
    assert ticks == [ticks[0] + timedelta(seconds=i) for i in range(len(ticks))]
    # Every job that succeeded ran for its own tick (the ledger is the task's witness);
    # the ledger has no tick without a job.
    ran = {row[0] for row in conn.execute("SELECT DISTINCT tick FROM tick_ledger")}
    succeeded = {run_at for run_at, state in jobs if state == "succeeded"}
    assert succeeded <= ran <= set(ticks)
    # Left unfinished at most: the killed worker's jobs (lease lapsed, not yet reaped when
    # the others stopped) and the last ticks enqueued as the workers stopped.
    unfinished = [(run_at, state) for run_at, state in jobs if state != "succeeded"]
    assert len(unfinished) <= 6, unfinished
    assert all(state in ("queued", "running") for _, state in unfinished)
    # The schedule's row agrees with the jobs.
    last_tick = conn.execute(
        "SELECT last_tick_at FROM pgq.schedules WHERE name = 'every-second'"
    ).fetchone()
    assert last_tick == (ticks[-1],)
