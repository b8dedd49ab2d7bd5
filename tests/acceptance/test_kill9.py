"""kill -9 in the middle of 200 jobs, with a real 2 s lease: nothing is lost.

A worker runs jobs of 0.1-2 s (seeded) and is SIGKILLed half way. What it held at that
moment is read from the database once its backends are gone, so nothing it sent can
still land afterwards: those jobs are the ones in flight. The reaper (``pgq reap
--interval 0.5``, started after the kill so that snapshot is still intact) takes them back
when their lease lapses, and a second worker finishes everything.
"""

from __future__ import annotations

import random
import signal
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from worker_procs import WorkerProcess, scalar, wait_for

import pgq

JOBS = 200
SEED = 20240904
DURATION_MIN, DURATION_MAX = 0.1, 2.0  # seconds per job
WORKER_ARGS = ("--app", "reaper_tasks", "--concurrency", "25", "--lease", "2")
DRAIN_TIMEOUT = 120.0  # seconds for the second worker to finish everything (a bound)
# Every backend a worker opens, its tasks' ledger connections included.
WORKER_BACKENDS = """
    SELECT count(*) FROM pg_stat_activity
    WHERE datname = current_database() AND pid <> pg_backend_pid()
      AND (application_name LIKE 'pgq %%' OR application_name = 'ledger')
"""


def enqueue_jobs(db_url: str) -> list[int]:
    rng = random.Random(SEED)
    # Sync tasks (in threads) and async ones (on the loop), alternately.
    specs = [
        pgq.JobSpec(
            ("rt.sleep", "rt.sleep_async")[n % 2],
            {"seconds": round(rng.uniform(DURATION_MIN, DURATION_MAX), 3)},
        )
        for n in range(JOBS)
    ]
    with psycopg.connect(db_url) as tx:
        return pgq.enqueue_many(tx, specs)


def succeeded(conn: psycopg.Connection[Any]) -> int:
    return int(scalar(conn, "SELECT count(*) FROM pgq.jobs WHERE state = 'succeeded'"))


def kill_and_read_what_it_held(
    worker: WorkerProcess, conn: psycopg.Connection[Any]
) -> dict[int, tuple[int, int]]:
    """SIGKILL; once its backends are gone, {job id: (attempts, lease_token)} it held."""
    worker_id = worker.worker_id()
    worker.signal(signal.SIGKILL)
    assert worker.wait_exit(10) == -signal.SIGKILL
    wait_for(lambda: scalar(conn, WORKER_BACKENDS) == 0, what="the dead worker's backends")
    rows = conn.execute(
        "SELECT id, attempts, lease_token FROM pgq.jobs WHERE state = 'running' AND worker_id = %s",
        (worker_id,),
    ).fetchall()
    return {job_id: (attempts, token) for job_id, attempts, token in rows}


@pytest.mark.slow
def test_kill9_midway_loses_nothing_and_reruns_what_was_in_flight(
    db_url: str,
    attempt_ledger: psycopg.Connection[Any],
    start_worker: Callable[..., WorkerProcess],
    start_reaper: Callable[..., WorkerProcess],
) -> None:
    conn = attempt_ledger
    # No reaper in the first worker: nothing may touch its jobs before they are read.
    first = start_worker(*WORKER_ARGS, "--no-reaper")
    dead_id = first.worker_id()
    ids = enqueue_jobs(db_url)
    wait_for(lambda: succeeded(conn) >= JOBS // 2, DRAIN_TIMEOUT, "half the jobs done")

    in_flight = kill_and_read_what_it_held(first, conn)
    assert in_flight, "the kill caught jobs in flight"
    assert scalar(conn, "SELECT count(*) FROM pgq.jobs WHERE state = 'running'") == len(in_flight)

    # The second worker reaps nothing either: the reaper process alone takes the dead
    # worker's jobs back, so its log is where the dead worker is named (the worker's own
    # reaper thread, started first, won that race now and then).
    second = start_worker(*WORKER_ARGS, "--no-reaper")
    reaper = start_reaper("0.5")
    wait_for(lambda: succeeded(conn) == JOBS, DRAIN_TIMEOUT, "every job succeeded")
    second.signal(signal.SIGTERM)
    assert second.wait_exit(30) == 0, second.log()

    rows = conn.execute("SELECT id, state::text, attempts, errors FROM pgq.jobs").fetchall()
    assert sorted(r[0] for r in rows) == sorted(ids), "no job lost, none added"
    for job_id, state, attempts, errors in rows:
        assert state == "succeeded"
        if job_id not in in_flight:
            assert (attempts, errors) == (1, []), f"job {job_id} was not in flight"
            continue
        held_attempts = in_flight[job_id][0]
        assert attempts == held_attempts + 1, f"job {job_id} ran again, one attempt more"
        assert [(e["kind"], e["attempt"], e["worker_id"]) for e in errors] == [
            ("lease_expired", held_attempts, dead_id)
        ]
        assert dead_id in errors[0]["message"]
    assert_ledger(conn, in_flight, first.pid, second.pid)
    assert dead_id in reaper.log(), "the reaper names the dead worker"


def assert_ledger(
    conn: psycopg.Connection[Any], in_flight: dict[int, tuple[int, int]], dead: int, live: int
) -> None:
    """Every job's successful attempt ran in one of the two workers; in-flight jobs last ran
    in the second one, as attempt 2; nothing else ran twice."""
    runs: dict[int, list[tuple[int, int]]] = {}
    for job_id, attempt, pid in conn.execute(
        "SELECT job_id, attempt, pid FROM attempt_ledger ORDER BY at"
    ).fetchall():
        runs.setdefault(job_id, []).append((attempt, pid))
    assert len(runs) == JOBS
    for job_id, attempts in runs.items():
        if job_id in in_flight:
            assert attempts[-1] == (2, live), job_id
            assert attempts[:-1] in ([], [(1, dead)]), job_id
        else:
            assert len(attempts) == 1 and attempts[0][0] == 1, job_id
    assert any(len(a) == 2 for a in runs.values()), "an interrupted job started twice"
