"""Fencing: a worker whose lease was taken over changes nothing about the job.

The first worker claims a job; from another connection the test does what the reaper and
a second worker would (put the job back to ``queued``, claim it again: the lease token
grows); then the first worker tries to complete, retry, release or extend it with its old
token. The row must stay exactly as the second holder left it, and RETURNING must show
that nothing was applied. Checked on the statements, on the Completer and Heartbeat, and
through a running Worker.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, TypeVar

import psycopg
import pytest

import pgq
from pgq import store
from pgq.completer import Completer
from pgq.db import ReconnectingConnection
from pgq.heartbeat import Heartbeat, HeartbeatResult, Held
from pgq.registry import Registry
from pgq.runner import ClaimedJob, JobContext, Outcome, error_entry
from pgq.worker import Worker, WorkerConfig

TASK = "fencing.work"
WAIT_TIMEOUT = 20.0  # seconds any bounded wait below may take before the test fails
OUTCOMES = ["succeeded", "retry", "failed", "snooze", "release", "cancelled"]
T = TypeVar("T")


def claim_one(conn: psycopg.Connection[Any], worker_id: str) -> ClaimedJob:
    rows = store.fetch(
        conn,
        store.claim_jobs(
            queues=["default"], tasks=[TASK], leases=[30.0], limit=1, worker_id=worker_id
        ),
    )
    assert len(rows) == 1, f"{worker_id} claimed {rows}"
    return ClaimedJob.from_row(rows[0])


def take_over(conn: psycopg.Connection[Any], job_id: int) -> ClaimedJob:
    """What the reaper then another worker do to a job whose lease lapsed."""
    conn.execute(
        "UPDATE pgq.jobs SET state = 'queued', worker_id = NULL, lease_expires_at = NULL "
        "WHERE id = %s AND state = 'running'",
        (job_id,),
    )
    return claim_one(conn, "second-worker")


def row(conn: psycopg.Connection[Any], job_id: int) -> dict[str, Any]:
    cur = conn.execute("SELECT * FROM pgq.jobs WHERE id = %s", (job_id,))
    names = [c.name for c in cur.description or []]
    values = cur.fetchone()
    assert values is not None
    return dict(zip(names, values, strict=True))


def finish(conn: psycopg.Connection[Any], jobs: list[ClaimedJob], outcome: str) -> list[store.Row]:
    error = json.dumps(error_entry("ValueError", "stale", "Traceback ..."))
    return store.fetch(
        conn,
        store.finish_jobs(
            ids=[j.id for j in jobs],
            tokens=[j.lease_token for j in jobs],
            outcomes=[outcome] * len(jobs),
            delays=[0.0] * len(jobs),
            errors=[error if outcome in ("retry", "failed") else None] * len(jobs),
        ),
    )


def extend(conn: psycopg.Connection[Any], jobs: list[ClaimedJob]) -> list[store.Row]:
    statement = store.extend_leases(
        ids=[j.id for j in jobs], tokens=[j.lease_token for j in jobs], leases=[600.0] * len(jobs)
    )
    return store.fetch(conn, statement)


def with_writer(db_url: str, use: Callable[[ReconnectingConnection], Awaitable[T]]) -> T:
    """Run ``use`` with the kind of connection the worker writes outcomes on."""

    async def main() -> T:
        writer = ReconnectingConnection(db_url, "writer")
        try:
            return await use(writer)
        finally:
            await writer.close()

    return asyncio.run(main())


@pytest.fixture
def stale(conn: psycopg.Connection[Any]) -> ClaimedJob:
    """A job claimed by "first-worker", then reaped and re-claimed by "second-worker"."""
    pgq.enqueue(conn, TASK, max_attempts=5)
    first = claim_one(conn, "first-worker")
    second = take_over(conn, first.id)
    assert second.lease_token == first.lease_token + 1
    return first


# --- the statements -------------------------------------------------------------------------


@pytest.mark.parametrize("outcome", OUTCOMES)
def test_a_stale_token_cannot_finish_a_job_taken_over(
    conn: psycopg.Connection[Any], stale: ClaimedJob, outcome: str
) -> None:
    before = row(conn, stale.id)

    applied = finish(conn, [stale], outcome)

    assert applied == []
    assert row(conn, stale.id) == before
    assert (before["state"], before["worker_id"], before["attempts"], before["errors"]) == (
        "running",
        "second-worker",
        2,
        [],
    )


@pytest.mark.parametrize("outcome", OUTCOMES)
def test_the_current_holder_can_finish_it(
    conn: psycopg.Connection[Any], stale: ClaimedJob, outcome: str
) -> None:
    """The same write with the current token does apply: the fence is the token."""
    current = replace(stale, attempt=2, lease_token=stale.lease_token + 1)

    applied = finish(conn, [current], outcome)

    assert [r[0] for r in applied] == [stale.id]
    assert row(conn, stale.id)["state"] != "running"


@pytest.mark.parametrize("outcome", OUTCOMES)
def test_a_stale_token_cannot_finish_a_job_the_reaper_put_back(
    conn: psycopg.Connection[Any], outcome: str
) -> None:
    """Requeued but not yet re-claimed: same token, but no longer running."""
    pgq.enqueue(conn, TASK)
    first = claim_one(conn, "first-worker")
    conn.execute(
        "UPDATE pgq.jobs SET state = 'queued', worker_id = NULL, lease_expires_at = NULL "
        "WHERE id = %s",
        (first.id,),
    )
    before = row(conn, first.id)

    assert finish(conn, [first], outcome) == []
    assert extend(conn, [first]) == []
    assert row(conn, first.id) == before


def test_a_stale_token_cannot_extend_the_lease(
    conn: psycopg.Connection[Any], stale: ClaimedJob
) -> None:
    before = row(conn, stale.id)

    assert extend(conn, [stale]) == []
    assert row(conn, stale.id) == before


def test_a_batch_applies_only_the_rows_whose_token_still_holds(
    conn: psycopg.Connection[Any], stale: ClaimedJob
) -> None:
    pgq.enqueue(conn, TASK)
    live = claim_one(conn, "first-worker")
    stale_before = row(conn, stale.id)

    applied = finish(conn, [stale, live], "succeeded")
    extended = extend(conn, [stale, live])

    assert applied == [(live.id, "succeeded")]
    assert extended == [], "the live job is finished, the stale one is not ours"
    assert row(conn, stale.id) == stale_before


# --- the worker's Completer and Heartbeat ---------------------------------------------------


@pytest.mark.parametrize(
    "outcome",
    [
        Outcome("succeeded"),
        Outcome("retry", delay=1.0, error=error_entry("ValueError", "stale", None)),
        Outcome("failed", error=error_entry("Fail", "stale", None)),
        Outcome("release"),
    ],
    ids=lambda o: o.kind,
)
def test_the_completer_reports_a_lost_lease_and_changes_nothing(
    db_url: str,
    conn: psycopg.Connection[Any],
    stale: ClaimedJob,
    outcome: Outcome,
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = row(conn, stale.id)

    async def write(writer: ReconnectingConnection) -> Completer:
        completer = Completer(writer.execute)
        completer.submit(stale, outcome)
        await completer.run_once()
        return completer

    with caplog.at_level(logging.WARNING, logger="pgq.worker"):
        completer = with_writer(db_url, write)

    assert (completer.lost, completer.given_up) == (1, 0)
    assert row(conn, stale.id) == before
    assert any(
        "lease lost" in r.getMessage() and str(stale.id) in r.getMessage() for r in caplog.records
    )


def test_the_heartbeat_reports_a_lost_lease_and_changes_nothing(
    db_url: str, conn: psycopg.Connection[Any], stale: ClaimedJob
) -> None:
    before = row(conn, stale.id)
    results: list[HeartbeatResult] = []

    async def beat(writer: ReconnectingConnection) -> HeartbeatResult:
        heartbeat = Heartbeat(writer.execute, lambda: [Held(stale, 30.0)], results.append, 30.0)
        return await heartbeat.run_once()

    result = with_writer(db_url, beat)

    assert (result.extended, result.lost, result.cancel_requested) == (0, [stale.id], [])
    assert results == [result]
    assert row(conn, stale.id) == before


# --- a running worker -----------------------------------------------------------------------


def test_a_worker_that_loses_its_lease_stops_the_task_and_leaves_the_row_alone(
    db_url: str, conn: psycopg.Connection[Any], caplog: pytest.LogCaptureFixture
) -> None:
    reg = Registry()
    reasons: list[str | None] = []

    @pgq.task(name=TASK, registry=reg, pass_context=True)
    def work(ctx: JobContext) -> None:
        deadline = time.monotonic() + WAIT_TIMEOUT
        while not ctx.should_stop() and time.monotonic() < deadline:
            time.sleep(0.02)
        reasons.append(ctx.stop_reason)

    job_id = pgq.enqueue(conn, work)
    # A short lease makes the heartbeat (every lease/3) notice the takeover quickly.
    worker = Worker(WorkerConfig(db_url, lease=1.5, burst=True, run_reaper=False), registry=reg)
    thread = threading.Thread(target=lambda: asyncio.run(worker.run_async()), daemon=True)

    with caplog.at_level(logging.WARNING, logger="pgq.worker"):
        thread.start()
        deadline = time.monotonic() + WAIT_TIMEOUT
        while row(conn, job_id)["worker_id"] != worker.config.worker_id:
            assert time.monotonic() < deadline, "the worker never claimed the job"
            time.sleep(0.02)
        second = take_over(conn, job_id)
        after_takeover = row(conn, job_id)
        thread.join(WAIT_TIMEOUT)

    assert not thread.is_alive(), "the worker did not notice the lost lease"
    assert reasons == ["lease_lost"]
    assert row(conn, job_id) == after_takeover
    assert (after_takeover["state"], after_takeover["lease_token"]) == (
        "running",
        second.lease_token,
    )
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith(f"lease lost: job {job_id} attempt 1 is no longer") for m in messages)
    assert any(m.startswith(f"lease lost: job {job_id} attempt 1 ended") for m in messages)
    assert (worker.stats.succeeded, worker.stats.released, worker.stats.lost) == (0, 0, 1)
