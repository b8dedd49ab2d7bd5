"""Arguments that do not bind to the task's function: refused at enqueue through a Task,
failed for good at once (no retries) by a real worker when they reach it some other way.

Jobs reach a worker with unbound arguments when they were enqueued by name (a producer
that does not import the task), or when the function's signature changed after they were
enqueued. Either way no retry can help, so the first attempt fails the job.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import psycopg
import pytest

import pgq
from pgq.registry import Registry
from pgq.worker import Worker, WorkerConfig


def job(conn: psycopg.Connection[Any], job_id: int) -> dict[str, Any]:
    cur = conn.execute("SELECT * FROM pgq.jobs WHERE id = %s", (job_id,))
    names = [c.name for c in cur.description or []]
    row = cur.fetchone()
    assert row is not None, f"job {job_id} is gone"
    return dict(zip(names, row, strict=True))


def count_jobs(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM pgq.jobs").fetchone()
    assert row is not None
    return int(row[0])


def run_burst(db_url: str, reg: Registry, hook: Any = None) -> Any:
    worker = Worker(WorkerConfig(db_url, burst=True, run_reaper=False), registry=reg)
    worker.on_failure = hook
    return asyncio.run(worker.run_async())


@pytest.fixture
def reg() -> Registry:
    return Registry()


def test_task_enqueue_refuses_unbound_arguments_and_sends_nothing(
    conn: psycopg.Connection[Any], reg: Registry
) -> None:
    @pgq.task(name="bad.send", registry=reg)
    def send(x: int) -> None:
        pass

    conn.autocommit = False
    with pytest.raises(pgq.ArgsError, match=r"send\(\) got an unexpected argument 'y'"):
        send.enqueue(conn, y=5)
    with pytest.raises(pgq.ArgsError, match="missing the required argument\\(s\\) 'x'"):
        pgq.enqueue(conn, send, {})
    with pytest.raises(pgq.ArgsError):
        pgq.enqueue_many(conn, [send.spec(x=1), send.spec(z=1)])
    # Nothing reached the server: the caller's transaction is still usable and empty.
    good = send.enqueue(conn, x=1)
    conn.commit()
    conn.autocommit = True
    assert count_jobs(conn) == 1
    assert job(conn, good)["args"] == {"x": 1}


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_a_worker_fails_a_job_whose_arguments_do_not_bind_at_once(
    db_url: str,
    conn: psycopg.Connection[Any],
    reg: Registry,
    is_async: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ran: list[int] = []
    if is_async:

        async def body(x: int) -> None:
            ran.append(x)

    else:

        def body(x: int) -> None:  # type: ignore[misc]
            ran.append(x)

    pgq.task(body, name="bad.body", registry=reg)
    # Enqueued by name, as a producer without the task's code does: not checked there.
    bad = pgq.enqueue(conn, "bad.body", {"y": 5}, max_attempts=5)
    missing = pgq.enqueue(conn, "bad.body", {}, max_attempts=5)
    good = pgq.enqueue(conn, "bad.body", {"x": 1})
    hooked: list[tuple[int, BaseException | None]] = []

    with caplog.at_level(logging.ERROR, logger="pgq.worker"):
        stats = run_burst(db_url, reg, lambda j, exc: hooked.append((j.id, exc)))

    assert ran == [1], "the job whose arguments bind ran; the others never started"
    assert (stats.failed, stats.succeeded, stats.retried) == (2, 1, 0)
    for job_id, message in (
        (bad, "body() got an unexpected argument 'y'; it takes 'x'"),
        (missing, "body() is missing the required argument(s) 'x'"),
    ):
        row = job(conn, job_id)
        assert (row["state"], row["attempts"], row["max_attempts"]) == ("failed", 1, 5)
        assert row["finished_at"] is not None and row["lease_expires_at"] is None
        [error] = row["errors"]
        assert (error["attempt"], error["kind"], error["message"]) == (
            1,
            "bad_arguments",
            message,
        )
        assert f"job {job_id} (bad.body) attempt 1/5 failed for good" in caplog.text
    assert job(conn, good)["state"] == "succeeded"
    assert sorted(job_id for job_id, _ in hooked) == sorted([bad, missing])
    assert all(isinstance(exc, pgq.ArgsError) for _, exc in hooked)


def test_a_signature_that_changed_after_enqueue_fails_old_jobs_once(
    db_url: str, conn: psycopg.Connection[Any]
) -> None:
    old = Registry()

    @pgq.task(name="bad.report", registry=old)
    def report_v1(day: str) -> None:
        pass

    job_id = report_v1.enqueue(conn, day="2026-01-01")
    new = Registry()

    @pgq.task(name="bad.report", registry=new, pass_context=True)
    def report_v2(ctx: Any, day: str, region: str) -> None:
        pass

    run_burst(db_url, new)

    row = job(conn, job_id)
    assert (row["state"], row["attempts"]) == ("failed", 1)
    assert row["errors"][0]["message"] == (
        "report_v2() is missing the required argument(s) 'region'"
    )


def test_a_context_task_binds_its_arguments_after_the_context(
    db_url: str, conn: psycopg.Connection[Any], reg: Registry
) -> None:
    seen: list[tuple[int, int]] = []

    @pgq.task(name="bad.ctx", registry=reg, pass_context=True)
    def with_ctx(ctx: pgq.JobContext, n: int) -> None:
        seen.append((ctx.id, n))

    job_id = with_ctx.enqueue(conn, n=3)
    with pytest.raises(pgq.ArgsError, match="unexpected argument 'ctx'"):
        with_ctx.enqueue(conn, ctx=1, n=3)

    run_burst(db_url, reg)

    assert seen == [(job_id, 3)]
    assert job(conn, job_id)["state"] == "succeeded"


def test_a_refused_async_job_gives_its_slot_back_when_sync_and_async_tasks_share_slots(
    db_url: str, conn: psycopg.Connection[Any], reg: Registry
) -> None:
    ran: list[str] = []

    @pgq.task(name="bad.async_one", registry=reg)
    async def async_one(x: int) -> None:
        ran.append("async")

    @pgq.task(name="bad.sync_one", registry=reg)
    def sync_one(x: int) -> None:
        ran.append("sync")

    bad = [pgq.enqueue(conn, "bad.async_one", {}, priority=5) for _ in range(3)]
    pgq.enqueue(conn, async_one, {"x": 1})
    pgq.enqueue(conn, sync_one, {"x": 1})
    worker = Worker(WorkerConfig(db_url, burst=True, run_reaper=False, concurrency=1), registry=reg)

    # With the refused jobs' slots kept, the good ones would wait forever (burst never ends).
    stats = asyncio.run(asyncio.wait_for(worker.run_async(), 30))

    assert sorted(ran) == ["async", "sync"]
    assert (stats.failed, stats.succeeded) == (3, 2)
    assert {job(conn, job_id)["state"] for job_id in bad} == {"failed"}
