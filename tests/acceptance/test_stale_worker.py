"""A worker frozen (SIGSTOP) past its lease comes back (SIGCONT) to a job it no longer owns.

The reaper requeues the job, a second worker runs it to success, and only then does the
stale worker resume. Its heartbeats and its outcome are fenced by the lease token it
claimed with, so they change nothing: the row, down to its physical version (ctid, xmin,
xmax), is exactly as the second worker left it, and the stale worker logs "lease lost".

Two cases, so that each stale write is certain to happen rather than raced:
* the task is still running when the worker resumes (real 2 s lease): the first heartbeat
  finds the lease gone; when the task returns later, its outcome is fenced out too;
* the task had finished when the worker froze, before its outcome was written (the worst
  moment: the task itself sends SIGSTOP as it returns). Its lease is long, so no
  heartbeat can get in first; the test ends that lease early by backdating it.

Two more freeze a process where it must not stop anyone else: a worker holding jobs it
claimed ahead of their turn (it must not start them once it knows their lease is gone),
and a reaper inside its locked batch (the other reapers must still recover jobs).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from worker_procs import WorkerProcess, job, scalar, wait_for

import pgq
from pgq import reaper as reaper_mod

SNAPSHOT = "SELECT xmin::text, xmax::text, ctid::text, j.* FROM pgq.jobs AS j WHERE id = %s"


def snapshot(conn: psycopg.Connection[Any], job_id: int) -> dict[str, Any]:
    """The whole row and its physical version: any UPDATE (or row lock) changes it."""
    cur = conn.execute(SNAPSHOT, (job_id,))
    names = [c.name for c in cur.description or []]
    row = cur.fetchone()
    assert row is not None
    return dict(zip(names, row, strict=True))


def enqueue(db_url: str, task: str) -> int:
    with psycopg.connect(db_url) as tx:
        job_id = pgq.enqueue(tx, task)
    assert job_id is not None
    return job_id


def attempts_run(conn: psycopg.Connection[Any], job_id: int) -> list[tuple[int, int]]:
    rows = conn.execute(
        "SELECT attempt, pid FROM attempt_ledger WHERE job_id = %s ORDER BY attempt", (job_id,)
    ).fetchall()
    return [(attempt, pid) for attempt, pid in rows]


def reaped_from(conn: psycopg.Connection[Any], job_id: int, worker_id: str) -> bool:
    row = job(conn, job_id)
    last = row["errors"][-1] if row["errors"] else {}
    return (
        row["state"] == "queued"
        and last.get("worker_id") == worker_id
        and (last.get("kind") == "lease_expired")
    )


def run_elsewhere(
    conn: psycopg.Connection[Any], job_ids: list[int], worker: WorkerProcess
) -> dict[int, dict[str, Any]]:
    """Let ``worker`` run the requeued jobs to success, stop it, return the rows as left."""
    wait_for(lambda: all(job(conn, j)["state"] == "succeeded" for j in job_ids), what="the 2nd run")
    worker.signal(signal.SIGTERM)
    assert worker.wait_exit(30) == 0, worker.log()
    rows = {job_id: snapshot(conn, job_id) for job_id in job_ids}
    for row in rows.values():
        assert (row["state"], row["attempts"]) == ("succeeded", 2)
        assert row["worker_id"] == worker.worker_id(), "the second worker ran it"
    return rows


def test_a_stale_workers_heartbeats_and_late_outcome_change_nothing(
    db_url: str,
    attempt_ledger: psycopg.Connection[Any],
    start_worker: Callable[..., WorkerProcess],
    start_reaper: Callable[..., WorkerProcess],
) -> None:
    conn = attempt_ledger
    start_reaper("0.5")
    stale = start_worker(
        "--app", "reaper_tasks", "--concurrency", "1", "--lease", "2", "--no-reaper"
    )
    stale_id = stale.worker_id()
    job_id = enqueue(db_url, "rt.gated")
    wait_for(lambda: attempts_run(conn, job_id) == [(1, stale.pid)], what="attempt 1 running")
    claimed = job(conn, job_id)

    stale.signal(signal.SIGSTOP)
    wait_for(stale.is_stopped, what="the worker frozen")
    wait_for(lambda: reaped_from(conn, job_id, stale_id), what="the reaper's requeue")
    second = start_worker("--app", "reaper_tasks", "--lease", "2", "--no-reaper")
    before = run_elsewhere(conn, [job_id], second)[job_id]
    assert before["lease_token"] == claimed["lease_token"] + 1

    stale.signal(signal.SIGCONT)
    # A heartbeat sent with the stale token reports the loss, once: the job is no longer
    # held, so later heartbeats leave it out.
    stale.wait_logged(f"lease lost: job {job_id} attempt 1 is no longer held by this worker")
    assert snapshot(conn, job_id) == before

    conn.execute("INSERT INTO gates (job_id) VALUES (%s)", (job_id,))  # the task returns
    stale.wait_logged(f"lease lost: job {job_id} attempt 1 ended after its lease was lost")
    assert snapshot(conn, job_id) == before
    stale.signal(signal.SIGTERM)
    assert stale.wait_exit(30) == 0, stale.log()
    assert snapshot(conn, job_id) == before
    assert attempts_run(conn, job_id) == [(1, stale.pid), (2, second.pid)]
    assert stale.log().count("is no longer held by this worker") == 1
    assert "succeeded 0, retried 0, failed 0" in stale.log(), "its attempt is not counted"
    assert "lost 1" in stale.log()


def test_a_stale_workers_success_written_after_the_job_ran_elsewhere_changes_nothing(
    db_url: str,
    attempt_ledger: psycopg.Connection[Any],
    start_worker: Callable[..., WorkerProcess],
    start_reaper: Callable[..., WorkerProcess],
) -> None:
    conn = attempt_ledger
    start_reaper("0.5")
    stale = start_worker(
        "--app", "reaper_tasks", "--concurrency", "1", "--lease", "600", "--no-reaper"
    )
    stale_id = stale.worker_id()
    job_id = enqueue(db_url, "rt.stop_self")
    wait_for(stale.is_stopped, what="the worker frozen by its task")
    claimed = job(conn, job_id)
    assert (claimed["state"], claimed["worker_id"]) == ("running", stale_id)

    # The lease runs out while the worker is frozen (backdated rather than waited for).
    conn.execute(
        "UPDATE pgq.jobs SET lease_expires_at = now() - interval '1 second' WHERE id = %s",
        (job_id,),
    )
    wait_for(lambda: reaped_from(conn, job_id, stale_id), what="the reaper's requeue")
    second = start_worker("--app", "reaper_tasks", "--lease", "600", "--no-reaper")
    before = run_elsewhere(conn, [job_id], second)[job_id]

    stale.signal(signal.SIGCONT)
    stale.wait_logged(f"lease lost: job {job_id} was taken back before its outcome 'succeeded'")
    assert snapshot(conn, job_id) == before
    stale.signal(signal.SIGTERM)
    assert stale.wait_exit(30) == 0, stale.log()
    assert snapshot(conn, job_id) == before
    assert attempts_run(conn, job_id) == [(1, stale.pid), (2, second.pid)]
    assert "succeeded 0" in stale.log(), "an outcome thrown away is not counted as written"
    assert "lost 1" in stale.log()


WARM_UP_JOBS = 30  # instant jobs that teach a worker to claim ahead
CLAIMED_AHEAD = 3


def test_a_stale_worker_never_starts_a_job_it_claimed_ahead_and_lost(
    db_url: str,
    attempt_ledger: psycopg.Connection[Any],
    start_worker: Callable[..., WorkerProcess],
    start_reaper: Callable[..., WorkerProcess],
) -> None:
    conn = attempt_ledger
    start_reaper("0.5")
    stale = start_worker("--app", "reaper_tasks", "--concurrency", "1", "--lease", "2",
                         "--no-reaper")  # fmt: skip
    stale_id = stale.worker_id()
    with psycopg.connect(db_url) as tx:
        warm_up = pgq.enqueue_many(tx, [pgq.JobSpec("rt.sleep", {"seconds": 0})] * WARM_UP_JOBS)
    wait_for(lambda: all(job(conn, j)["state"] == "succeeded" for j in warm_up), what="warm-up")

    # One claim takes the gated job (first, by priority) and the others ahead of their turn.
    specs = [pgq.JobSpec("rt.gated", priority=10)]
    specs += [pgq.JobSpec("rt.sleep", {"seconds": 0})] * CLAIMED_AHEAD
    with psycopg.connect(db_url) as tx:
        gated_id, *ahead = pgq.enqueue_many(tx, specs)
    wait_for(lambda: attempts_run(conn, gated_id) == [(1, stale.pid)], what="gated job running")
    for job_id in ahead:
        claimed = job(conn, job_id)
        assert (claimed["state"], claimed["worker_id"]) == ("running", stale_id), "claimed ahead"

    stale.signal(signal.SIGSTOP)
    wait_for(stale.is_stopped, what="the worker frozen")
    for job_id in (gated_id, *ahead):
        wait_for(lambda j=job_id: reaped_from(conn, j, stale_id), what="the reaper's requeue")
    second = start_worker("--app", "reaper_tasks", "--lease", "2", "--no-reaper")
    before = run_elsewhere(conn, ahead, second)

    stale.signal(signal.SIGCONT)
    stale.wait_logged(f"lease lost: job {gated_id} attempt 1 is no longer held by this worker")
    conn.execute("INSERT INTO gates (job_id) VALUES (%s)", (gated_id,))
    stale.wait_logged(f"lease lost: job {gated_id} attempt 1 ended after its lease was lost")
    stale.signal(signal.SIGTERM)
    assert stale.wait_exit(30) == 0, stale.log()
    assert {j: snapshot(conn, j) for j in ahead} == before, "fenced: rows unchanged"
    assert all(attempts_run(conn, j) == [(2, second.pid)] for j in ahead), (
        "jobs whose lease the stale worker knew it had lost were started there: "
        f"{[attempts_run(conn, j) for j in ahead]}"
    )


FROZEN_REAPER_BOUND = 10.0  # seconds a healthy reaper may take despite a frozen one
REAPER_WAITING_ON_LOCK = """
    SELECT count(*) FROM pg_stat_activity
    WHERE datname = current_database() AND application_name = 'pgq reaper'
      AND wait_event_type = 'Lock'
"""
REAPER_HOLDS_REAP_LOCK = """
    SELECT count(*) FROM pg_locks AS l JOIN pg_stat_activity AS a USING (pid)
    WHERE a.datname = current_database() AND a.application_name = 'pgq reaper'
      AND l.locktype = 'advisory' AND l.granted
      AND (l.classid::bigint << 32 | l.objid::bigint) = %s
"""
REAPER_IDLE_IN_TRANSACTION = """
    SELECT count(*) FROM pg_stat_activity
    WHERE datname = current_database() AND application_name = 'pgq reaper'
      AND state = 'idle in transaction'
"""


def freeze_inside_a_reaping_batch(
    reaper: WorkerProcess, conn: psycopg.Connection[Any], db_url: str
) -> None:
    """Freeze ``reaper`` inside its reaping transaction, holding the reaper's lock.

    The table is locked so that the reaper's next statement blocks; once it blocks while
    holding the reap lock (not the prune lock: a pass may be pruning), it is frozen and the
    table released. Its statement then finishes on the server and the session stays idle
    in transaction, holding the lock, exactly as if it had frozen between two statements.
    """
    for _ in range(10):
        with psycopg.connect(db_url) as blocker:
            blocker.execute("LOCK TABLE pgq.jobs IN ACCESS EXCLUSIVE MODE")
            wait_for(lambda: scalar(conn, REAPER_WAITING_ON_LOCK) == 1, what="reaper blocked")
            if scalar(conn, REAPER_HOLDS_REAP_LOCK, (reaper_mod.REAP_LOCK_KEY,)) == 1:
                reaper.signal(signal.SIGSTOP)
                wait_for(reaper.is_stopped, what="the reaper frozen")
                blocker.rollback()
                wait_for(
                    lambda: scalar(conn, REAPER_IDLE_IN_TRANSACTION) == 1,
                    what="the frozen reaper idle in transaction",
                )
                return
            blocker.rollback()  # caught pruning: let that pass end and catch the next
    pytest.fail("never caught the reaper inside a reaping batch")


@pytest.mark.slow
def test_a_reaper_frozen_mid_pass_does_not_stop_reaping_for_everyone(
    db_url: str,
    attempt_ledger: psycopg.Connection[Any],
    start_worker: Callable[..., WorkerProcess],
    start_reaper: Callable[..., WorkerProcess],
) -> None:
    conn = attempt_ledger
    frozen = start_reaper("0.5")
    freeze_inside_a_reaping_batch(frozen, conn, db_url)

    # A worker dies holding a job; a healthy reaper runs next to the frozen one.
    dying = start_worker("--app", "reaper_tasks", "--lease", "1", "--no-reaper")
    dead_id = dying.worker_id()
    job_id = enqueue(db_url, "rt.gated")
    wait_for(lambda: attempts_run(conn, job_id) == [(1, dying.pid)], what="attempt 1 running")
    dying.signal(signal.SIGKILL)
    dying.wait_exit(10)
    start_reaper("0.5")

    deadline = time.monotonic() + FROZEN_REAPER_BOUND
    while not reaped_from(conn, job_id, dead_id) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert reaped_from(conn, job_id, dead_id), (
        f"job {job_id} still {job(conn, job_id)['state']} after {FROZEN_REAPER_BOUND}s: "
        f"{scalar(conn, REAPER_IDLE_IN_TRANSACTION)} frozen reaper session(s) hold the lock"
    )
