"""Claiming: order, schedule, limit, SKIP LOCKED, and only registered task names.

The claim statement is run directly through ``store.claim_jobs`` and through a real
:class:`pgq.worker.Worker`, both against a real PostgreSQL.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest

import pgq
from pgq import store
from pgq.registry import Registry, Task
from pgq.runner import JobContext
from pgq.worker import Worker, WorkerConfig, WorkerStats

WAIT_TIMEOUT = 20.0  # seconds any bounded wait below may take before the test fails


def wait_for(condition: Callable[[], Any], timeout: float = WAIT_TIMEOUT) -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.05)
    pytest.fail(f"condition not met within {timeout}s")


def db_now(conn: psycopg.Connection[Any]) -> datetime:
    row = conn.execute("SELECT now()").fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


def claim(
    conn: psycopg.Connection[Any],
    limit: int,
    *,
    tasks: tuple[str, ...] = ("claim.record",),
    queues: tuple[str, ...] = ("default",),
    now: datetime | None = None,
    worker_id: str = "test-worker",
) -> list[int]:
    """Run the claim statement once; the claimed ids in RETURNING order."""
    statement = store.claim_jobs(
        queues=list(queues),
        tasks=list(tasks),
        leases=[30.0] * len(tasks),
        limit=limit,
        worker_id=worker_id,
        now=now,
    )
    return [row[0] for row in store.fetch(conn, statement)]


def job(conn: psycopg.Connection[Any], job_id: int) -> dict[str, Any]:
    cur = conn.execute("SELECT * FROM pgq.jobs WHERE id = %s", (job_id,))
    names = [c.name for c in cur.description or []]
    row = cur.fetchone()
    assert row is not None, f"job {job_id} is gone"
    return dict(zip(names, row, strict=True))


def run_burst(url: str, registry: Registry, **config: Any) -> WorkerStats:
    config = {"burst": True, "run_reaper": False, **config}
    return asyncio.run(Worker(WorkerConfig(url, **config), registry=registry).run_async())


@contextmanager
def worker_in_thread(url: str, registry: Registry, **config: Any) -> Iterator[Worker]:
    """A non-burst worker running in a thread until the block ends."""
    config = {"run_reaper": False, **config}
    worker = Worker(WorkerConfig(url, **config), registry=registry)
    thread = threading.Thread(target=lambda: asyncio.run(worker.run_async()), daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.stop()
        thread.join(WAIT_TIMEOUT)
        assert not thread.is_alive(), "the worker did not stop"


@pytest.fixture
def ran() -> list[int]:
    """Ids of the jobs the ``record`` task ran, in the order it ran them."""
    return []


@pytest.fixture
def registry(ran: list[int]) -> Registry:
    reg = Registry()

    @pgq.task(name="claim.record", registry=reg, pass_context=True)
    def record(ctx: JobContext) -> None:
        ran.append(ctx.id)

    return reg


@pytest.fixture
def record(registry: Registry) -> Task:
    task = registry.get("claim.record")
    assert task is not None
    return task


# --- order ----------------------------------------------------------------------------------

# label: (priority, seconds before the database's now() the job became due). Inserted in
# this order, so ids follow it; "a", "e" and "f" tie on priority and run_at and go by id.
ORDER_CASES = {
    "a": (0, 30),
    "b": (5, 10),
    "c": (5, 20),
    "d": (-3, 50),
    "e": (0, 30),
    "f": (0, 30),
    "g": (10, 1),
}
EXPECTED_ORDER = ["g", "c", "b", "a", "e", "f", "d"]


def enqueue_order_cases(conn: psycopg.Connection[Any], record: Task) -> dict[int, str]:
    now = db_now(conn)
    labels = {}
    for label, (priority, ago) in ORDER_CASES.items():
        run_at = now - timedelta(seconds=ago)
        job_id = pgq.enqueue(conn, record, priority=priority, run_at=run_at)
        labels[job_id] = label
    return labels


def test_claim_statement_orders_by_priority_then_run_at_then_id(
    conn: psycopg.Connection[Any], record: Task
) -> None:
    labels = enqueue_order_cases(conn, record)

    claimed = [claim(conn, 1) for _ in range(len(labels) + 1)]

    assert claimed[-1] == [], "every job was claimed once, so the last claim finds nothing"
    assert [labels[ids[0]] for ids in claimed[:-1]] == EXPECTED_ORDER


def test_a_batch_claim_takes_the_first_jobs_in_claim_order(
    conn: psycopg.Connection[Any], record: Task
) -> None:
    labels = enqueue_order_cases(conn, record)

    first = claim(conn, 3)

    assert sorted(labels[i] for i in first) == sorted(EXPECTED_ORDER[:3])


def test_a_worker_runs_jobs_in_claim_order(
    db_url: str, conn: psycopg.Connection[Any], registry: Registry, record: Task, ran: list[int]
) -> None:
    labels = enqueue_order_cases(conn, record)

    run_burst(db_url, registry, concurrency=1)

    assert [labels[i] for i in ran] == EXPECTED_ORDER


# --- schedule (database time) ---------------------------------------------------------------


def test_a_scheduled_job_is_claimed_at_its_run_at_and_not_before(
    conn: psycopg.Connection[Any], record: Task
) -> None:
    job_id = pgq.enqueue(conn, record, delay=3600)
    run_at = job(conn, job_id)["run_at"]

    assert claim(conn, 10) == [], "due in an hour of database time: not claimable now"
    assert claim(conn, 10, now=run_at - timedelta(microseconds=1)) == []
    assert claim(conn, 10, now=run_at) == [job_id]


def test_a_job_due_shortly_is_claimed_once_the_database_clock_reaches_it(
    conn: psycopg.Connection[Any], record: Task
) -> None:
    job_id = pgq.enqueue(conn, record, delay=1.0)
    assert claim(conn, 10) == []

    wait_for(lambda: claim(conn, 10))

    row = job(conn, job_id)
    assert row["state"] == "running"
    assert row["started_at"] >= row["run_at"]


def test_a_worker_leaves_a_job_scheduled_for_later_alone(
    db_url: str, conn: psycopg.Connection[Any], registry: Registry, record: Task, ran: list[int]
) -> None:
    later = pgq.enqueue(conn, record, delay=3600)
    due = pgq.enqueue(conn, record)

    run_burst(db_url, registry)

    assert ran == [due]
    row = job(conn, later)
    assert (row["state"], row["attempts"], row["lease_token"]) == ("queued", 0, 0)


def test_a_worker_runs_a_scheduled_job_once_it_is_due(
    db_url: str, conn: psycopg.Connection[Any], registry: Registry, record: Task, ran: list[int]
) -> None:
    with worker_in_thread(db_url, registry, poll_interval=0.1):
        job_id = pgq.enqueue(conn, record, delay=1.0)
        wait_for(lambda: job(conn, job_id)["state"] == "succeeded")

    row = job(conn, job_id)
    assert ran == [job_id]
    assert row["started_at"] >= row["run_at"]


# --- limit and SKIP LOCKED ------------------------------------------------------------------


@pytest.mark.parametrize("limit", [0, 1, 3, 10])
def test_a_claim_never_returns_more_than_its_limit(
    conn: psycopg.Connection[Any], record: Task, limit: int
) -> None:
    for _ in range(6):
        pgq.enqueue(conn, record)

    claimed = claim(conn, limit)

    assert len(claimed) == min(limit, 6)
    running = conn.execute("SELECT count(*) FROM pgq.jobs WHERE state = 'running'").fetchone()
    assert running == (len(claimed),)


def test_concurrent_claims_in_open_transactions_take_disjoint_rows(
    db_url: str, conn: psycopg.Connection[Any], record: Task
) -> None:
    ids = {pgq.enqueue(conn, record) for _ in range(8)}
    # A claim that waited for the other's locks instead of skipping them would hang: the
    # statement timeout turns that into a failure.
    timeout = "-c statement_timeout=10000"
    with (
        psycopg.connect(db_url, options=timeout) as first,
        psycopg.connect(db_url, options=timeout) as second,
    ):
        a = claim(first, 5, worker_id="first")  # first's transaction stays open
        b = claim(second, 5, worker_id="second")
        c = claim(second, 5, worker_id="second")
        first.commit()
        second.commit()

    assert len(a) == 5
    assert len(b) == 3
    assert c == []
    assert set(a).isdisjoint(b)
    assert set(a) | set(b) == ids
    rows = conn.execute("SELECT id, worker_id, lease_token FROM pgq.jobs").fetchall()
    assert {r[0]: r[1] for r in rows} == {**dict.fromkeys(a, "first"), **dict.fromkeys(b, "second")}
    assert {r[2] for r in rows} == {1}


@pytest.mark.parametrize("kinds", [("sync",), ("async",), ("sync", "async")])
def test_a_worker_never_runs_more_jobs_at_once_than_its_concurrency(
    db_url: str, conn: psycopg.Connection[Any], kinds: tuple[str, ...]
) -> None:
    """Short jobs make the worker claim ahead; the extra ones must wait for a slot."""
    reg = Registry()
    lock = threading.Lock()
    running = [0]
    peak = [0]

    def enter() -> None:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])

    def leave() -> None:
        with lock:
            running[0] -= 1

    @pgq.task(name="claim.short_sync", registry=reg)
    def short_sync() -> None:
        enter()
        time.sleep(0.005)
        leave()

    @pgq.task(name="claim.short_async", registry=reg)
    async def short_async() -> None:
        enter()
        await asyncio.sleep(0.005)
        leave()

    names = [f"claim.short_{kind}" for kind in kinds]
    pgq.enqueue_many(conn, [pgq.JobSpec(names[n % len(names)]) for n in range(300)])

    stats = run_burst(db_url, reg, concurrency=3)

    assert stats.succeeded == 300
    assert 2 <= peak[0] <= 3


# --- only registered task names -------------------------------------------------------------


def test_a_job_of_an_unregistered_task_is_left_untouched(
    db_url: str, conn: psycopg.Connection[Any], registry: Registry, record: Task, ran: list[int]
) -> None:
    stranger = pgq.enqueue(conn, "claim.not_registered_here", priority=10)
    known = pgq.enqueue(conn, record)
    before = job(conn, stranger)

    run_burst(db_url, registry)

    assert ran == [known]
    assert job(conn, known)["state"] == "succeeded"
    assert job(conn, stranger) == before
    assert (before["state"], before["attempts"], before["lease_token"]) == ("queued", 0, 0)


def test_the_claim_statement_takes_only_the_task_names_it_is_given(
    conn: psycopg.Connection[Any], record: Task
) -> None:
    pgq.enqueue(conn, "claim.not_registered_here", priority=10)
    known = pgq.enqueue(conn, record)

    assert claim(conn, 10) == [known]


def test_the_claim_statement_takes_only_the_queues_it_is_given(
    conn: psycopg.Connection[Any], record: Task
) -> None:
    elsewhere = pgq.enqueue(conn, record, queue="elsewhere")
    here = pgq.enqueue(conn, record)

    assert claim(conn, 10) == [here]
    assert claim(conn, 10, queues=("elsewhere",)) == [elsewhere]


def test_jobs_scheduled_for_later_at_a_higher_priority_hide_no_due_job(
    conn: psycopg.Connection[Any], record: Task
) -> None:
    """Each priority is read by a scan that stops at its first job scheduled for later;
    the due jobs of lower priorities are still found, in claim order."""
    now = db_now(conn)
    later = [pgq.enqueue(conn, record, priority=9, delay=3600) for _ in range(3)]
    low = pgq.enqueue(conn, record, priority=-5, run_at=now - timedelta(seconds=9))
    mid_later = pgq.enqueue(conn, record, priority=0, delay=3600)
    mids = [
        pgq.enqueue(conn, record, priority=0, run_at=now - timedelta(seconds=s)) for s in (1, 5)
    ]
    top = pgq.enqueue(conn, record, priority=9, run_at=now - timedelta(seconds=1))

    assert [claim(conn, 1) for _ in range(5)] == [[top], [mids[1]], [mids[0]], [low], []]
    assert sorted(claim(conn, 10, now=now + timedelta(hours=2))) == sorted([*later, mid_later])
