"""Stored results: what a task returns lands on its row, capped and checked like args; read
with pgq.result through every session kind; awaited with pgq.wait (LISTEN and polling).

Real workers (in-process, burst mode) against a real PostgreSQL; nothing mocked.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

import pgq
from pgq import admin, reaper, results, store
from pgq.registry import Registry, Task
from pgq.runner import ClaimedJob
from pgq.worker import Worker, WorkerConfig, WorkerStats

WAIT_TIMEOUT = 30.0
Conn = psycopg.Connection[Any]


def run_burst(url: str, registry: Registry) -> WorkerStats:
    worker = Worker(WorkerConfig(url, burst=True, run_reaper=False), registry=registry)
    return asyncio.run(worker.run_async())


def row(conn: Conn, job_id: int) -> dict[str, Any]:
    cur = conn.execute("SELECT * FROM pgq.jobs WHERE id = %s", (job_id,))
    names = [c.name for c in cur.description or []]
    values = cur.fetchone()
    assert values is not None
    return dict(zip(names, values, strict=True))


@pytest.fixture
def reg() -> Registry:
    return Registry()


def define(reg: Registry, body: Callable[..., Any], is_async: bool, **options: Any) -> Task:
    name = f"results.{body.__name__}.{'async' if is_async else 'sync'}"
    if is_async:

        async def run_async(*args: Any, **kwargs: Any) -> Any:
            return body(*args, **kwargs)

        return pgq.task(run_async, name=name, registry=reg, **options)  # type: ignore[no-any-return]
    return pgq.task(body, name=name, registry=reg, **options)  # type: ignore[no-any-return]


both_kinds = pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])


class InThread:
    """Run ``call`` in a thread; ``result()`` joins it and returns or raises its outcome."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self._outcome: list[Any] = []
        self._thread = threading.Thread(target=self._run, args=(call,), daemon=True)
        self._thread.start()

    def _run(self, call: Callable[[], Any]) -> None:
        try:
            self._outcome.append(("ok", call()))
        except BaseException as exc:
            self._outcome.append(("raised", exc))

    def result(self) -> Any:
        self._thread.join(WAIT_TIMEOUT)
        assert self._outcome, "the call did not end"
        kind, value = self._outcome[0]
        if kind == "raised":
            raise value
        return value


def waiter(target: Any, job_id: int) -> InThread:
    return InThread(lambda: pgq.wait(target, job_id, timeout=WAIT_TIMEOUT))


def wait_until(condition: Callable[[], Any]) -> None:
    import time

    deadline = time.monotonic() + WAIT_TIMEOUT
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not true within {WAIT_TIMEOUT}s")
        time.sleep(0.01)


# --- stored results -------------------------------------------------------------------------


@both_kinds
def test_a_returned_value_is_stored_and_none_stores_nothing(
    db_url: str, conn: Conn, reg: Registry, is_async: bool
) -> None:
    def doubles(n: int) -> Any:
        return None if n == 0 else {"n": n * 2, "list": [1, "two", None, 3.5], "ok": True}

    task = define(reg, doubles, is_async)
    with_value = pgq.enqueue(conn, task, {"n": 21})
    without = pgq.enqueue(conn, task, {"n": 0})

    stats = run_burst(db_url, reg)

    assert stats.succeeded == 2
    assert row(conn, with_value)["result"] == {"n": 42, "list": [1, "two", None, 3.5], "ok": True}
    assert (row(conn, without)["state"], row(conn, without)["result"]) == ("succeeded", None)
    assert pgq.result(conn, with_value)["n"] == 42
    assert pgq.result(conn, without) is None


@pytest.mark.parametrize("value", [7, "text", [1, 2], 0.5, False, {"nested": {"deep": [{}]}}])
def test_any_json_value_is_a_result(db_url: str, conn: Conn, reg: Registry, value: Any) -> None:
    task = pgq.task(lambda: value, name="results.value", registry=reg)
    job_id = pgq.enqueue(conn, task)

    run_burst(db_url, reg)

    assert pgq.result(conn, job_id) == value


@both_kinds
def test_a_result_that_is_not_json_fails_the_attempt_naming_the_task(
    db_url: str, conn: Conn, reg: Registry, is_async: bool
) -> None:
    def returns_a_set() -> Any:
        return {"ids": {1, 2}}

    task = define(reg, returns_a_set, is_async, max_attempts=1)
    job_id = pgq.enqueue(conn, task)

    run_burst(db_url, reg)

    job = row(conn, job_id)
    assert (job["state"], job["result"]) == ("failed", None)
    (error,) = job["errors"]
    assert error["kind"] == "pgq.errors.ResultError"
    assert task.name in error["message"]
    assert "result['ids'] is a set" in error["message"]


def test_a_result_over_the_cap_fails_and_one_under_it_is_stored(
    db_url: str, conn: Conn, reg: Registry
) -> None:
    task = pgq.task(lambda size: "x" * size, name="results.sized", registry=reg, max_attempts=1)
    previous = pgq.set_result_max_bytes(100)
    try:
        small = pgq.enqueue(conn, task, {"size": 98})  # 100 bytes with its quotes
        big = pgq.enqueue(conn, task, {"size": 99})
        run_burst(db_url, reg)
    finally:
        pgq.set_result_max_bytes(previous)

    assert pgq.result(conn, small) == "x" * 98
    job = row(conn, big)
    assert (job["state"], job["result"]) == ("failed", None)
    assert job["errors"][0]["kind"] == "pgq.errors.ResultTooLargeError"
    assert "101 bytes" in job["errors"][0]["message"]


@pytest.mark.parametrize("value", ["nul \x00 inside", float("nan"), {1: "int key"}])
def test_values_postgresql_cannot_store_are_refused_before_the_write(
    db_url: str, conn: Conn, reg: Registry, value: Any
) -> None:
    task = pgq.task(lambda: value, name="results.bad", registry=reg, max_attempts=1)
    job_id = pgq.enqueue(conn, task)

    stats = run_burst(db_url, reg)

    assert stats.failed == 1
    assert row(conn, job_id)["errors"][0]["kind"] == "pgq.errors.ResultError"


def test_results_and_plain_successes_in_one_batch_are_all_written(
    db_url: str, conn: Conn, reg: Registry
) -> None:
    task = pgq.task(lambda i: i if i % 2 else None, name="results.half", registry=reg)
    ids = pgq.enqueue_many(conn, [task.spec(i=i) for i in range(200)])

    stats = run_burst(db_url, reg)

    assert stats.succeeded == 200
    stored = dict(conn.execute("SELECT id, result FROM pgq.jobs WHERE state = 'succeeded'"))
    assert [stored[job_id] for job_id in ids] == [i if i % 2 else None for i in range(200)]


def test_a_stale_attempts_result_is_not_written(db_url: str, conn: Conn) -> None:
    job_id = pgq.enqueue(conn, "results.t")
    claim = store.claim_jobs(queues=["default"], tasks=["results.t"], leases=[30], limit=1,
                             worker_id="w")  # fmt: skip
    (claimed,) = store.fetch(conn, claim)
    token = ClaimedJob.from_row(claimed).lease_token
    conn.execute("UPDATE pgq.jobs SET lease_token = lease_token + 1 WHERE id = %s", (job_id,))

    stale = store.finish_jobs_with_results(ids=[job_id], tokens=[token], results=['"late"'])
    assert store.fetch(conn, stale) == []
    live = store.finish_jobs_with_results(ids=[job_id], tokens=[token + 1], results=['"on time"'])
    assert store.fetch(conn, live) == [(job_id, "succeeded")]
    assert pgq.result(conn, job_id) == "on time"


# --- pgq.result ------------------------------------------------------------------------------


def finished(conn: Conn, state: str, errors: str = "[]", result: str | None = None) -> int:
    found = conn.execute(
        "INSERT INTO pgq.jobs (queue, task, state, attempts, errors, result, finished_at) "
        "VALUES ('default', 'results.made', %s, 2, %s, %s, now()) RETURNING id",
        (state, errors, result),
    ).fetchone()
    assert found is not None
    return int(found[0])


def test_result_raises_a_typed_error_for_each_state_without_a_result(conn: Conn) -> None:
    failed = finished(conn, "failed", '[{"kind": "ValueError", "message": "boom"}]')
    cancelled = finished(conn, "cancelled")
    queued = pgq.enqueue(conn, "results.made")

    with pytest.raises(pgq.JobFailed, match=r"failed after 2 attempt.*ValueError: boom") as raised:
        pgq.result(conn, failed)
    assert raised.value.error == {"kind": "ValueError", "message": "boom"}
    assert raised.value.job_id == failed
    with pytest.raises(pgq.JobCancelled, match="was cancelled"):
        pgq.result(conn, cancelled)
    with pytest.raises(pgq.JobNotFinished, match=r"is queued.*pgq.wait") as pending:
        pgq.result(conn, queued)
    assert pending.value.state == "queued"
    with pytest.raises(pgq.JobNotFound, match="pruned"):
        pgq.result(conn, 10**12)
    with pytest.raises(pgq.ValidationError, match="not a job id"):
        pgq.result(conn, 0)
    for error in (pgq.JobFailed, pgq.JobCancelled, pgq.JobNotFinished, pgq.JobNotFound):
        assert issubclass(error, pgq.PgqError)


def test_result_reads_through_sqlalchemy_and_async_connections(
    db_url: str, sa_url: str, conn: Conn
) -> None:
    job_id = finished(conn, "succeeded", result='{"a": 1}')
    engine = create_engine(sa_url)
    try:
        with Session(engine) as session:
            assert pgq.result(session, job_id) == {"a": 1}
    finally:
        engine.dispose()

    async def read_async() -> Any:
        async with await psycopg.AsyncConnection.connect(db_url) as aconn:
            return await pgq.result(aconn, job_id)

    assert asyncio.run(read_async()) == {"a": 1}
    with pytest.raises(pgq.SessionTypeError, match=r"pgq.result cannot read through"):
        pgq.result(object(), job_id)


# --- pgq.wait ---------------------------------------------------------------------------------


@pytest.fixture
def listen_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """The LISTEN path's fallback poll pushed out of reach: a wait that returns within the
    test's timeout was woken by the notification."""
    monkeypatch.setattr(results, "LISTEN_POLL", 3600.0)


def flagged(conn: Conn, job_id: int) -> bool:
    return bool(row(conn, job_id)["waited"])


def test_wait_listens_and_is_woken_by_the_finish(
    db_url: str, conn: Conn, reg: Registry, listen_only: None
) -> None:
    task = pgq.task(lambda: {"done": True}, name="results.wake", registry=reg)
    job_id = pgq.enqueue(conn, task)

    waiting = InThread(lambda: pgq.wait(db_url, job_id, timeout=WAIT_TIMEOUT))
    wait_until(lambda: flagged(conn, job_id))
    run_burst(db_url, reg)

    assert waiting.result() == {"done": True}


@both_kinds
def test_wait_hears_a_none_result_and_a_failure(
    db_url: str, conn: Conn, reg: Registry, is_async: bool, listen_only: None
) -> None:
    def ends(fail: bool) -> None:
        if fail:
            raise pgq.Fail("no luck")

    task = define(reg, ends, is_async)
    plain = pgq.enqueue(conn, task, {"fail": False})
    failing = pgq.enqueue(conn, task, {"fail": True})

    waits = [waiter(db_url, plain), waiter(db_url, failing)]
    wait_until(lambda: flagged(conn, plain) and flagged(conn, failing))
    run_burst(db_url, reg)

    assert waits[0].result() is None
    with pytest.raises(pgq.JobFailed, match="Fail: no luck"):
        waits[1].result()


def test_only_flagged_jobs_notify_when_they_finish(db_url: str, conn: Conn, reg: Registry) -> None:
    task = pgq.task(lambda: 1, name="results.quiet", registry=reg)
    plain, waited = pgq.enqueue(conn, task), pgq.enqueue(conn, task)
    store.fetch(conn, store.flag_job_waited(job_id=waited))
    with psycopg.connect(db_url, autocommit=True) as listener:
        listener.execute("LISTEN pgq_finished")

        run_burst(db_url, reg)

        heard = [n.payload for n in listener.notifies(timeout=1.0)]
    assert heard == [str(waited)]
    assert row(conn, plain)["waited"] is None


def test_waiting_on_workflow_steps_hears_a_success_and_a_cancel(
    db_url: str, conn: Conn, reg: Registry, listen_only: None
) -> None:
    ok = pgq.task(lambda: "ok", name="results.step_ok", registry=reg)
    then = pgq.task(lambda: "then", name="results.step_then", registry=reg)
    boom = pgq.task(lambda: 1 / 0, name="results.step_boom", registry=reg, max_attempts=1)
    good = pgq.chain(ok.spec(), then.spec()).enqueue(conn).job_ids
    bad = pgq.chain(boom.spec(), then.spec()).enqueue(conn).job_ids
    waits = [waiter(db_url, good[1]), waiter(db_url, bad[1])]  # both waiting for a parent
    wait_until(lambda: flagged(conn, good[1]) and flagged(conn, bad[1]))

    run_burst(db_url, reg)

    assert waits[0].result() == "then"
    with pytest.raises(pgq.JobCancelled):
        waits[1].result()


def test_the_reaper_failing_a_waited_job_wakes_the_waiter(
    db_url: str, conn: Conn, listen_only: None
) -> None:
    job_id = pgq.enqueue(conn, "results.dies", max_attempts=1)
    claim = store.claim_jobs(queues=["default"], tasks=["results.dies"], leases=[0.01],
                             limit=1, worker_id="gone")  # fmt: skip
    assert [r[0] for r in store.fetch(conn, claim)] == [job_id]
    waiting = waiter(db_url, job_id)
    wait_until(lambda: flagged(conn, job_id))

    with psycopg.connect(db_url, autocommit=True) as reaper_conn:
        reaped = reaper.reap_once(reaper_conn)

    assert [j.id for j in reaped.jobs] == [job_id]
    assert [j.state for j in reaped.jobs] == ["failed"]  # the notification left it intact
    with pytest.raises(pgq.JobFailed, match="lease_expired"):
        waiting.result()


def test_wait_returns_at_once_for_a_finished_job_and_flags_nothing(conn: Conn, db_url: str) -> None:
    job_id = finished(conn, "succeeded", result="[1, 2]")

    assert pgq.wait(db_url, job_id, timeout=0) == [1, 2]
    assert row(conn, job_id)["waited"] is None


def test_wait_times_out_with_the_jobs_state(db_url: str, conn: Conn) -> None:
    job_id = pgq.enqueue(conn, "results.never")

    expected = rf"job {job_id} did not finish within 0.05s \(it is queued\)"
    with pytest.raises(pgq.WaitTimeout, match=expected) as raised:
        pgq.wait(db_url, job_id, timeout=0.05)
    assert isinstance(raised.value, TimeoutError)
    assert raised.value.state == "queued"


def test_wait_raises_for_a_missing_and_a_cancelled_job(
    db_url: str, conn: Conn, listen_only: None
) -> None:
    with pytest.raises(pgq.JobNotFound):
        pgq.wait(db_url, 10**12, timeout=1)
    job_id = pgq.enqueue(conn, "results.cancel_me")
    waiting = InThread(lambda: pgq.wait(db_url, job_id, timeout=WAIT_TIMEOUT))
    wait_until(lambda: flagged(conn, job_id))

    admin.cancel_jobs(conn, [job_id])  # a queued job's cancel notifies a flagged job

    with pytest.raises(pgq.JobCancelled):
        waiting.result()


def test_wait_polls_where_it_cannot_listen(
    db_url: str, conn: Conn, reg: Registry, listen_only: None
) -> None:
    task = pgq.task(lambda: "polled", name="results.poll", registry=reg)
    job_id = pgq.enqueue(conn, task)

    waiting = InThread(lambda: pgq.wait(db_url, job_id, timeout=WAIT_TIMEOUT, pgbouncer=True))
    run_burst(db_url, reg)

    assert waiting.result() == "polled"
    assert row(conn, job_id)["waited"] is None  # no LISTEN, so no flag either


def test_wait_behind_pgbouncer_polls(
    bouncer_url: str, db_url: str, conn: Conn, reg: Registry, pool_state: Any
) -> None:
    task = pgq.task(lambda: "through the pool", name="results.pooled", registry=reg)
    job_id = pgq.enqueue(conn, task)

    waiting = InThread(lambda: pgq.wait(bouncer_url, job_id, timeout=WAIT_TIMEOUT, pgbouncer=True))
    run_burst(db_url, reg)

    assert waiting.result() == "through the pool"
    assert pool_state().clean


def test_wait_on_a_borrowed_connection_in_a_transaction_polls_and_locks_nothing(
    db_url: str, conn: Conn, reg: Registry
) -> None:
    task = pgq.task(lambda: 5, name="results.borrowed", registry=reg)
    job_id = pgq.enqueue(conn, task)

    with psycopg.connect(db_url) as borrowed:  # not autocommit: a transaction is open
        borrowed.execute("SELECT 1")
        waiting = InThread(lambda: pgq.wait(borrowed, job_id, timeout=WAIT_TIMEOUT))
        run_burst(db_url, reg)
        assert waiting.result() == 5
    assert row(conn, job_id)["waited"] is None


def test_wait_on_a_borrowed_autocommit_connection_leaves_no_listen(
    db_url: str, conn: Conn, reg: Registry, listen_only: None
) -> None:
    task = pgq.task(lambda: 6, name="results.lent", registry=reg)
    job_id = pgq.enqueue(conn, task)

    with psycopg.connect(db_url, autocommit=True) as lent:
        waiting = InThread(lambda: pgq.wait(lent, job_id, timeout=WAIT_TIMEOUT))
        wait_until(lambda: flagged(conn, job_id))
        run_burst(db_url, reg)
        assert waiting.result() == 6
        channels = lent.execute("SELECT pg_listening_channels()").fetchall()
    assert channels == []


@pytest.mark.parametrize("borrowed", [False, True], ids=["url", "async-connection"])
def test_wait_async_is_woken_by_the_finish(
    db_url: str, conn: Conn, reg: Registry, borrowed: bool, listen_only: None
) -> None:
    task = pgq.task(lambda: ["async"], name="results.awaited", registry=reg)
    job_id = pgq.enqueue(conn, task)

    async def scenario() -> Any:
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as aconn:
            target: Any = aconn if borrowed else db_url
            waiter = asyncio.create_task(pgq.wait_async(target, job_id, timeout=WAIT_TIMEOUT))
            while not flagged(conn, job_id):
                await asyncio.sleep(0.01)
            worker = Worker(WorkerConfig(db_url, burst=True, run_reaper=False), registry=reg)
            await worker.run_async()
            return await waiter

    assert asyncio.run(scenario()) == ["async"]


def test_wait_async_polls_in_pgbouncer_mode(db_url: str, conn: Conn, reg: Registry) -> None:
    task = pgq.task(lambda: {"polled": "async"}, name="results.async_poll", registry=reg)
    job_id = pgq.enqueue(conn, task)

    async def scenario() -> Any:
        waiter = asyncio.create_task(
            pgq.wait_async(db_url, job_id, timeout=WAIT_TIMEOUT, pgbouncer=True)
        )
        worker = Worker(WorkerConfig(db_url, burst=True, run_reaper=False), registry=reg)
        await worker.run_async()
        return await waiter

    assert asyncio.run(scenario()) == {"polled": "async"}
    assert row(conn, job_id)["waited"] is None


def test_wait_async_times_out_and_polls_behind_pgbouncer(db_url: str, conn: Conn) -> None:
    job_id = pgq.enqueue(conn, "results.slow")

    with pytest.raises(pgq.WaitTimeout):
        asyncio.run(pgq.wait_async(db_url, job_id, timeout=0.05, pgbouncer=True))
    assert row(conn, job_id)["waited"] is None


@pytest.fixture
def many_finished(conn: Conn) -> Iterator[list[int]]:
    yield [finished(conn, "succeeded", result=str(i)) for i in range(3)]


def test_wait_takes_a_sqlalchemy_engine_sync_or_async(
    sa_url: str, conn: Conn, many_finished: list[int]
) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_engine(sa_url)
    try:
        assert pgq.wait(engine, many_finished[1], timeout=1) == 1
    finally:
        engine.dispose()

    async def scenario() -> Any:
        async_engine = create_async_engine(sa_url)
        try:
            return await pgq.wait_async(async_engine, many_finished[2], timeout=1)
        finally:
            await async_engine.dispose()

    assert asyncio.run(scenario()) == 2


def test_wait_refuses_bad_arguments(db_url: str, many_finished: list[int]) -> None:
    with pytest.raises(pgq.ValidationError, match="timeout"):
        pgq.wait(db_url, many_finished[0], timeout=-1)
    with pytest.raises(pgq.SessionTypeError, match="a SQLAlchemy Engine or a psycopg Connection"):
        pgq.wait(object(), many_finished[0])  # type: ignore[arg-type]
    assert [pgq.wait(db_url, j) for j in many_finished] == [0, 1, 2]
