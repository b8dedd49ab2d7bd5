"""Failure hooks and the worker's log records, with a real Worker on a real database.

``@pgq.task(on_failure=fn)`` and ``worker.on_failure = fn`` are called as ``fn(job, exc)``
after every failed attempt: a retry, a final failure, ``Fail``, ``Retry`` and a timeout
(``exc`` is None then, nothing was raised). The task's hook runs first. A hook that raises
is logged and ignored. Log records carry job_id, task, queue and attempt as attributes and
never the job's arguments.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

import pgq
from pgq.registry import Registry, Task
from pgq.runner import ClaimedJob, JobContext
from pgq.worker import Worker, WorkerConfig, WorkerStats

SLOW = pgq.Backoff(base=3600.0, jitter=0.0)  # a retry stays queued while the test looks
SECRET = "s3cr3t-argument-value"  # in every job's args; must appear in no log record
WAIT_TIMEOUT = 30.0

Call = tuple[str, int, int, str, str, BaseException | None]  # hook, id, attempt, task, queue


@pytest.fixture
def reg() -> Registry:
    return Registry()


@pytest.fixture
def calls() -> list[Call]:
    return []


def recorder(calls: list[Call], name: str) -> Callable[[ClaimedJob, BaseException | None], None]:
    def hook(job: ClaimedJob, exc: BaseException | None) -> None:
        calls.append((name, job.id, job.attempt, job.task, job.queue, exc))

    return hook


def run_burst(url: str, reg: Registry, calls: list[Call] | None = None) -> WorkerStats:
    worker = Worker(WorkerConfig(url, burst=True, run_reaper=False, concurrency=1), registry=reg)
    if calls is not None:
        worker.on_failure = recorder(calls, "worker")
    return asyncio.run(worker.run_async())


def enqueue(conn: psycopg.Connection[Any], task: Task, **options: Any) -> int:
    """Enqueue with the task's own defaults (queue, max_attempts) and a secret argument."""
    job_id = pgq.enqueue(conn, task, {"token": SECRET}, **options)
    assert job_id is not None
    return int(job_id)


def state(conn: psycopg.Connection[Any], job_id: int) -> str:
    row = conn.execute("SELECT state::text FROM pgq.jobs WHERE id = %s", (job_id,)).fetchone()
    assert row is not None
    return str(row[0])


# --- what the hooks get ----------------------------------------------------------------------


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_hooks_get_the_job_and_the_exception_of_each_kind_of_failure(
    db_url: str, conn: psycopg.Connection[Any], reg: Registry, calls: list[Call], is_async: bool
) -> None:
    raised: dict[str, BaseException] = {
        "retry": pgq.Retry(delay=3600, reason="later"),
        "fail": pgq.Fail("no such customer"),
        "error": ValueError("bad input"),
        "last": KeyError("missing"),
    }

    def define(name: str, **options: Any) -> Task:
        def body(token: str) -> None:
            raise raised[name]

        async def body_async(token: str) -> None:
            raise raised[name]

        func = body_async if is_async else body
        on_failure = recorder(calls, "task")
        return pgq.task(  # type: ignore[no-any-return]
            func, name=name, registry=reg, backoff=SLOW, on_failure=on_failure, **options
        )

    tasks = {name: define(name) for name in ("retry", "fail", "error")}
    tasks["last"] = define("last", max_attempts=1, queue="mail")
    ids = {name: enqueue(conn, task) for name, task in tasks.items()}  # run in this order

    run_burst(db_url, reg, calls)

    expected = []
    for name, job_id in ids.items():
        queue = "mail" if name == "last" else "default"
        for hook in ("task", "worker"):  # the task's own hook first
            expected.append((hook, job_id, 1, name, queue, raised[name]))
    assert calls == expected
    assert [state(conn, ids[n]) for n in raised] == ["queued", "failed", "queued", "failed"]


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_a_timeout_calls_the_hooks_with_no_exception(
    db_url: str, conn: psycopg.Connection[Any], reg: Registry, calls: list[Call], is_async: bool
) -> None:
    if is_async:

        async def slow(ctx: JobContext, token: str) -> None:
            await asyncio.sleep(WAIT_TIMEOUT)

    else:

        def slow(ctx: JobContext, token: str) -> None:  # type: ignore[misc]
            deadline = time.monotonic() + WAIT_TIMEOUT
            while not ctx.should_stop() and time.monotonic() < deadline:
                time.sleep(0.01)

    task = pgq.task(
        slow,
        name="slow",
        registry=reg,
        timeout=0.2,
        backoff=SLOW,
        pass_context=True,
        on_failure=recorder(calls, "task"),
    )
    job_id = enqueue(conn, task)

    run_burst(db_url, reg, calls)

    assert calls == [
        ("task", job_id, 1, "slow", "default", None),
        ("worker", job_id, 1, "slow", "default", None),
    ]
    assert state(conn, job_id) == "queued"  # a timeout is retried like an error


def test_no_hook_for_success_or_snooze(
    db_url: str, conn: psycopg.Connection[Any], reg: Registry, calls: list[Call]
) -> None:
    @pgq.task(name="fine", registry=reg, on_failure=recorder(calls, "task"))
    def fine(token: str) -> None:
        pass

    @pgq.task(name="snoozing", registry=reg, on_failure=recorder(calls, "task"))
    def snoozing(token: str) -> None:
        raise pgq.Snooze(3600)

    ok, snoozed = enqueue(conn, fine), enqueue(conn, snoozing)

    stats = run_burst(db_url, reg, calls)

    assert calls == []
    assert (stats.succeeded, stats.snoozed) == (1, 1)
    assert (state(conn, ok), state(conn, snoozed)) == ("succeeded", "queued")


def test_a_raising_hook_is_logged_and_the_worker_goes_on(
    db_url: str,
    conn: psycopg.Connection[Any],
    reg: Registry,
    calls: list[Call],
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken_hook(job: ClaimedJob, exc: BaseException | None) -> None:
        raise ConnectionError("the error tracker is down")

    @pgq.task(name="failing", registry=reg, on_failure=broken_hook)
    def failing(token: str) -> None:
        raise pgq.Fail("no")

    @pgq.task(name="after", registry=reg)
    def after(token: str) -> None:
        pass

    first, second = enqueue(conn, failing), enqueue(conn, after)
    worker = Worker(WorkerConfig(db_url, burst=True, run_reaper=False, concurrency=1), reg)
    worker.on_failure = broken_hook

    with caplog.at_level(logging.ERROR, logger="pgq.worker"):
        stats = asyncio.run(worker.run_async())

    assert (state(conn, first), state(conn, second)) == ("failed", "succeeded")
    assert (stats.failed, stats.succeeded) == (1, 1)
    hook_records = [r for r in caplog.records if "on_failure hook" in r.getMessage()]
    assert len(hook_records) == 2  # the task's and the worker's, each logged
    for record in hook_records:
        assert record.exc_info is not None and isinstance(record.exc_info[1], ConnectionError)
        assert (record.job_id, record.task, record.queue, record.attempt) == (  # type: ignore[attr-defined]
            first,
            "failing",
            "default",
            1,
        )


def test_a_worker_hook_that_raises_does_not_skip_the_next_jobs_hooks(
    db_url: str, conn: psycopg.Connection[Any], reg: Registry, calls: list[Call]
) -> None:
    @pgq.task(name="bad", registry=reg, on_failure=recorder(calls, "task"))
    def bad(token: str) -> None:
        raise pgq.Fail("no")

    ids = [enqueue(conn, bad) for _ in range(2)]
    worker = Worker(WorkerConfig(db_url, burst=True, run_reaper=False, concurrency=1), reg)

    def worker_hook(job: ClaimedJob, exc: BaseException | None) -> None:
        calls.append(("worker", job.id, job.attempt, job.task, job.queue, exc))
        raise RuntimeError("hook bug")

    worker.on_failure = worker_hook
    asyncio.run(worker.run_async())

    assert [(name, job_id) for name, job_id, *_ in calls] == [
        ("task", ids[0]),
        ("worker", ids[0]),
        ("task", ids[1]),
        ("worker", ids[1]),
    ]


# --- log records -----------------------------------------------------------------------------


def test_log_records_carry_the_job_fields_and_never_the_args(
    db_url: str, conn: psycopg.Connection[Any], reg: Registry, caplog: pytest.LogCaptureFixture
) -> None:
    @pgq.task(name="app.retrying", registry=reg, backoff=SLOW)
    def retrying(token: str) -> None:
        raise RuntimeError("temporary")

    @pgq.task(name="app.failing", registry=reg, queue="mail")
    def failing(token: str) -> None:
        raise pgq.Fail("permanent")

    @pgq.task(name="app.fine", registry=reg)
    def fine(token: str) -> None:
        pass

    retried, failed, succeeded = (enqueue(conn, t) for t in (retrying, failing, fine))

    with caplog.at_level(logging.DEBUG):
        run_burst(db_url, reg)

    by_job = {
        r.job_id: r  # type: ignore[attr-defined]
        for r in caplog.records
        if r.name == "pgq.worker" and hasattr(r, "job_id")
    }
    assert set(by_job) == {retried, failed, succeeded}
    fields = {
        job_id: (r.levelname, r.task, r.queue, r.attempt)  # type: ignore[attr-defined]
        for job_id, r in by_job.items()
    }
    assert fields == {
        retried: ("WARNING", "app.retrying", "default", 1),
        failed: ("ERROR", "app.failing", "mail", 1),
        succeeded: ("DEBUG", "app.fine", "default", 1),
    }
    assert "temporary" in by_job[retried].getMessage()
    assert "permanent" in by_job[failed].getMessage()
    assert SECRET not in caplog.text
    for record in caplog.records:
        assert all(SECRET not in repr(v) for v in vars(record).values()), record
