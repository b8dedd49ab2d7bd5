"""pgq through a real PgBouncer in transaction pooling mode (docs/pgbouncer.md).

The ``pgbouncer`` fixture gives every database ONE server connection, shared by every
client: a prepared statement or a session setting one client leaves on it is met by the
next, so a leak fails loudly here (a clash of prepared statement names) or shows in
``pool_state()``, which reads what that server connection carries. The tests that begin
with ``test_leak_`` prove that this net catches what it is meant to catch.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from enqueue_sessions import Listener
from psycopg import errors
from sqlalchemy import create_engine, text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session

import pgq
from pgq import admin, db, devbouncer, devdb, migrate, reaper, store
from pgq.registry import Registry
from pgq.worker import POLL_INTERVAL_POLL_ONLY_DEFAULT, Worker, WorkerConfig

State = Callable[[], devbouncer.SessionState]
JOBS = 30  # more than psycopg's prepare_threshold (5) executions of every statement
# Jobs too slow to be claimed ahead (worker.CLAIM_AHEAD_WAIT): at concurrency 1, one claim
# and one finish per job, so each statement runs more often than prepare_threshold.
SLOW_JOBS, SLOW_JOB_SECONDS = 8, 0.06
# What a client must pass for its own connections through PgBouncer in transaction mode.
POOLED = {"prepare_threshold": None}


def queued(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM pgq.jobs WHERE state = 'queued'").fetchone()
    assert row is not None
    return int(row[0])


def states(conn: psycopg.Connection[Any]) -> dict[str, int]:
    rows = conn.execute("SELECT state::text, count(*) FROM pgq.jobs GROUP BY 1").fetchall()
    return {state: int(count) for state, count in rows}


# --- enqueue ------------------------------------------------------------------------------


def test_enqueue_with_psycopg_through_pgbouncer_notifies_a_direct_listener(
    bouncer_url: str, conn: psycopg.Connection[Any], db_url: str, pool_state: State
) -> None:
    listener = Listener(db_url)  # LISTEN goes straight to PostgreSQL, as the worker's does
    try:
        with (
            psycopg.connect(bouncer_url, **POOLED) as first,
            psycopg.connect(bouncer_url, **POOLED) as second,
        ):
            for n in range(JOBS):  # two clients taking turns on one server connection
                tx = (first, second)[n % 2]
                assert pgq.enqueue(tx, "pooled.job", {"n": n}, queue="pooled") is not None
                tx.commit()
            pgq.enqueue(first, "pooled.job", {"n": "rolled back"})
            first.rollback()
            # enqueue_many's COPY (ids first, then COPY: two statements in one transaction)
            specs = [pgq.JobSpec("pooled.job", {"n": n}) for n in range(150)]
            ids = pgq.enqueue_many(second, specs)
            second.commit()
        assert len(ids) == 150
        assert "pooled" in listener.heard()
    finally:
        listener.close()
    assert queued(conn) == JOBS + 150
    assert pool_state().clean, pool_state()


def test_enqueue_with_sqlalchemy_sync_and_async_through_pgbouncer(
    bouncer_url: str, conn: psycopg.Connection[Any], pool_state: State
) -> None:
    sa_url = bouncer_url.replace("postgresql://", "postgresql+psycopg://", 1)
    engine = create_engine(sa_url, pool_size=2, connect_args=POOLED)
    try:
        for n in range(JOBS):
            with Session(engine) as session, session.begin():
                session.execute(text("SELECT 1"))  # the app's own work in the transaction
                pgq.enqueue(session, "pooled.job", {"n": n})
        with Session(engine) as session, session.begin():
            pgq.enqueue(session, "pooled.job", {"n": "rolled back"})
            session.rollback()
    finally:
        engine.dispose()

    async def enqueue_async() -> None:
        async_engine = create_async_engine(sa_url, pool_size=2, connect_args=POOLED)
        try:
            for n in range(JOBS):
                async with AsyncSession(async_engine) as session, session.begin():
                    await pgq.enqueue(session, "pooled.job", {"n": n, "async": True})
        finally:
            await async_engine.dispose()

    asyncio.run(enqueue_async())
    assert queued(conn) == 2 * JOBS
    assert pool_state().clean, pool_state()


# SQLAlchemy's asyncpg dialect through PgBouncer: no statement cache in asyncpg nor in
# the dialect (both prepare named statements otherwise), as docs/pgbouncer.md says.
ASYNCPG_POOLED = {"statement_cache_size": 0, "prepared_statement_cache_size": 0}


def test_enqueue_with_sqlalchemy_on_asyncpg_through_pgbouncer(
    bouncer_url: str, conn: psycopg.Connection[Any], pool_state: State
) -> None:
    pytest.importorskip("asyncpg")
    url = bouncer_url.replace("postgresql://", "postgresql+asyncpg://", 1)

    async def enqueue_async() -> None:
        # Two engines: two clients taking turns on the one server connection.
        engines = [create_async_engine(url, connect_args=ASYNCPG_POOLED) for _ in range(2)]
        try:
            for n in range(JOBS):
                async with AsyncSession(engines[n % 2]) as session, session.begin():
                    await pgq.enqueue(session, "pooled.job", {"n": n})
                    if n == 0:
                        await pgq.enqueue_many(session, [pgq.JobSpec("pooled.job")] * 150)
        finally:
            for engine in engines:
                await engine.dispose()

    asyncio.run(enqueue_async())
    assert queued(conn) == JOBS + 150
    assert pool_state().clean, pool_state()


def test_leak_default_psycopg_prepared_statements_clash_on_the_shared_connection(
    bouncer_url: str,
) -> None:
    """Without prepare_threshold=None, two clients' prepared statements meet on the one
    server connection: this is what a prepared statement leaking through the pool does."""
    insert = store.insert_job(
        queue="default", task="t", args="{}", priority=0, run_at=None, delay=0.0,
        max_attempts=1, unique_key=None,
    )  # fmt: skip
    with (
        psycopg.connect(bouncer_url, autocommit=True) as first,
        psycopg.connect(bouncer_url, autocommit=True) as second,
        pytest.raises((errors.DuplicatePreparedStatement, errors.InvalidSqlStatementName)),
    ):
        for _ in range(10):
            store.fetch(first, insert)
            store.fetch(second, insert)


def test_leak_check_sees_session_settings_listen_and_session_locks(
    bouncer_url: str, pool_state: State
) -> None:
    assert pool_state().clean
    with psycopg.connect(bouncer_url, autocommit=True, **POOLED) as pooled:
        store.fetch(pooled, store.use_generic_plans())  # the claim connection's direct setup
        pooled.execute("LISTEN pgq")
        pooled.execute("SELECT pg_advisory_lock(42)")
    state = pool_state()
    assert "plan_cache_mode=force_generic_plan" in state.settings
    assert "jit=off" in state.settings
    assert state.listening == ["pgq"]
    assert state.advisory_locks == 1
    assert not state.clean


# --- the worker ---------------------------------------------------------------------------


def noop_registry(seconds: float = 0.0) -> Registry:
    registry = Registry()

    @pgq.task(name="pooled.job", registry=registry)
    def job(n: Any = None, **_: Any) -> None:
        time.sleep(seconds)

    return registry


def enqueue_direct(db_url: str, n: int) -> None:
    with psycopg.connect(db_url) as tx:
        pgq.enqueue_many(tx, [pgq.JobSpec("pooled.job", {"n": i}) for i in range(n)])


def test_worker_in_pgbouncer_mode_drains_and_leaves_the_pool_clean(
    db_url: str, bouncer_url: str, conn: psycopg.Connection[Any], pool_state: State
) -> None:
    enqueue_direct(db_url, SLOW_JOBS)
    config = WorkerConfig(bouncer_url, burst=True, run_reaper=False, concurrency=1, pgbouncer=True)
    worker = Worker(config, registry=noop_registry(SLOW_JOB_SECONDS))
    assert worker.listen_url is None
    assert worker.poll_interval == POLL_INTERVAL_POLL_ONLY_DEFAULT
    stats = asyncio.run(worker.run_async())
    assert stats.succeeded == SLOW_JOBS
    assert states(conn) == {"succeeded": SLOW_JOBS}
    assert pool_state().clean, pool_state()


def test_pgbouncer_mode_follows_the_environment(
    monkeypatch: pytest.MonkeyPatch, bouncer_url: str, db_url: str
) -> None:
    monkeypatch.setenv(db.PGBOUNCER_ENV, "1")
    worker = Worker(WorkerConfig(bouncer_url), registry=noop_registry())
    assert (worker.pgbouncer, worker.listen_url) == (True, None)
    direct = Worker(WorkerConfig(bouncer_url, listen_url=db_url), registry=noop_registry())
    assert direct.listen_url == db_url
    assert direct.poll_interval == 1.0  # LISTEN wakes it; the poll is only the fallback
    monkeypatch.setenv(db.PGBOUNCER_ENV, "0")
    assert Worker(WorkerConfig(bouncer_url), registry=noop_registry()).listen_url == bouncer_url


def test_leak_worker_without_pgbouncer_mode_leaves_its_settings_in_the_pool(
    db_url: str, bouncer_url: str, pool_state: State
) -> None:
    """The same worker in its direct mode SETs generic plans for its session: the check
    above would catch a regression that let that through in PgBouncer mode."""
    enqueue_direct(db_url, 2)  # a few statements only: psycopg prepares at the fifth
    config = WorkerConfig(bouncer_url, burst=True, run_reaper=False, pgbouncer=False)
    asyncio.run(Worker(config, registry=noop_registry()).run_async())
    assert "plan_cache_mode=force_generic_plan" in pool_state().settings


# --- the reaper and pruning ---------------------------------------------------------------


def lapse_leases(conn: psycopg.Connection[Any], n: int) -> list[int]:
    """``n`` jobs claimed by a worker that died at once (their leases lapsed a minute ago)."""
    enqueue_direct(conn.info.dsn, n)
    rows = store.fetch(
        conn,
        store.claim_jobs(
            queues=["default"], tasks=["pooled.job"], leases=[1.0], limit=n, worker_id="dead"
        ),
    )
    conn.execute("UPDATE pgq.jobs SET lease_expires_at = now() - interval '1 minute'")
    return [row[0] for row in rows]


def test_reaper_and_pruner_through_pgbouncer_hold_nothing_between_passes(
    bouncer_url: str, conn: psycopg.Connection[Any], pool_state: State
) -> None:
    lapse_leases(conn, 3)
    later = conn.execute("SELECT now() + interval '2 days'").fetchone()[0]  # type: ignore[index]
    config = reaper.ReaperConfig(prune_batch_size=1)
    with db.connect(bouncer_url, pgbouncer=True, autocommit=True) as pooled:
        reaped = reaper.reap_once(pooled, config)
        assert reaped.count("queued") == 3
        for _ in range(8):  # past psycopg's prepare_threshold for the lock and the reap
            assert not reaper.reap_once(pooled, config).locked_out
        conn.execute(
            "UPDATE pgq.jobs SET state = 'succeeded', finished_at = now(), lease_token = 7"
        )
        pruned = reaper.prune_once(pooled, config, now=later)  # one row per batch: 4 batches
    assert (pruned.deleted["succeeded"], pruned.batches) == (3, 6)
    assert states(conn) == {}
    assert pool_state().clean, pool_state()


def test_reaper_loop_through_pgbouncer_recovers_jobs_without_errors(
    bouncer_url: str,
    conn: psycopg.Connection[Any],
    caplog: pytest.LogCaptureFixture,
    pool_state: State,
) -> None:
    ids = lapse_leases(conn, 2)
    passes: list[reaper.ReapResult] = []
    stop = threading.Event()

    def on_pass(reaped: reaper.ReapResult, _: Any) -> None:
        passes.append(reaped)
        if len(passes) >= 8:
            stop.set()

    config = reaper.ReaperConfig(interval=0.01)
    reaper.run(bouncer_url, config, stop, on_pass=on_pass, pgbouncer=True)
    assert sorted(job.id for p in passes for job in p.jobs) == ids
    # A failed pass logs "reaper: <error>; reconnecting in ..." and starts over.
    assert not [r.getMessage() for r in caplog.records if "reconnecting" in r.getMessage()]
    assert pool_state().clean, pool_state()


# --- operations and migrations ------------------------------------------------------------


def test_cancel_and_retry_through_pgbouncer(
    db_url: str, bouncer_url: str, conn: psycopg.Connection[Any], pool_state: State
) -> None:
    enqueue_direct(db_url, 8)
    ids = [row[0] for row in conn.execute("SELECT id FROM pgq.jobs ORDER BY id").fetchall()]
    with db.connect(bouncer_url, pgbouncer=True, autocommit=True) as pooled:
        for job_id in ids:  # one statement each, more than psycopg's prepare_threshold
            assert admin.cancel_jobs(pooled, [job_id]).cancelled == [job_id]
        assert len(admin.retry_jobs(pooled, ids).retried) == len(ids)
    assert states(conn) == {"queued": 8}
    assert pool_state().clean, pool_state()


@pytest.fixture
def empty_pooled_url(empty_db_url: str, pgbouncer: devbouncer.PgBouncer) -> Iterator[str]:
    yield pgbouncer.url(empty_db_url)


def test_migrate_through_pgbouncer_in_transaction_mode(empty_pooled_url: str) -> None:
    """A migration is one transaction and its lock transaction-scoped: it works pooled."""
    assert migrate.upgrade(empty_pooled_url).after == migrate.SCHEMA_VERSION
    assert migrate.upgrade(empty_pooled_url).changed is False
    assert migrate.downgrade(empty_pooled_url).after is None
    with psycopg.connect(empty_pooled_url, autocommit=True, **POOLED) as pooled:
        assert devbouncer.session_state(pooled).clean


def test_migrate_through_pgbouncer_in_statement_mode_says_to_go_direct(
    pg_server: devdb.Server, empty_db_url: str, pgbouncer: devbouncer.PgBouncer
) -> None:
    # `pgbouncer` (transaction mode) is unused but for its skip where the binary is missing.
    with (
        devbouncer.start(pg_server.url, pool_mode="statement") as statement_mode,
        pytest.raises(pgq.SchemaError, match=r"statement pooling mode.*\$PGQ_DIRECT_URL"),
    ):
        migrate.upgrade(statement_mode.url(empty_db_url))
