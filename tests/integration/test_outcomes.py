"""What each way a task can end does to its job's row: state, attempts, run_at, errors.

A real :class:`pgq.worker.Worker` runs in-process in burst mode against a real PostgreSQL,
with tasks registered into a registry of the test's own. Times are compared in database
time only: a delay is read off the row (``run_at`` minus the error's ``at``, both written
by one statement) or bracketed by the database's ``now()`` before and after the run.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest

import pgq
from pgq import admin
from pgq.registry import Registry, Task
from pgq.runner import ClaimedJob, JobContext
from pgq.worker import Worker, WorkerConfig, WorkerStats

WAIT_TIMEOUT = 30.0  # seconds any bounded wait below may take before the test fails
FAST = pgq.Backoff(base=0.01, jitter=0.0)  # retries come due at once
SLOW = pgq.Backoff(base=30.0)  # retries stay in the future while the test looks


def db_now(conn: psycopg.Connection[Any]) -> datetime:
    row = conn.execute("SELECT now()").fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


def job(conn: psycopg.Connection[Any], job_id: int) -> dict[str, Any]:
    cur = conn.execute("SELECT * FROM pgq.jobs WHERE id = %s", (job_id,))
    names = [c.name for c in cur.description or []]
    row = cur.fetchone()
    assert row is not None, f"job {job_id} is gone"
    return dict(zip(names, row, strict=True))


def last_error_delay(conn: psycopg.Connection[Any], job_id: int) -> float:
    """Seconds between the last error's time and run_at: the delay the worker chose."""
    row = conn.execute(
        "SELECT extract(epoch FROM run_at - (errors->-1->>'at')::timestamptz)::float8 "
        "FROM pgq.jobs WHERE id = %s",
        (job_id,),
    ).fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


def make_worker(url: str, registry: Registry, **config: Any) -> Worker:
    config = {"burst": True, "run_reaper": False, **config}
    return Worker(WorkerConfig(url, **config), registry=registry)


def run_burst(url: str, registry: Registry, **config: Any) -> WorkerStats:
    return asyncio.run(make_worker(url, registry, **config).run_async())


def run_until(
    url: str,
    registry: Registry,
    conn: psycopg.Connection[Any],
    job_id: int,
    done: Callable[[dict[str, Any]], bool],
) -> dict[str, Any]:
    """Run burst workers until ``done(row)``: retries come due between runs."""
    deadline = time.monotonic() + WAIT_TIMEOUT
    while time.monotonic() < deadline:
        run_burst(url, registry)
        row = job(conn, job_id)
        if done(row):
            return row
        time.sleep(0.02)
    pytest.fail(f"job {job_id} did not get there within {WAIT_TIMEOUT}s: {job(conn, job_id)}")


@pytest.fixture
def reg() -> Registry:
    return Registry()


def define(reg: Registry, body: Callable[..., Any], is_async: bool, **options: Any) -> Task:
    """Register ``body`` as a sync or an async task (same behaviour either way)."""
    name = f"outcomes.{body.__name__}.{'async' if is_async else 'sync'}"
    if is_async:

        async def run_async(*args: Any, **kwargs: Any) -> Any:
            return body(*args, **kwargs)

        return pgq.task(run_async, name=name, registry=reg, **options)  # type: ignore[no-any-return]
    return pgq.task(body, name=name, registry=reg, **options)  # type: ignore[no-any-return]


both_kinds = pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])


# --- one attempt, each outcome --------------------------------------------------------------


@both_kinds
def test_a_task_that_returns_succeeds(
    db_url: str, conn: psycopg.Connection[Any], reg: Registry, is_async: bool
) -> None:
    def returns(n: int) -> int:
        return n * 2

    task = define(reg, returns, is_async)
    job_id = pgq.enqueue(conn, task, {"n": 21})
    before = db_now(conn)

    stats = run_burst(db_url, reg)

    row = job(conn, job_id)
    assert (row["state"], row["attempts"], row["errors"]) == ("succeeded", 1, [])
    assert row["finished_at"] >= before
    assert row["lease_expires_at"] is None
    assert stats.succeeded == 1


@both_kinds
def test_retry_without_a_delay_requeues_after_the_tasks_backoff_and_counts(
    db_url: str, conn: psycopg.Connection[Any], reg: Registry, is_async: bool
) -> None:
    def retries() -> None:
        raise pgq.Retry()

    task = define(reg, retries, is_async, backoff=SLOW)
    job_id = pgq.enqueue(conn, task)

    run_burst(db_url, reg)

    row = job(conn, job_id)
    assert (row["state"], row["attempts"], row["finished_at"]) == ("queued", 1, None)
    low, high = SLOW.bounds(1)
    assert low <= last_error_delay(conn, job_id) <= high
    [error] = row["errors"]
    assert (error["attempt"], error["kind"], error["message"]) == (1, "Retry", "retry requested")


@both_kinds
def test_retry_with_a_delay_requeues_after_exactly_that_delay(
    db_url: str, conn: psycopg.Connection[Any], reg: Registry, is_async: bool
) -> None:
    def retries_in_a_minute() -> None:
        raise pgq.Retry(delay=60, reason="the API said later")

    task = define(reg, retries_in_a_minute, is_async, backoff=FAST)
    job_id = pgq.enqueue(conn, task)

    run_burst(db_url, reg)

    row = job(conn, job_id)
    assert (row["state"], row["attempts"]) == ("queued", 1)
    assert last_error_delay(conn, job_id) == pytest.approx(60)
    [error] = row["errors"]
    assert (error["kind"], error["message"]) == ("Retry", "the API said later")


def test_retry_on_the_last_attempt_fails_the_job(
    db_url: str, conn: psycopg.Connection[Any], reg: Registry
) -> None:
    @pgq.task(name="outcomes.retry_last", registry=reg, max_attempts=1)
    def retry_last() -> None:
        raise pgq.Retry(delay=600)

    job_id = pgq.enqueue(conn, retry_last)
    enqueued = job(conn, job_id)

    stats = run_burst(db_url, reg)

    row = job(conn, job_id)
    assert (row["state"], row["attempts"], len(row["errors"])) == ("failed", 1, 1)
    assert row["finished_at"] is not None
    assert row["run_at"] == enqueued["run_at"], "a failed job is not due again later"
    assert stats.failed == 1


@both_kinds
def test_snooze_requeues_after_the_delay_without_counting_the_attempt(
    db_url: str, conn: psycopg.Connection[Any], reg: Registry, is_async: bool
) -> None:
    def snoozes() -> None:
        raise pgq.Snooze(120)

    task = define(reg, snoozes, is_async)
    job_id = pgq.enqueue(conn, task)
    before = db_now(conn)

    stats = run_burst(db_url, reg)

    after = db_now(conn)
    row = job(conn, job_id)
    assert (row["state"], row["attempts"], row["errors"]) == ("queued", 0, [])
    assert before + timedelta(seconds=120) <= row["run_at"] <= after + timedelta(seconds=120)
    assert row["lease_token"] == 1, "it was claimed once"
    assert stats.snoozed == 1


@both_kinds
def test_fail_fails_the_job_at_once(
    db_url: str, conn: psycopg.Connection[Any], reg: Registry, is_async: bool
) -> None:
    def gives_up() -> None:
        raise pgq.Fail("the order no longer exists")

    task = define(reg, gives_up, is_async, max_attempts=5)
    job_id = pgq.enqueue(conn, task)

    run_burst(db_url, reg)

    row = job(conn, job_id)
    assert (row["state"], row["attempts"]) == ("failed", 1)
    assert row["finished_at"] is not None
    [error] = row["errors"]
    assert (error["attempt"], error["kind"], error["message"], error["traceback"]) == (
        1,
        "Fail",
        "the order no longer exists",
        None,
    )


class PaymentDeclinedError(Exception):
    pass


@both_kinds
def test_an_exception_is_retried_with_backoff(
    db_url: str, conn: psycopg.Connection[Any], reg: Registry, is_async: bool
) -> None:
    def declined() -> None:
        raise PaymentDeclinedError("card 4242 declined")

    task = define(reg, declined, is_async, backoff=SLOW)
    job_id = pgq.enqueue(conn, task)

    stats = run_burst(db_url, reg)

    row = job(conn, job_id)
    assert (row["state"], row["attempts"], row["finished_at"]) == ("queued", 1, None)
    low, high = SLOW.bounds(1)
    assert low <= last_error_delay(conn, job_id) <= high
    [error] = row["errors"]
    assert error["kind"] == f"{PaymentDeclinedError.__module__}.PaymentDeclinedError"
    assert error["message"] == "card 4242 declined"
    assert "PaymentDeclinedError: card 4242 declined" in error["traceback"]
    assert stats.retried == 1


# --- many attempts --------------------------------------------------------------------------


def test_an_exception_fails_the_job_at_max_attempts_with_one_error_per_attempt(
    db_url: str, conn: psycopg.Connection[Any], reg: Registry
) -> None:
    @pgq.task(name="outcomes.flaky", registry=reg, max_attempts=3, backoff=FAST, pass_context=True)
    def flaky(ctx: JobContext) -> None:
        raise ValueError(f"boom on attempt {ctx.attempt}")

    job_id = pgq.enqueue(conn, flaky)

    row = run_until(db_url, reg, conn, job_id, lambda r: r["state"] != "queued")

    assert (row["state"], row["attempts"]) == ("failed", 3)
    assert row["finished_at"] is not None
    assert [e["attempt"] for e in row["errors"]] == [1, 2, 3]
    assert [e["kind"] for e in row["errors"]] == ["ValueError"] * 3
    assert [e["message"] for e in row["errors"]] == [f"boom on attempt {n}" for n in (1, 2, 3)]
    for error in row["errors"]:
        assert error["traceback"].startswith("Traceback (most recent call last)")
        assert error["traceback"].rstrip().endswith(f"ValueError: {error['message']}")
        assert error["worker_id"]
        assert datetime.fromisoformat(error["at"]) <= row["finished_at"]


def test_a_task_that_fails_then_succeeds_ends_succeeded_with_the_earlier_errors(
    db_url: str, conn: psycopg.Connection[Any], reg: Registry
) -> None:
    @pgq.task(name="outcomes.second_time", registry=reg, backoff=FAST, pass_context=True)
    def second_time(ctx: JobContext) -> None:
        if ctx.attempt == 1:
            raise ConnectionError("upstream down")

    job_id = pgq.enqueue(conn, second_time)

    row = run_until(db_url, reg, conn, job_id, lambda r: r["state"] != "queued")

    assert (row["state"], row["attempts"]) == ("succeeded", 2)
    assert [(e["attempt"], e["kind"]) for e in row["errors"]] == [(1, "ConnectionError")]


def test_burst_does_not_exit_while_a_job_it_retried_is_due(
    db_url: str, conn: psycopg.Connection[Any], reg: Registry
) -> None:
    @pgq.task(name="outcomes.again_now", registry=reg, pass_context=True)
    def again_now(ctx: JobContext) -> None:
        if ctx.attempt == 1:
            raise pgq.Retry(delay=0)

    job_id = pgq.enqueue(conn, again_now)

    run_burst(db_url, reg)

    assert (job(conn, job_id)["state"], job(conn, job_id)["attempts"]) == ("succeeded", 2)


# --- what gets written about an error -------------------------------------------------------


def test_nul_characters_are_stripped_from_error_text(
    db_url: str, conn: psycopg.Connection[Any], reg: Registry
) -> None:
    @pgq.task(name="outcomes.nul", registry=reg, backoff=SLOW)
    def nul() -> None:
        raise RuntimeError("before\x00after")

    job_id = pgq.enqueue(conn, nul)

    run_burst(db_url, reg)

    row = job(conn, job_id)
    assert (row["state"], row["attempts"]) == ("queued", 1), "the outcome was written"
    [error] = row["errors"]
    assert error["message"] == "beforeafter"
    assert "\x00" not in error["traceback"]
    assert "RuntimeError: beforeafter" in error["traceback"]


def test_a_message_with_a_lone_surrogate_is_still_written(
    db_url: str, conn: psycopg.Connection[Any], reg: Registry
) -> None:
    @pgq.task(name="outcomes.surrogate", registry=reg, backoff=SLOW)
    def surrogate() -> None:
        raise RuntimeError("lone \udcff surrogate")

    @pgq.task(name="outcomes.fine", registry=reg)
    def fine() -> None:
        pass

    bad = pgq.enqueue(conn, surrogate)
    good = pgq.enqueue(conn, fine)

    run_burst(db_url, reg)

    row = job(conn, bad)
    assert (row["state"], row["attempts"]) == ("queued", 1), "the outcome was written"
    [error] = row["errors"]
    assert error["message"].startswith("lone ")
    assert error["message"].endswith(" surrogate")
    assert "\udcff" not in error["message"]
    assert job(conn, good)["state"] == "succeeded", "a batch with it in was written"


def test_a_long_message_and_traceback_are_capped(
    db_url: str, conn: psycopg.Connection[Any], reg: Registry
) -> None:
    @pgq.task(name="outcomes.verbose", registry=reg, backoff=SLOW)
    def verbose() -> None:
        raise RuntimeError("x" * 100_000)

    job_id = pgq.enqueue(conn, verbose)

    run_burst(db_url, reg)

    [error] = job(conn, job_id)["errors"]
    assert error["message"].startswith("xxx")
    assert len(error["message"]) < 10_000
    assert len(error["traceback"]) < 20_000


# --- timeouts -------------------------------------------------------------------------------


@pytest.mark.parametrize(("max_attempts", "state"), [(1, "failed"), (2, "queued")])
def test_an_async_task_past_its_timeout_is_cancelled_and_counts_as_a_timeout(
    db_url: str, conn: psycopg.Connection[Any], reg: Registry, max_attempts: int, state: str
) -> None:
    seen: list[str] = []

    @pgq.task(name="outcomes.slow_async", registry=reg, timeout=0.3, backoff=SLOW)
    async def slow_async() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise
        seen.append("finished")

    job_id = pgq.enqueue(conn, slow_async, max_attempts=max_attempts)

    run_burst(db_url, reg)

    assert seen == ["cancelled"]
    row = job(conn, job_id)
    assert (row["state"], row["attempts"]) == (state, 1)
    [error] = row["errors"]
    assert (error["attempt"], error["kind"]) == (1, "timeout")
    assert "0.3" in error["message"]


def test_a_sync_task_past_its_timeout_sees_the_flag_and_counts_as_a_timeout(
    db_url: str, conn: psycopg.Connection[Any], reg: Registry
) -> None:
    seen: list[tuple[bool, bool]] = []

    @pgq.task(name="outcomes.polite", registry=reg, timeout=0.3, max_attempts=1, pass_context=True)
    def polite(ctx: JobContext) -> str:
        seen.append((ctx.should_stop(), ctx.timed_out))
        deadline = time.monotonic() + WAIT_TIMEOUT
        while not ctx.should_stop() and time.monotonic() < deadline:
            time.sleep(0.02)
        seen.append((ctx.should_stop(), ctx.timed_out))
        return "stopped early, as asked"

    job_id = pgq.enqueue(conn, polite)

    run_burst(db_url, reg)

    assert seen == [(False, False), (True, True)]
    row = job(conn, job_id)
    assert (row["state"], row["attempts"]) == ("failed", 1)
    [error] = row["errors"]
    assert (error["attempt"], error["kind"]) == (1, "timeout")


@pytest.mark.parametrize("ending", ["returns", "raises"])
def test_a_sync_task_that_ignores_its_timeout_counts_as_a_timeout_when_it_ends(
    db_url: str, conn: psycopg.Connection[Any], reg: Registry, ending: str
) -> None:
    @pgq.task(name="outcomes.stubborn", registry=reg, timeout=0.2, backoff=SLOW)
    def stubborn() -> None:
        time.sleep(0.8)  # not interrupted: Python cannot stop a thread
        if ending == "raises":
            raise ValueError("too late anyway")

    job_id = pgq.enqueue(conn, stubborn)

    run_burst(db_url, reg)

    row = job(conn, job_id)
    assert (row["state"], row["attempts"]) == ("queued", 1)
    assert [(e["attempt"], e["kind"]) for e in row["errors"]] == [(1, "timeout")]


WARM_UP_JOBS = 5  # instant jobs that teach a worker to claim ahead of its free slots
CLAIMED_AHEAD = 10


def warm_up_then(conn: psycopg.Connection[Any], reg: Registry, *specs: pgq.JobSpec) -> list[int]:
    """Enqueue instant jobs first (highest priority), then ``specs`` in order of priority.

    A worker with one slot claims one job, learns that jobs are instant, and then claims
    every other job in one go: the ones behind the first wait in its threads' queue."""

    @pgq.task(name="outcomes.instant", registry=reg)
    def instant() -> None:
        return None

    warm_up = [pgq.JobSpec("outcomes.instant", priority=100)] * WARM_UP_JOBS
    ids = pgq.enqueue_many(conn, [*warm_up, *specs])
    return ids[WARM_UP_JOBS:]  # type: ignore[no-any-return]


def test_a_claimed_ahead_sync_jobs_timeout_counts_from_when_it_starts(
    db_url: str, conn: psycopg.Connection[Any], reg: Registry
) -> None:
    """Jobs waiting behind a slow one in the worker's queue are not timed while they wait."""

    @pgq.task(name="outcomes.slow_first", registry=reg, timeout=5.0)
    def slow_first() -> None:
        time.sleep(0.6)

    @pgq.task(name="outcomes.quick", registry=reg, timeout=0.3, max_attempts=1)
    def quick() -> None:
        return None

    slow, *quicks = warm_up_then(
        conn,
        reg,
        pgq.JobSpec("outcomes.slow_first", priority=50),
        *[pgq.JobSpec("outcomes.quick")] * CLAIMED_AHEAD,
    )

    run_burst(db_url, reg, concurrency=1)

    rows = [job(conn, job_id) for job_id in (slow, *quicks)]
    assert [(r["state"], r["errors"]) for r in rows] == [("succeeded", [])] * len(rows)
    # They were claimed together with the slow job and waited out its 0.6 s after it.
    assert all(r["started_at"] == rows[0]["started_at"] for r in rows)
    assert all(r["finished_at"] >= rows[0]["finished_at"] for r in rows)


def test_a_claimed_ahead_sync_job_cancelled_while_it_waits_never_runs(
    db_url: str, conn: psycopg.Connection[Any], reg: Registry
) -> None:
    gate = threading.Event()
    ran: list[int] = []

    @pgq.task(name="outcomes.gated", registry=reg, pass_context=True)
    def gated(ctx: JobContext) -> None:
        gate.wait(2 * WAIT_TIMEOUT)  # longer than any wait below: a slow cancel fails them
        ran.append(ctx.id)

    @pgq.task(name="outcomes.recorded", registry=reg, pass_context=True)
    def recorded(ctx: JobContext) -> None:
        ran.append(ctx.id)

    first, *ahead = warm_up_then(
        conn,
        reg,
        pgq.JobSpec("outcomes.gated", priority=50),
        *[pgq.JobSpec("outcomes.recorded")] * 3,
    )
    worker = make_worker(db_url, reg, concurrency=1, lease=0.6)  # heartbeats every 0.2 s
    thread = threading.Thread(target=asyncio.run, args=(worker.run_async(),))
    thread.start()
    try:
        wait_until(lambda: all(job(conn, j)["state"] == "running" for j in ahead))
        result = admin.cancel_jobs(conn, [ahead[1]])
        assert result.cancel_requested == [ahead[1]]
        wait_until(lambda: job(conn, ahead[1])["state"] == "cancelled")
        assert ran == []  # ended while the gated job still held the only slot
    finally:
        gate.set()
        thread.join(WAIT_TIMEOUT)
    assert not thread.is_alive()
    assert ran == [first, ahead[0], ahead[2]]
    assert [job(conn, j)["state"] for j in (first, *ahead)] == [
        "succeeded",
        "succeeded",
        "cancelled",
        "succeeded",
    ]
    assert job(conn, ahead[1])["attempts"] == 1


def wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_TIMEOUT
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not true within {WAIT_TIMEOUT}s")
        time.sleep(0.02)


# --- the job context and failure hooks ------------------------------------------------------


@both_kinds
def test_pass_context_gives_the_task_its_job(
    db_url: str, conn: psycopg.Connection[Any], reg: Registry, is_async: bool
) -> None:
    seen: list[JobContext] = []

    def introspect(ctx: JobContext, word: str) -> None:
        assert not ctx.should_stop()
        assert word == "hello"
        seen.append(ctx)

    task = define(reg, introspect, is_async, pass_context=True, queue="mail")
    job_id = pgq.enqueue(conn, task, {"word": "hello"})

    worker = make_worker(db_url, reg)
    asyncio.run(worker.run_async())

    [ctx] = seen
    row = job(conn, job_id)
    assert row["state"] == "succeeded"
    assert (ctx.id, ctx.attempt, ctx.queue) == (job_id, 1, "mail")
    assert ctx.enqueued_at == row["created_at"]
    assert ctx.worker_id == worker.config.worker_id == row["worker_id"]


def test_failure_hooks_get_the_job_and_the_exception_and_a_broken_hook_is_survived(
    db_url: str, conn: psycopg.Connection[Any], reg: Registry, caplog: pytest.LogCaptureFixture
) -> None:
    task_hook: list[tuple[int, BaseException | None]] = []
    worker_hook: list[tuple[int, BaseException | None]] = []
    raised: list[BaseException] = []

    def broken_hook(job: ClaimedJob, exc: BaseException | None) -> None:
        raise RuntimeError("the error tracker is down")

    @pgq.task(
        name="outcomes.hooked",
        registry=reg,
        max_attempts=1,
        priority=10,
        on_failure=lambda job, exc: task_hook.append((job.id, exc)),
    )
    def hooked() -> None:
        raised.append(KeyError("missing"))
        raise raised[-1]

    @pgq.task(name="outcomes.badly_hooked", registry=reg, priority=5, on_failure=broken_hook)
    def badly_hooked() -> None:
        raise pgq.Fail("nope")

    @pgq.task(name="outcomes.after", registry=reg, priority=0)
    def after() -> None:
        pass

    first = pgq.enqueue(conn, hooked)
    second = pgq.enqueue(conn, badly_hooked)
    third = pgq.enqueue(conn, after)
    worker = make_worker(db_url, reg, concurrency=1)
    worker.on_failure = lambda job, exc: worker_hook.append((job.id, exc))

    with caplog.at_level(logging.ERROR, logger="pgq.worker"):
        stats = asyncio.run(worker.run_async())

    assert task_hook == [(first, raised[0])]
    assert [job_id for job_id, _ in worker_hook] == [first, second]
    assert worker_hook[0][1] is raised[0]
    assert isinstance(worker_hook[1][1], pgq.Fail)
    assert [job(conn, i)["state"] for i in (first, second, third)] == [
        "failed",
        "failed",
        "succeeded",
    ]
    assert stats.succeeded == 1
    assert any("on_failure hook" in r.getMessage() for r in caplog.records)


def test_a_worker_keeps_running_jobs_while_one_task_is_slow(
    db_url: str, conn: psycopg.Connection[Any], reg: Registry
) -> None:
    """Sync tasks run in threads: one blocked task does not hold up the others."""
    release = threading.Event()

    @pgq.task(name="outcomes.blocker", registry=reg, priority=10)
    def blocker() -> None:
        release.wait(WAIT_TIMEOUT)

    @pgq.task(name="outcomes.quick", registry=reg, pass_context=True)
    def quick(ctx: JobContext) -> None:
        if ctx.id == last:
            release.set()

    blocked = pgq.enqueue(conn, blocker)
    last = pgq.enqueue_many(conn, [quick.spec() for _ in range(5)])[-1]

    run_burst(db_url, reg, concurrency=2)

    assert release.is_set(), "the quick jobs ran while the blocker waited"
    assert job(conn, blocked)["state"] == "succeeded"


# --- shutdown -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ending", "state", "attempts"),
    [("returns", "succeeded", 1), ("snoozes", "queued", 0)],
)
def test_during_the_grace_period_the_tasks_own_outcome_is_written(
    db_url: str,
    conn: psycopg.Connection[Any],
    reg: Registry,
    ending: str,
    state: str,
    attempts: int,
) -> None:
    """A task that sees should_stop() at shutdown chooses: return (done) or Snooze (again)."""
    started = threading.Event()

    @pgq.task(name="outcomes.winds_down", registry=reg, pass_context=True)
    def winds_down(ctx: JobContext) -> None:
        started.set()
        deadline = time.monotonic() + WAIT_TIMEOUT
        while not ctx.should_stop() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert ctx.stop_reason == "shutdown", "the task is told why it should stop"
        assert ctx.interrupt is None, "within the grace, nothing has decided for the task"
        if ending == "snoozes":
            raise pgq.Snooze(0)

    job_id = pgq.enqueue(conn, winds_down)
    worker = make_worker(db_url, reg, burst=False, grace=WAIT_TIMEOUT)
    thread = threading.Thread(target=lambda: asyncio.run(worker.run_async()), daemon=True)
    thread.start()
    assert started.wait(WAIT_TIMEOUT)

    worker.stop()
    thread.join(WAIT_TIMEOUT)

    assert not thread.is_alive()
    row = job(conn, job_id)
    assert (row["state"], row["attempts"], row["errors"]) == (state, attempts, [])
