"""Helpers for testing an application's own task code against a real PostgreSQL.

- [`run_jobs`][pgq.testing.run_jobs] runs the due jobs in this process through the real
  worker (burst mode: it returns once nothing is left to do) and returns what each attempt
  did;
- [`enqueued_jobs`][pgq.testing.enqueued_jobs], [`assert_enqueued`][pgq.testing.assert_enqueued]
  and [`assert_not_enqueued`][pgq.testing.assert_not_enqueued] look at the real
  ``pgq.jobs`` table, through your own session (so inside your transaction too);
- [`throwaway_database`][pgq.testing.throwaway_database] makes a migrated database that is
  dropped afterwards.

pgq's pytest plugin (``pgq.pytest_plugin``, installed with pgq) gives the fixtures
``pgq_database_url`` and ``pgq_session_database_url``; see docs/testing.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import psycopg
from psycopg import pq

from pgq import devdb, migrate, store
from pgq.admin import Job
from pgq.db import connect, load_json, to_libpq_url
from pgq.enqueue import run_statement
from pgq.errors import PgqError, SessionTypeError, TaskRegistrationError
from pgq.events import WorkerEvents
from pgq.registry import REGISTRY, Registry, Task
from pgq.runner import ClaimedJob
from pgq.worker import Worker, WorkerConfig

__all__ = [
    "JobRun",
    "OpenTransactionError",
    "assert_enqueued",
    "assert_not_enqueued",
    "clear_jobs",
    "enqueued_jobs",
    "run_jobs",
    "run_jobs_async",
    "throwaway_database",
]

RUN_CONCURRENCY_DEFAULT = 1  # one job at a time: a test reads the jobs in the order they ran
FIND_LIMIT = 10_000  # enqueued_jobs returns at most this many


class OpenTransactionError(PgqError):
    """The session passed to run_jobs has an open transaction, whose jobs no worker sees."""


@dataclass(frozen=True, slots=True)
class JobRun:
    """One attempt that [`run_jobs`][pgq.testing.run_jobs] made.

    ``outcome`` is how it ended: ``succeeded``, ``retried``, ``failed`` (also a retry on the
    last attempt), ``snoozed`` or ``cancelled``. ``error`` is the entry the attempt added to
    the job's errors (``kind``: the exception's type, ``message``, ``traceback``), and
    ``exception`` the exception the task raised; both None when it raised nothing. ``job``
    is the job's row after the run (``job.result``: what the task returned, once succeeded).
    """

    job_id: int
    task: str
    queue: str
    args: dict[str, Any]
    attempt: int
    outcome: str
    error: dict[str, Any] | None
    exception: BaseException | None
    job: Job


class _Recorder(WorkerEvents):
    """Collects every finished attempt, in the order the worker finished them."""

    def __init__(self) -> None:
        self.finished: list[tuple[ClaimedJob, str]] = []
        self.exceptions: dict[tuple[int, int], BaseException | None] = {}

    def job_finished(self, job: ClaimedJob, outcome: str, seconds: float) -> None:
        self.finished.append((job, outcome))

    def on_failure(self, job: ClaimedJob, exc: BaseException | None) -> None:
        self.exceptions[(job.id, job.attempt)] = exc


def run_jobs(
    database: Any,
    *,
    queues: Sequence[str] | None = None,
    include_scheduled: bool = False,
    concurrency: int = RUN_CONCURRENCY_DEFAULT,
    registry: Registry = REGISTRY,
) -> list[JobRun]:
    """Run the jobs that are due now, in this process, and return one JobRun per attempt.

    ``database`` is a URL, a SQLAlchemy ``Engine`` (or a ``Session``/``Connection`` with no
    open transaction) or a psycopg connection not in a transaction: the worker opens its own
    connections to it, so it sees committed jobs only. It is pgq's real worker in burst
    mode (no reaper): it claims, runs and records outcomes exactly as ``pgq work`` does,
    and returns once nothing it can run is due. A retry due at once runs again within the
    same call; one whose backoff has it wait stays queued. Only registered tasks run, on
    ``queues`` (default: every queue they use).

    ``include_scheduled=True`` first makes the queued jobs scheduled for later due now.

    Raises OpenTransactionError when ``database`` is a session inside a transaction (commit
    first), SchemaError when pgq's schema is missing, TaskRegistrationError when no task is
    registered. Call [`run_jobs_async`][pgq.testing.run_jobs_async] from async code.

    Example::

        send_receipt.enqueue(session, order_id=7)
        session.commit()
        (run,) = pgq.testing.run_jobs(engine)
        assert run.outcome == "succeeded"
    """
    return asyncio.run(
        run_jobs_async(
            database,
            queues=queues,
            include_scheduled=include_scheduled,
            concurrency=concurrency,
            registry=registry,
        )
    )


async def run_jobs_async(
    database: Any,
    *,
    queues: Sequence[str] | None = None,
    include_scheduled: bool = False,
    concurrency: int = RUN_CONCURRENCY_DEFAULT,
    registry: Registry = REGISTRY,
) -> list[JobRun]:
    """[`run_jobs`][pgq.testing.run_jobs] on the running event loop (``await`` it)."""
    if len(registry) == 0:
        raise TaskRegistrationError(
            "no task is registered: import the modules that define your @pgq.task "
            "functions before run_jobs"
        )
    url = database_url_of(database)
    chosen = list(queues) if queues else registry.queues()
    await asyncio.to_thread(_prepare, url, chosen, [t.name for t in registry], include_scheduled)
    recorder = _Recorder()
    config = WorkerConfig(url, chosen, concurrency, burst=True, run_reaper=False)
    worker = Worker(config, registry, events=recorder)
    worker.on_failure = recorder.on_failure
    await worker.run_async()
    return await asyncio.to_thread(_runs, url, recorder)


def _prepare(url: str, queues: list[str], tasks: list[str], include_scheduled: bool) -> None:
    with connect(url, autocommit=True) as conn:
        migrate.check_schema(conn)
        if include_scheduled:
            store.fetch(conn, store.make_jobs_due(queues=queues, tasks=tasks))


def _runs(url: str, recorder: _Recorder) -> list[JobRun]:
    ids = sorted({job.id for job, _ in recorder.finished})
    with connect(url, autocommit=True) as conn:
        jobs = {row[0]: Job(*row) for row in store.fetch(conn, store.get_jobs(ids=ids))}
    return [
        JobRun(
            job_id=claimed.id,
            task=claimed.task,
            queue=claimed.queue,
            args=claimed.args,
            attempt=claimed.attempt,
            outcome=outcome,
            error=_error_of(jobs[claimed.id], claimed.attempt, outcome),
            exception=recorder.exceptions.get((claimed.id, claimed.attempt)),
            job=jobs[claimed.id],
        )
        for claimed, outcome in recorder.finished
    ]


def _error_of(job: Job, attempt: int, outcome: str) -> dict[str, Any] | None:
    if outcome not in ("retried", "failed"):
        return None
    mine = [entry for entry in job.errors if entry.get("attempt") == attempt]
    return mine[-1] if mine else None


def database_url_of(database: Any) -> str:
    """The libpq URL of what ``database`` is connected to; raise OpenTransactionError if it
    holds an open transaction (a worker would not see the jobs enqueued in it)."""
    if isinstance(database, str):
        return to_libpq_url(database)
    if isinstance(database, psycopg.Connection | psycopg.AsyncConnection):
        return _psycopg_url(database)
    engine = _sqlalchemy_engine(database)
    if engine is None:
        raise SessionTypeError(
            f"run_jobs needs a database URL, a SQLAlchemy Engine/Session/Connection or a "
            f"psycopg connection, not a {type(database).__module__}.{type(database).__name__}"
        )
    url = engine.url.set(drivername="postgresql")
    return to_libpq_url(url.render_as_string(hide_password=False))


_UNCOMMITTED = (
    "{what} has an open transaction: run_jobs runs the worker on connections of its own, "
    "which see committed jobs only. Commit first (or pass the engine or the database URL)"
)


def _psycopg_url(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> str:
    if conn.info.transaction_status != pq.TransactionStatus.IDLE:
        raise OpenTransactionError(_UNCOMMITTED.format(what="the psycopg connection"))
    params = conn.info.get_parameters()
    if conn.info.password:
        params["password"] = conn.info.password
    # Every parameter in the query string: works for a Unix socket directory as host too.
    return "postgresql:///?" + urlencode(params)


def _sqlalchemy_engine(database: Any) -> Any:
    """The sync Engine behind a SQLAlchemy Engine, Session or Connection (async ones too),
    or None when ``database`` is none of them."""
    from sqlalchemy.engine import Connection, Engine
    from sqlalchemy.orm import Session

    with contextlib.suppress(ImportError):  # no greenlet: nobody holds an async session
        from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

        if isinstance(database, AsyncEngine | AsyncConnection):
            _refuse_open_transaction(database)
            return database.sync_engine
        if isinstance(database, AsyncSession):
            _refuse_open_transaction(database)
            return _engine_of_bind(database.sync_session.get_bind())
    if isinstance(database, Engine):
        return database
    if isinstance(database, Session | Connection):
        _refuse_open_transaction(database)
        return _engine_of_bind(
            database if isinstance(database, Connection) else database.get_bind()
        )
    return None


def _engine_of_bind(bind: Any) -> Any:
    # A Session bound to a Connection (the usual "one transaction per test" fixture) sees
    # what that connection has not committed: no worker would.
    _refuse_open_transaction(bind)
    return getattr(bind, "engine", bind)


def _refuse_open_transaction(database: Any) -> None:
    in_transaction = getattr(database, "in_transaction", None)
    if in_transaction is not None and in_transaction():
        raise OpenTransactionError(_UNCOMMITTED.format(what="the SQLAlchemy session"))


# --- looking at the jobs table ---------------------------------------------------------------


def enqueued_jobs(
    session: Any,
    task: str | Task | None = None,
    *,
    args: dict[str, Any] | None = None,
    queue: str | None = None,
    state: str | None = "queued",
) -> Any:
    """The jobs in ``pgq.jobs``, oldest first, as [`pgq.admin.Job`][pgq.admin.Job] rows.

    ``session`` is anything ``pgq.enqueue`` takes (read in its transaction, so jobs it has
    not committed yet are there too; with an async session, ``await`` the result) or a
    database URL. Filters: ``task`` (a Task or its name), ``args`` (the job's arguments
    contain these keys with these values), ``queue``, and ``state`` (default ``queued``,
    which includes jobs scheduled for later; None: any state).
    """
    statement = store.find_jobs(
        task=task.name if isinstance(task, Task) else task,
        queue=queue,
        state=state,
        args=None if args is None else json.dumps(args),
        limit=FIND_LIMIT,
    )
    if isinstance(session, str):
        with connect(to_libpq_url(session), autocommit=True) as conn:
            return _jobs(store.fetch(conn, statement))
    return run_statement(session, statement, _jobs)


def _jobs(rows: list[store.Row]) -> list[Job]:
    return [Job(*(*row[:16], load_json(row[16]), load_json(row[17]))) for row in rows]


def assert_enqueued(session: Any, task: str | Task, /, **args: Any) -> Job:
    """Assert that a queued job of ``task`` whose arguments contain ``args`` exists; return
    the oldest such job. The AssertionError lists the queued jobs of that task otherwise.

    ``session`` as in [`enqueued_jobs`][pgq.testing.enqueued_jobs], sync only (with an async
    session, ``await enqueued_jobs(...)`` and assert on the list). Example::

        with Session(engine) as session, session.begin():
            place_order(session, cents=1999)
            job = pgq.testing.assert_enqueued(session, send_receipt, cents=1999)
    """
    found = _sync(session, task, args)
    if found:
        return found[0]
    name = task.name if isinstance(task, Task) else task
    others = _sync(session, task)
    listed = "; ".join(f"job {job.id} args {json.dumps(job.args)}" for job in others[:10])
    raise AssertionError(
        f"no queued job of task {name!r} with args containing {json.dumps(args)}; "
        + (f"queued jobs of that task: {listed}" if others else "none of that task is queued")
    )


def assert_not_enqueued(session: Any, task: str | Task, /, **args: Any) -> None:
    """Assert that no queued job of ``task`` has arguments containing ``args``."""
    found = _sync(session, task, args)
    if found:
        name = task.name if isinstance(task, Task) else task
        ids = ", ".join(str(job.id) for job in found)
        raise AssertionError(
            f"expected no queued job of task {name!r} with args containing "
            f"{json.dumps(args)}, found job {ids}"
        )


def _sync(session: Any, task: str | Task, args: dict[str, Any] | None = None) -> list[Job]:
    if _is_async(session):
        raise SessionTypeError(
            "assert_enqueued reads through sync sessions only; with an async session, "
            "`await pgq.testing.enqueued_jobs(session, ...)` and assert on the list"
        )
    found: list[Job] = enqueued_jobs(session, task, args=args)
    return found


def _is_async(session: Any) -> bool:
    if isinstance(session, psycopg.AsyncConnection):
        return True
    try:
        from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_scoped_session
    except ImportError:  # no greenlet: nobody holds an async session
        return False
    return isinstance(session, AsyncSession | AsyncConnection | async_scoped_session)


# --- databases -------------------------------------------------------------------------------


@contextlib.contextmanager
def throwaway_database(
    server: devdb.Server | None = None, *, prefix: str = "pgq_test", migrated: bool = True
) -> Iterator[str]:
    """Create a fresh database, with pgq's schema unless ``migrated=False``; yield its URL
    and drop it afterwards.

    The server is ``server``, else the first that answers, in the order pgq's own tests use:
    ``$PGQ_TEST_DATABASE_URL``, a testcontainers PostgreSQL when Docker answers, a server on
    localhost:5432, else a throwaway cluster from the local ``initdb`` (stopped afterwards).
    """
    with contextlib.ExitStack() as stack:
        found = server or stack.enter_context(devdb.find_server())
        url = stack.enter_context(devdb.scratch_database(found, prefix=prefix))
        if migrated:
            migrate.upgrade(url)
        yield url


def clear_jobs(database_url: str) -> None:
    """Delete every job in the database at ``database_url`` and start ids from 1 again."""
    with connect(to_libpq_url(database_url), autocommit=True) as conn:
        store.fetch(conn, store.truncate_jobs())
