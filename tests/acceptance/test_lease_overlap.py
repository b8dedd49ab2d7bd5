"""Two attempts of one job never overlap in time (guarantee 3), whatever the leases.

A healthy worker renews every lease it holds before a third of it passes, from the moment
the job is claimed, so the reaper never takes a running job back from it. And if a job is
taken back all the same (a frozen worker, a lost connection) and this worker claims it
again while the old attempt still runs in a thread, the new attempt waits for the old one
to return. ``attempt_spans`` (apps/lease_tasks.py) is the witness: each attempt's start
and end in database time, written by the task itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from worker_procs import WorkerProcess, job, scalar, wait_for

import pgq

APP = "lease_tasks"
SPANS = """
CREATE TABLE IF NOT EXISTS attempt_spans (
    span bigserial PRIMARY KEY, job_id bigint, attempt int, pid int,
    started_at timestamptz, ended_at timestamptz, stop_reason text
);
CREATE TABLE IF NOT EXISTS gates (job_id bigint PRIMARY KEY);
TRUNCATE attempt_spans, gates;
"""

Span = tuple[int, int, Any, Any, str | None]  # attempt, pid, started_at, ended_at, reason


@pytest.fixture
def spans(conn: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    conn.execute(SPANS)
    return conn


def spans_of(conn: psycopg.Connection[Any], job_id: int) -> list[Span]:
    rows = conn.execute(
        "SELECT attempt, pid, started_at, ended_at, stop_reason FROM attempt_spans "
        "WHERE job_id = %s ORDER BY started_at",
        (job_id,),
    ).fetchall()
    return [tuple(row) for row in rows]  # type: ignore[misc]


def overlaps(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    """Pairs of attempts of one job whose spans intersect (an unfinished span runs on)."""
    return conn.execute(
        "SELECT a.job_id, a.attempt, a.pid, b.attempt, b.pid FROM attempt_spans a "
        "JOIN attempt_spans b ON a.job_id = b.job_id AND a.span < b.span "
        "WHERE tstzrange(a.started_at, a.ended_at) && tstzrange(b.started_at, b.ended_at)"
    ).fetchall()


def enqueue(db_url: str, specs: list[pgq.JobSpec]) -> list[int]:
    with psycopg.connect(db_url) as tx:
        return [i for i in pgq.enqueue_many(tx, specs) if i is not None]


def start(start_worker: Callable[..., WorkerProcess], *args: str) -> WorkerProcess:
    worker = start_worker("--app", APP, *args)
    worker.wait_started()
    return worker


def test_a_job_with_a_lease_shorter_than_the_workers_runs_once(
    db_url: str, spans: psycopg.Connection[Any], start_worker: Callable[..., WorkerProcess]
) -> None:
    """The reproduction: a 3 s lease, a 12 s task, a worker whose own lease is 30 s. The
    idle heartbeat slept 10 s, the reaper requeued the job at 4 s, and the same worker ran
    attempt 2 beside attempt 1."""
    worker = start(start_worker)  # --lease 30, the default
    [job_id] = enqueue(db_url, [pgq.JobSpec("lt.sleep_lease_3", {"seconds": 12})])

    wait_for(lambda: job(spans, job_id)["state"] == "succeeded", 40, "the 12 s job")

    assert [(a, reason) for a, _, _, _, reason in spans_of(spans, job_id)] == [(1, None)]
    assert job(spans, job_id)["attempts"] == 1
    assert job(spans, job_id)["errors"] == []
    assert "lease lost" not in worker.log()


def test_mixed_leases_on_two_workers_never_overlap(
    db_url: str, spans: psycopg.Connection[Any], start_worker: Callable[..., WorkerProcess]
) -> None:
    """Leases of 1-30 s, jobs longer than some of them, two worker processes: every job
    runs once, and no two attempts of one job ever overlap."""
    workers = [start(start_worker, "--concurrency", "6") for _ in range(2)]
    leases = (1, 2, 5, 30)
    seconds = (0.2, 1.5, 3.0, 4.5)
    specs = [
        pgq.JobSpec(f"lt.sleep_lease_{leases[i % 4]}", {"seconds": seconds[(i // 4) % 4]})
        for i in range(32)
    ]
    ids = enqueue(db_url, specs)

    wait_for(
        lambda: scalar(spans, "SELECT count(*) FROM pgq.jobs WHERE state = 'succeeded'") == 32,
        60,
        "every job to succeed",
    )

    assert overlaps(spans) == []
    per_job = spans.execute(
        "SELECT job_id, count(*) FROM attempt_spans GROUP BY job_id ORDER BY job_id"
    ).fetchall()
    assert per_job == [(job_id, 1) for job_id in ids], "no lease lapsed on a healthy worker"
    assert scalar(spans, "SELECT count(DISTINCT pid) FROM attempt_spans") == 2
    assert all("lease lost" not in w.log() for w in workers)


def test_a_job_taken_back_and_claimed_again_waits_for_its_old_attempt(
    db_url: str, spans: psycopg.Connection[Any], start_worker: Callable[..., WorkerProcess]
) -> None:
    """The job is taken back while attempt 1 runs (as the reaper does after a lapse) and
    this same worker claims it again: attempt 1 is told its lease is lost, and attempt 2
    starts only after attempt 1 returned."""
    worker = start(start_worker, "--concurrency", "2")
    [job_id] = enqueue(db_url, [pgq.JobSpec("lt.gated")])
    wait_for(lambda: spans_of(spans, job_id), what="attempt 1 to start")
    token = job(spans, job_id)["lease_token"]

    spans.execute(
        "UPDATE pgq.jobs SET state = 'queued', worker_id = NULL, lease_expires_at = NULL "
        "WHERE id = %s",
        (job_id,),
    )
    wait_for(lambda: job(spans, job_id)["lease_token"] == token + 1, what="the second claim")
    worker.wait_logged(f"lease lost: job {job_id} attempt 1")
    time.sleep(1.0)  # attempt 2 is claimed: it must not start while attempt 1 runs
    assert [a for a, *_ in spans_of(spans, job_id)] == [1]
    assert job(spans, job_id)["state"] == "running"

    spans.execute("INSERT INTO gates VALUES (%s)", (job_id,))
    wait_for(lambda: job(spans, job_id)["state"] == "succeeded", what="attempt 2")

    (a1, _, _, end1, reason1), (a2, _, start2, _, _) = spans_of(spans, job_id)
    assert (a1, reason1, a2) == (1, "lease_lost", 2)
    assert start2 >= end1
    assert overlaps(spans) == []
