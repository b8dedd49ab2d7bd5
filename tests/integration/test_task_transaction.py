"""ctx.transaction(): a task's own writes, the jobs it enqueues and its result commit together
with the job's succeeded, fenced by the lease token, or not at all.

Real workers (in-process) and real concurrent connections against a real PostgreSQL. The
races with the heartbeat are played out with the exact statements each side runs, with a
row lock held open on one side so the order is the one the test names.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

import pgq
from pgq import store
from pgq.registry import Registry
from pgq.runner import JobContext
from pgq.worker import Worker, WorkerConfig, WorkerStats

WAIT_TIMEOUT = 30.0
Conn = psycopg.Connection[Any]


@pytest.fixture
def reg() -> Registry:
    return Registry()


@pytest.fixture
def ledger(conn: Conn) -> Iterator[None]:
    conn.execute("CREATE TABLE IF NOT EXISTS tx_ledger (id int PRIMARY KEY, note text)")
    conn.execute("TRUNCATE tx_ledger")
    yield
    conn.execute("DROP TABLE tx_ledger")


def ledger_ids(conn: Conn) -> list[int]:
    return [r[0] for r in conn.execute("SELECT id FROM tx_ledger ORDER BY id")]


def row(conn: Conn, job_id: int) -> dict[str, Any]:
    cur = conn.execute("SELECT * FROM pgq.jobs WHERE id = %s", (job_id,))
    names = [c.name for c in cur.description or []]
    values = cur.fetchone()
    assert values is not None
    return dict(zip(names, values, strict=True))


def jobs_of(conn: Conn, task: str) -> list[int]:
    return [r[0] for r in conn.execute("SELECT id FROM pgq.jobs WHERE task = %s", (task,))]


def make_worker(url: str, registry: Registry, **config: Any) -> Worker:
    return Worker(WorkerConfig(url, **{"burst": True, "run_reaper": False, **config}), registry)


def run_burst(url: str, registry: Registry, **config: Any) -> WorkerStats:
    return asyncio.run(make_worker(url, registry, **config).run_async())


def wait_until(condition: Callable[[], Any]) -> None:
    import time

    deadline = time.monotonic() + WAIT_TIMEOUT
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not true within {WAIT_TIMEOUT}s")
        time.sleep(0.01)


class Background:
    """A worker running in a thread until ``stop()``."""

    def __init__(self, url: str, registry: Registry, **config: Any) -> None:
        self.worker = make_worker(url, registry, burst=False, poll_interval=0.05, **config)
        self.stats: WorkerStats | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self.stats = asyncio.run(self.worker.run_async())

    def stop(self) -> WorkerStats:
        self.worker.stop()
        self._thread.join(WAIT_TIMEOUT)
        assert self.stats is not None, "the worker did not stop"
        return self.stats


# --- commit and rollback ----------------------------------------------------------------------


def test_writes_children_and_result_commit_with_the_success(
    db_url: str, conn: Conn, reg: Registry, ledger: None
) -> None:
    @pgq.task(name="tx.child", registry=reg)
    def child(n: int) -> None:
        pass

    @pgq.task(name="tx.parent", registry=reg, pass_context=True)
    def parent(ctx: JobContext, n: int) -> dict[str, int]:
        tx = ctx.transaction()
        assert ctx.transaction() is tx  # one transaction per attempt
        tx.execute("INSERT INTO tx_ledger VALUES (%s, 'parent')", (n,))
        child.enqueue(tx, n=n)
        return {"wrote": n}

    job_id = parent.enqueue(conn, n=7)

    stats = run_burst(db_url, reg)

    job = row(conn, job_id)
    assert (job["state"], job["result"]) == ("succeeded", {"wrote": 7})
    assert job["lease_expires_at"] is None
    assert job["finished_at"] >= job["started_at"]
    assert ledger_ids(conn) == [7]
    (child_id,) = jobs_of(conn, "tx.child")
    assert row(conn, child_id)["state"] == "succeeded"  # the same burst ran it
    assert (stats.succeeded, stats.lost) == (2, 0)


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_a_raise_after_writing_leaves_no_writes_children_or_result(
    db_url: str, conn: Conn, reg: Registry, ledger: None, is_async: bool
) -> None:
    if is_async:

        @pgq.task(name="tx.raises", registry=reg, pass_context=True, max_attempts=1)
        async def raises(ctx: JobContext) -> int:
            tx = await ctx.transaction_async()
            await tx.execute("INSERT INTO tx_ledger VALUES (1, 'lost')")
            await pgq.enqueue(tx, "tx.orphan")
            raise RuntimeError("after writing")

    else:

        @pgq.task(name="tx.raises", registry=reg, pass_context=True, max_attempts=1)
        def raises(ctx: JobContext) -> int:
            tx = ctx.transaction()
            tx.execute("INSERT INTO tx_ledger VALUES (1, 'lost')")
            pgq.enqueue(tx, "tx.orphan")
            raise RuntimeError("after writing")

    job_id = raises.enqueue(conn)

    stats = run_burst(db_url, reg)

    job = row(conn, job_id)
    assert (job["state"], job["result"]) == ("failed", None)
    assert job["errors"][0]["message"] == "after writing"
    assert ledger_ids(conn) == []
    assert jobs_of(conn, "tx.orphan") == []
    assert stats.failed == 1
    # Nothing is left open on the server: the task's connection was rolled back and closed.
    open_tx = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgq task'"
    ).fetchone()
    assert open_tx == (0,)


def test_an_async_task_commits_in_its_own_transaction(
    db_url: str, conn: Conn, reg: Registry, ledger: None
) -> None:
    @pgq.task(name="tx.async", registry=reg, pass_context=True)
    async def writes(ctx: JobContext, n: int) -> list[int]:
        tx = await ctx.transaction_async()
        await tx.execute("INSERT INTO tx_ledger VALUES (%s, 'async')", (n,))
        await pgq.enqueue(tx, "tx.async_child")
        return [n]

    job_id = writes.enqueue(conn, n=3)

    run_burst(db_url, reg)

    assert pgq.result(conn, job_id) == [3]
    assert ledger_ids(conn) == [3]
    assert len(jobs_of(conn, "tx.async_child")) == 1


def test_children_appear_only_when_the_task_returns(
    db_url: str, conn: Conn, reg: Registry, ledger: None
) -> None:
    enqueued, release = threading.Event(), threading.Event()

    @pgq.task(name="tx.slow_parent", registry=reg, pass_context=True)
    def slow_parent(ctx: JobContext) -> None:
        tx = ctx.transaction()
        tx.execute("INSERT INTO tx_ledger VALUES (1, 'slow')")
        pgq.enqueue(tx, "tx.later")
        enqueued.set()
        assert release.wait(WAIT_TIMEOUT)

    job_id = slow_parent.enqueue(conn)
    worker = Background(db_url, reg)
    try:
        assert enqueued.wait(WAIT_TIMEOUT)
        assert (jobs_of(conn, "tx.later"), ledger_ids(conn)) == ([], [])
        assert row(conn, job_id)["state"] == "running"
        release.set()
        wait_until(lambda: row(conn, job_id)["state"] == "succeeded")
    finally:
        release.set()
        worker.stop()
    assert len(jobs_of(conn, "tx.later")) == 1
    assert ledger_ids(conn) == [1]


def test_a_task_that_commits_its_transaction_itself_fails_and_keeps_nothing(
    db_url: str, conn: Conn, reg: Registry, ledger: None
) -> None:
    @pgq.task(name="tx.commits", registry=reg, pass_context=True, max_attempts=1)
    def commits(ctx: JobContext) -> None:
        tx = ctx.transaction()
        tx.execute("INSERT INTO tx_ledger VALUES (1, 'early')")
        tx.commit()

    job_id = commits.enqueue(conn)

    run_burst(db_url, reg)

    job = row(conn, job_id)
    assert job["state"] == "failed"
    assert "commit() forbidden" in job["errors"][0]["message"]
    assert ledger_ids(conn) == []


def test_a_timeout_rolls_the_transaction_back(
    db_url: str, conn: Conn, reg: Registry, ledger: None
) -> None:
    @pgq.task(name="tx.too_slow", registry=reg, pass_context=True, timeout=0.05, max_attempts=1)
    def too_slow(ctx: JobContext) -> str:
        tx = ctx.transaction()
        tx.execute("INSERT INTO tx_ledger VALUES (1, 'late')")
        wait_until(lambda: ctx.timed_out)
        return "late"

    job_id = too_slow.enqueue(conn)

    run_burst(db_url, reg)

    job = row(conn, job_id)
    assert (job["state"], job["result"], job["errors"][0]["kind"]) == ("failed", None, "timeout")
    assert ledger_ids(conn) == []


def test_transaction_outside_a_worker_or_of_the_wrong_kind_is_a_clear_error() -> None:
    from datetime import UTC, datetime

    from pgq.runner import ClaimedJob

    now = datetime.now(UTC)
    job = ClaimedJob(1, "default", "t", {}, 1, 3, 1, 0, now, now)
    with pytest.raises(pgq.PgqError, match="works in a task a worker runs"):
        JobContext(job, "w").transaction()
    async_ctx = JobContext(job, "w")
    async_ctx.is_async = True
    with pytest.raises(pgq.PgqError, match=r"await ctx.transaction_async"):
        async_ctx.transaction()
    with pytest.raises(pgq.PgqError, match=r"a sync task uses ctx.transaction"):
        asyncio.run(JobContext(job, "w").transaction_async())


# --- the lease fence ---------------------------------------------------------------------------


def test_a_stale_attempt_commits_nothing(
    db_url: str, conn: Conn, reg: Registry, ledger: None
) -> None:
    wrote, release = threading.Event(), threading.Event()

    @pgq.task(name="tx.stale", registry=reg, pass_context=True)
    def stale(ctx: JobContext) -> str:
        tx = ctx.transaction()
        tx.execute("INSERT INTO tx_ledger VALUES (1, 'stale')")
        pgq.enqueue(tx, "tx.stale_child")
        wrote.set()
        assert release.wait(WAIT_TIMEOUT)
        return "stale result"

    job_id = stale.enqueue(conn)
    worker = Background(db_url, reg)
    try:
        assert wrote.wait(WAIT_TIMEOUT)
        # The lease is taken over (as when the reaper requeues the job and another worker
        # claims it): a new token, the job running elsewhere.
        conn.execute(
            "UPDATE pgq.jobs SET lease_token = lease_token + 1, worker_id = 'other' WHERE id = %s",
            (job_id,),
        )
        release.set()
        wait_until(lambda: worker.worker.stats.lost == 1)
    finally:
        release.set()
        stats = worker.stop()
    job = row(conn, job_id)
    assert (job["state"], job["worker_id"], job["result"]) == ("running", "other", None)
    assert ledger_ids(conn) == []
    assert jobs_of(conn, "tx.stale_child") == []
    assert (stats.succeeded, stats.lost) == (0, 1)


def claimed(conn: Conn, task: str) -> tuple[int, int]:
    job_id = pgq.enqueue(conn, task)
    claim = store.claim_jobs(queues=["default"], tasks=[task], leases=[30], limit=1, worker_id="w")
    (found,) = store.fetch(conn, claim)
    assert found[0] == job_id
    return job_id, found[6]


def blocked(conn: Conn, count: int = 1) -> bool:
    found = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
        "AND datname = current_database()"
    ).fetchone()
    return found is not None and found[0] >= count


def test_a_heartbeat_waiting_on_the_commit_sees_the_job_finished(db_url: str, conn: Conn) -> None:
    job_id, token = claimed(conn, "tx.race")
    with psycopg.connect(db_url) as task_tx, psycopg.connect(db_url, autocommit=True) as writer:
        done = store.complete_job_in_transaction(job_id=job_id, token=token, result='"r"')
        assert store.fetch(task_tx, done) == [(job_id, "succeeded")]  # holds the row lock
        beat: list[Any] = []
        thread = threading.Thread(
            target=lambda: beat.append(
                store.fetch(writer, store.extend_leases(ids=[job_id], tokens=[token], leases=[30]))
            )
        )
        thread.start()
        wait_until(lambda: blocked(conn))  # the heartbeat waits for the task's commit
        task_tx.commit()
        thread.join(WAIT_TIMEOUT)
    assert beat == [[]]  # no deadlock; the job is no longer running, so not extended
    job = row(conn, job_id)
    assert (job["state"], job["result"], job["lease_expires_at"]) == ("succeeded", "r", None)


def test_a_commit_waiting_on_a_heartbeat_keeps_its_fence(db_url: str, conn: Conn) -> None:
    job_id, token = claimed(conn, "tx.race")
    with psycopg.connect(db_url) as heartbeat, psycopg.connect(db_url) as task_tx:
        extend = store.extend_leases(ids=[job_id], tokens=[token], leases=[30])
        assert [r[0] for r in store.fetch(heartbeat, extend)] == [job_id]  # holds the row lock
        done: list[Any] = []
        complete = store.complete_job_in_transaction(job_id=job_id, token=token, result=None)
        thread = threading.Thread(target=lambda: done.append(store.fetch(task_tx, complete)))
        thread.start()
        wait_until(lambda: blocked(conn))
        heartbeat.commit()
        thread.join(WAIT_TIMEOUT)
        assert done == [[(job_id, "succeeded")]]  # the heartbeat moved neither token nor state
        task_tx.commit()
    assert row(conn, job_id)["state"] == "succeeded"


def test_a_commit_waiting_on_a_takeover_finds_the_fence_gone(db_url: str, conn: Conn) -> None:
    job_id, token = claimed(conn, "tx.race")
    with psycopg.connect(db_url) as reclaim, psycopg.connect(db_url) as task_tx:
        reclaim.execute(
            "UPDATE pgq.jobs SET lease_token = lease_token + 1 WHERE id = %s", (job_id,)
        )
        done: list[Any] = []
        complete = store.complete_job_in_transaction(job_id=job_id, token=token, result="1")
        thread = threading.Thread(target=lambda: done.append(store.fetch(task_tx, complete)))
        thread.start()
        wait_until(lambda: blocked(conn))
        reclaim.commit()
        thread.join(WAIT_TIMEOUT)
        assert done == [[]]
    job = row(conn, job_id)
    assert (job["state"], job["result"]) == ("running", None)


def test_many_transactions_under_a_fast_heartbeat_all_commit_once(
    db_url: str, conn: Conn, reg: Registry, ledger: None
) -> None:
    # A lease of 0.3 s: the heartbeat extends every job held ten times a second, over and
    # over the rows the tasks' transactions complete.
    @pgq.task(name="tx.busy", registry=reg, pass_context=True, lease=0.3)
    def busy(ctx: JobContext, n: int) -> int:
        tx = ctx.transaction()
        tx.execute("INSERT INTO tx_ledger VALUES (%s, 'busy')", (n,))
        tx.execute("SELECT pg_sleep(0.02)")
        return n

    ids = pgq.enqueue_many(conn, [busy.spec(n=n) for n in range(60)])

    stats = run_burst(db_url, reg, concurrency=8)

    assert (stats.succeeded, stats.lost, stats.retried) == (60, 0, 0)
    assert ledger_ids(conn) == list(range(60))
    assert [pgq.result(conn, job_id) for job_id in ids] == list(range(60))


def test_pgbouncer_mode_opens_the_transaction_through_the_pool(
    bouncer_url: str, conn: Conn, reg: Registry, ledger: None, pool_state: Any
) -> None:
    @pgq.task(name="tx.pooled", registry=reg, pass_context=True)
    def pooled(ctx: JobContext) -> str:
        tx = ctx.transaction()
        tx.execute("INSERT INTO tx_ledger VALUES (1, 'pooled')")
        return "ok"

    job_id = pooled.enqueue(conn)

    run_burst(bouncer_url, reg, pgbouncer=True)

    assert pgq.result(conn, job_id) == "ok"
    assert ledger_ids(conn) == [1]
    assert pool_state().clean


# --- in a workflow -----------------------------------------------------------------------------


@pytest.mark.parametrize("in_transaction", [False, True], ids=["returned", "transaction"])
def test_a_parents_result_is_stored_and_its_dependent_released_with_it(
    db_url: str, conn: Conn, reg: Registry, ledger: None, in_transaction: bool
) -> None:
    seen: list[Any] = []

    @pgq.task(name="tx.parent_step", registry=reg, pass_context=True)
    def parent_step(ctx: JobContext) -> dict[str, str]:
        if in_transaction:
            ctx.transaction().execute("INSERT INTO tx_ledger VALUES (1, 'parent')")
        return {"made": "video"}

    @pgq.task(name="tx.next_step", registry=reg, pass_context=True)
    def next_step(ctx: JobContext) -> None:
        with psycopg.connect(db_url) as read:
            seen.extend(pgq.result(read, parent.id) for parent in pgq.parents(read, ctx.id))

    flow = pgq.chain(parent_step.spec(), next_step.spec()).enqueue(conn)

    stats = run_burst(db_url, reg)

    first, second = flow.job_ids
    assert pgq.result(conn, first) == {"made": "video"}
    assert row(conn, second)["state"] == "succeeded"
    assert seen == [{"made": "video"}]
    assert ledger_ids(conn) == ([1] if in_transaction else [])
    assert (stats.succeeded, stats.lost) == (2, 0)


# --- complete_in: the caller's own session --------------------------------------------------


def test_complete_in_a_sqlalchemy_session_commits_with_the_callers_writes(
    db_url: str, sa_url: str, conn: Conn, reg: Registry, ledger: None
) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.orm import Session

    engine = create_engine(sa_url)

    @pgq.task(name="tx.sa", registry=reg, pass_context=True)
    def with_session(ctx: JobContext, n: int) -> str:
        with Session(engine) as session, session.begin():
            session.execute(text("INSERT INTO tx_ledger VALUES (:n, 'sa')"), {"n": n})
            pgq.enqueue(session, "tx.sa_child")
            ctx.complete_in(session, {"n": n})
        return "ignored"

    try:
        job_id = with_session.enqueue(conn, n=4)
        stats = run_burst(db_url, reg)
    finally:
        engine.dispose()

    assert pgq.result(conn, job_id) == {"n": 4}
    assert ledger_ids(conn) == [4]
    assert len(jobs_of(conn, "tx.sa_child")) == 1
    assert (stats.succeeded, stats.lost) == (1, 0)


def test_complete_in_an_async_sqlalchemy_session(
    db_url: str, sa_url: str, conn: Conn, reg: Registry, ledger: None
) -> None:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

    @pgq.task(name="tx.sa_async", registry=reg, pass_context=True)
    async def with_async_session(ctx: JobContext) -> None:
        engine = create_async_engine(sa_url)
        try:
            async with AsyncSession(engine) as session, session.begin():
                await session.execute(text("INSERT INTO tx_ledger VALUES (9, 'async sa')"))
                await ctx.complete_in(session, [9])
        finally:
            await engine.dispose()

    job_id = with_async_session.enqueue(conn)

    run_burst(db_url, reg)

    assert pgq.result(conn, job_id) == [9]
    assert ledger_ids(conn) == [9]


def test_a_raise_after_complete_in_rolls_the_completion_back_and_retries(
    db_url: str, conn: Conn, reg: Registry, ledger: None
) -> None:
    @pgq.task(name="tx.regrets", registry=reg, pass_context=True, max_attempts=1)
    def regrets(ctx: JobContext) -> None:
        with psycopg.connect(db_url) as own, own.transaction():
            own.execute("INSERT INTO tx_ledger VALUES (1, 'regret')")
            ctx.complete_in(own, "never stored")
            raise RuntimeError("changed my mind")

    job_id = regrets.enqueue(conn)

    run_burst(db_url, reg)

    job = row(conn, job_id)
    assert (job["state"], job["result"]) == ("failed", None)
    assert job["errors"][0]["message"] == "changed my mind"
    assert ledger_ids(conn) == []


def test_complete_in_with_the_lease_gone_raises_lease_lost_and_commits_nothing(
    db_url: str, conn: Conn, reg: Registry, ledger: None
) -> None:
    raised: list[BaseException] = []

    @pgq.task(name="tx.late", registry=reg, pass_context=True)
    def late(ctx: JobContext) -> None:
        conn.execute("UPDATE pgq.jobs SET lease_token = lease_token + 1 WHERE id = %s", (ctx.id,))
        try:
            with psycopg.connect(db_url) as own, own.transaction():
                own.execute("INSERT INTO tx_ledger VALUES (1, 'late')")
                ctx.complete_in(own, "late")
        except pgq.LeaseLost as exc:
            raised.append(exc)
            raise

    job_id = late.enqueue(conn)

    stats = run_burst(db_url, reg)

    assert [type(e) for e in raised] == [pgq.LeaseLost]
    assert "lease is gone" in str(raised[0])
    assert row(conn, job_id)["state"] == "running"  # the other holder's, untouched
    assert ledger_ids(conn) == []
    assert (stats.succeeded, stats.lost) == (0, 1)
