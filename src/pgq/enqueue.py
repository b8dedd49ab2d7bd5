"""enqueue / enqueue_many: insert jobs inside the caller's own transaction.

pgq never commits, never opens a connection of its own and never begins a transaction the
caller does not know about: it runs one statement on the connection the caller's session
already holds (two, ids then COPY, for a large enqueue_many inside a transaction).
Everything that could make PostgreSQL raise (and so abort the caller's transaction) is
validated first, in Python.

Sync sessions return the result; async sessions (``AsyncSession``, ``AsyncConnection``,
``psycopg.AsyncConnection``) return an awaitable.
"""

from __future__ import annotations

import functools
import importlib
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import pq

from pgq import store
from pgq.errors import MissingExtraError, SessionTypeError
from pgq.registry import JobSpec, Task
from pgq.rows import (
    UNIQUE_KEY,
    Row,
    checked_rows,
    concurrency_all,
    concurrency_of,
    copy_values,
    copy_values_scheduled,
    due_queues,
    insert_document,
    insert_document_limited,
    is_scheduled,
    job_row,
    rate_of,
)

Runner = Callable[[store.Statement], list[store.Row]]


def enqueue(
    session: Any,
    task: str | Task,
    args: Mapping[str, Any] | None = None,
    *,
    queue: str | None = None,
    priority: int | None = None,
    run_at: datetime | None = None,
    delay: float | timedelta | None = None,
    max_attempts: int | None = None,
    unique_key: str | None = None,
) -> Any:
    """Insert one job in ``session``'s current transaction and return its id.

    ``session`` is a SQLAlchemy ``Session``/``Connection``/``AsyncSession``/``AsyncConnection``
    (psycopg 3 driver) or a psycopg 3 ``Connection``/``AsyncConnection``. With an async
    session the result must be awaited. Options left as None take the registered task's
    defaults (or pgq's: queue "default", priority 0, max_attempts 20). ``run_at`` (aware
    datetime) or ``delay`` (seconds or timedelta) schedules the job for later.

    Returns None, without error, when ``unique_key`` is held by a queued or running job.
    Raises a [`pgq.ValidationError`][pgq.ValidationError] subclass naming the bad field;
    nothing is sent then.

    Example::

        with Session(engine) as session, session.begin():
            session.add(order)
            pgq.enqueue(session, "emails.send_receipt", {"order_id": order.id})
    """
    chosen: dict[str, Any] = {
        "queue": queue,
        "priority": priority,
        "run_at": run_at,
        "delay": delay,
        "max_attempts": max_attempts,
        "unique_key": unique_key,
    }
    # args go in as given (not dict(args)), so a list or a string is reported as bad args
    # instead of being silently turned into something else.
    given: Any = {} if args is None else args
    if isinstance(task, Task):
        task.bind_args(given)
        spec = replace(
            task.configure(**chosen).options,
            args=given,
            concurrency=task.concurrency_for(given),
            rate=task.rate_for(given),
        )
    else:
        spec = JobSpec(task, given, **chosen)
    return enqueue_spec(session, spec)


def enqueue_spec(session: Any, spec: JobSpec) -> Any:
    """Enqueue one ``JobSpec``; see ``enqueue``."""
    queue, task, args, priority, run_at, delay, max_attempts, unique_key = job_row(spec)
    due_now = run_at is None and delay == 0
    rated = rate_of(spec)
    if rated is not None:
        admitted = store.insert_rated_job(
            queue=queue,
            task=task,
            args=args,
            priority=priority,
            run_at=run_at,
            delay=delay,
            max_attempts=max_attempts,
            unique_key=unique_key,
            rate_key=rated[0],
            max_starts=rated[1],
            period=rated[2],
            notify=NOTIFY_LIMITER.allow(queue),
        )
        return run_statement(session, admitted, _first_id)
    limited = concurrency_of(spec)
    if limited is not None:
        blocked = store.insert_blocked_job(
            queue=queue,
            task=task,
            args=args,
            priority=priority,
            run_at=run_at,
            delay=delay,
            max_attempts=max_attempts,
            unique_key=unique_key,
            concurrency_key=limited[0],
            concurrency_limit=limited[1],
            notify=NOTIFY_LIMITER.allow(queue),
        )
        return run_statement(session, blocked, _first_id)
    statement = store.insert_job(
        queue=queue,
        task=task,
        args=args,
        priority=priority,
        run_at=run_at,
        delay=delay,
        max_attempts=max_attempts,
        unique_key=unique_key,
        notify=NOTIFY_LIMITER.allow(queue) if due_now else True,
    )
    return run_statement(session, statement, _first_id)


NOTIFY_INTERVAL_DEFAULT = 0.01  # seconds: at most one NOTIFY per queue this often per process


class NotifyLimiter:
    """At most one NOTIFY per queue every ``interval`` seconds from this process.

    NOTIFY takes a lock that serialises the commits of every transaction that notified,
    including their WAL flush: with every enqueue notifying, 8 threads enqueueing one job
    per transaction reached about half the commits per second of the same loop without
    NOTIFY. Skipping the NOTIFY of a job enqueued right after another one on its queue
    loses nothing: a worker woken by a notification claims again shortly after a short
    claim (see ``LINGER`` in worker.py), and the poll finds anything else.
    """

    def __init__(self, interval: float = NOTIFY_INTERVAL_DEFAULT) -> None:
        self.interval = interval
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def allow(self, queue: str, now: float | None = None) -> bool:
        """True when a NOTIFY for ``queue`` should be sent now (and remember that it was)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if now - self._last.get(queue, -self.interval) < self.interval:
                return False
            self._last[queue] = now
            return True

    def reset(self) -> None:
        """Forget every queue (tests use it so one test's enqueue cannot mute the next's)."""
        with self._lock:
            self._last.clear()


NOTIFY_LIMITER = NotifyLimiter()


# Smaller batches take the INSERT: one round trip instead of two. Measured with a psycopg
# connection, call + COMMIT: COPY took 1.35x the INSERT's time at 30 jobs, 0.69x at 100.
COPY_MIN_JOBS = 100


def enqueue_many(session: Any, jobs: Iterable[JobSpec]) -> Any:
    """Insert many jobs at once, in the caller's transaction; return the new ids in input order.

    Jobs skipped because their ``unique_key`` is live (or taken by an earlier job of the same
    batch) are left out of the result. Every job is validated before anything is sent: one
    bad job raises the ValidationError of [`enqueue`][pgq.enqueue.enqueue], its message
    starting with the job's position (``jobs[3]: ...``), and none is inserted.

    A batch of ``COPY_MIN_JOBS`` jobs or more, none with a unique key, is written with
    ``COPY`` when the session is inside a transaction (two round trips; at 50,000 jobs
    about twice as fast); any other batch with one ``INSERT`` (one round trip). Both make
    the same rows and notifications.

    Example::

        pgq.enqueue_many(session, [send_receipt.spec(order_id=i) for i in order_ids])
    """
    specs = list(jobs)
    rows = checked_rows(specs)
    limited = concurrency_all(specs)
    if limited is not None:  # blocked jobs and their wakeups: the INSERT, never the COPY
        document = insert_document_limited(rows, limited, [rate_of(spec) for spec in specs])
        return run_statement(session, store.insert_jobs_blocked(jobs=document), _all_ids)
    if len(rows) >= COPY_MIN_JOBS and not any(row[UNIQUE_KEY] for row in rows):
        copied = _copy_many(session, rows)
        if copied is not None:
            return copied
    return run_statement(session, store.insert_jobs(jobs=insert_document(rows)), _all_ids)


# --- enqueue_many's COPY: the ids first, then the rows -----------------------------------------


def _copy_many(session: Any, rows: list[Row]) -> Any:
    """The ids of ``rows`` written with COPY, or None where the session needs the INSERT.

    COPY takes two statements, so it is used only where the two are one transaction. In
    SQLAlchemy sessions the first statement goes through SQLAlchemy, which so begins its
    transaction, and the COPY through the psycopg connection underneath.
    """
    fetch: Callable[..., Any]
    if isinstance(session, psycopg.Connection):
        if not _copy_safe(session):
            return None
        fetch = functools.partial(store.fetch, session)
        return _copy(fetch, functools.partial(store.copy_rows, session), rows)
    if isinstance(session, psycopg.AsyncConnection):
        if not _copy_safe(session):
            return None
        fetch = functools.partial(store.fetch_async, session)
        return _copy_async(fetch, functools.partial(store.copy_rows_async, session), rows)
    sa_kind = _sqlalchemy_kind(session)
    if sa_kind == "sync":
        conn = _sync_connection(session)
        driver = conn.connection.driver_connection
        if not _copy_safe(driver):
            return None
        fetch = functools.partial(_fetch_sqlalchemy, conn)
        return _copy(fetch, functools.partial(store.copy_rows, driver), rows)
    if sa_kind == "async":
        return _copy_sqlalchemy_async(session, rows)
    return None  # not a session: the INSERT's _run raises SessionTypeError


def _copy_safe(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> bool:
    """True when two statements on ``conn`` make one transaction, and COPY can run at all.

    In autocommit mode outside a transaction block each statement commits by itself: the
    ids' statement would deliver its NOTIFY before the rows exist, and a COPY that failed
    would leave that NOTIFY sent. The INSERT is one statement, atomic there. A connection
    in pipeline mode cannot COPY. With a client encoding other than UTF-8, text it cannot
    encode fails the INSERT before anything is sent, but a COPY halfway, which aborts the
    transaction.
    """
    if store.in_pipeline(conn) or conn.info.encoding != "utf-8":
        return False
    return not conn.autocommit or conn.info.transaction_status != pq.TransactionStatus.IDLE


def _copy(
    fetch: Callable[[store.Statement], list[store.Row]],
    copy: Callable[[store.Statement, Iterable[store.Row]], None],
    rows: list[Row],
) -> list[int]:
    ((ids, now, _notified),) = fetch(_next_ids(rows))
    if ids is None:  # this role may not COPY into pgq.jobs (see job_ids_next.sql)
        return _all_ids(fetch(store.insert_jobs(jobs=insert_document(rows))))
    copy(*_copy_statement(rows, ids, now))
    return ids  # type: ignore[no-any-return]


async def _copy_async(
    fetch: Callable[[store.Statement], Awaitable[list[store.Row]]],
    copy: Callable[[store.Statement, Iterable[store.Row]], Awaitable[None]],
    rows: list[Row],
) -> list[int]:
    ((ids, now, _notified),) = await fetch(_next_ids(rows))
    if ids is None:  # this role may not COPY into pgq.jobs (see job_ids_next.sql)
        return _all_ids(await fetch(store.insert_jobs(jobs=insert_document(rows))))
    await copy(*_copy_statement(rows, ids, now))
    return ids  # type: ignore[no-any-return]


async def _copy_sqlalchemy_async(session: Any, rows: list[Row]) -> list[int]:
    conn = session if _is_async_connection(session) else await session.connection()
    _check_driver(conn.dialect, asynchronous=True)
    driver = (await conn.get_raw_connection()).driver_connection
    if conn.dialect.driver != "psycopg" or not _copy_safe(driver):
        insert = store.insert_jobs(jobs=insert_document(rows))
        return _all_ids(await _fetch_sqlalchemy_async(conn, insert))
    fetch = functools.partial(_fetch_sqlalchemy_async, conn)
    return await _copy_async(fetch, functools.partial(store.copy_rows_async, driver), rows)


def _next_ids(rows: list[Row]) -> store.Statement:
    due = due_queues(rows)
    return store.next_job_ids(n=len(rows), queues=list(due), earliest=list(due.values()))


def _copy_statement(
    rows: list[Row], ids: list[int], now: datetime
) -> tuple[store.Statement, Iterable[store.Row]]:
    # When every job is due now, run_at is left to its default, the same now(): parsing a
    # timestamptz from text cost the server about 0.15 s at 50,000 rows.
    if is_scheduled(rows):
        return store.copy_jobs_scheduled(), copy_values_scheduled(rows, ids, now)
    return store.copy_jobs(), copy_values(rows, ids)


def _first_id(rows: list[store.Row]) -> int | None:
    return rows[0][0] if rows else None


def _all_ids(rows: list[store.Row]) -> list[int]:
    return [row[0] for row in rows]


# --- running a statement on whatever the caller holds ----------------------------------------


def run_statement(
    session: Any, statement: store.Statement, shape: Callable[[list[store.Row]], Any]
) -> Any:
    """Run ``statement`` on whatever session the caller holds and return ``shape(rows)``
    (an awaitable of it for async sessions). Raises SessionTypeError for anything else."""
    if isinstance(session, psycopg.Connection):
        return shape(store.fetch(session, statement))
    if isinstance(session, psycopg.AsyncConnection):
        return _shaped(store.fetch_async(session, statement), shape)
    sa_kind = _sqlalchemy_kind(session)
    if sa_kind == "sync":
        return shape(_fetch_sqlalchemy(_sync_connection(session), statement))
    if sa_kind == "async":
        return _shaped(_fetch_sqlalchemy_async(session, statement), shape)
    raise SessionTypeError(
        f"pgq cannot enqueue through a {type(session).__module__}.{type(session).__name__}; "
        "pass the SQLAlchemy Session/Connection (sync or async) or psycopg connection "
        "whose transaction the job belongs to"
    )


async def _shaped(rows: Awaitable[list[store.Row]], shape: Callable[[list[store.Row]], Any]) -> Any:
    return shape(await rows)


_NO_TRANSACTION = (
    "an Engine has no transaction; pass a Session or Connection "
    "from inside your transaction (engine.begin() / Session)"
)


def _sqlalchemy_kind(session: Any) -> str | None:
    try:
        from sqlalchemy.engine import Connection, Engine
        from sqlalchemy.orm import Session, scoped_session
    except ImportError:  # pragma: no cover - SQLAlchemy is a dependency
        return None
    if isinstance(session, Engine):
        raise SessionTypeError(_NO_TRANSACTION)
    if isinstance(session, Session | Connection | scoped_session):
        return "sync"
    try:
        from sqlalchemy.ext.asyncio import (
            AsyncConnection,
            AsyncEngine,
            AsyncSession,
            async_scoped_session,
        )
    except ImportError:  # greenlet missing: SQLAlchemy 2.1 refuses the first import, so
        return None  # the caller cannot hold an AsyncSession either
    if isinstance(session, AsyncEngine):
        raise SessionTypeError(_NO_TRANSACTION)
    if isinstance(session, AsyncSession | AsyncConnection | async_scoped_session):
        _require_greenlet()
        return "async"
    return None


_NO_GREENLET = (
    "pgq.enqueue with a SQLAlchemy AsyncSession or AsyncConnection needs the greenlet "
    "library, which SQLAlchemy's asyncio support runs on: pip install 'pgq-jobs[asyncio]'"
)
_greenlet_found = False


def _require_greenlet() -> None:
    """Raise MissingExtraError, naming the extra, when greenlet cannot be imported.

    Without it SQLAlchemy 2.0 fails inside the session with a ValueError that does not say
    what to install. Checked until it is found once, so later enqueues pay one global read.
    """
    global _greenlet_found
    if _greenlet_found:
        return
    try:
        importlib.import_module("greenlet")  # not `import`: greenlet ships no type stubs
    except ImportError as exc:
        raise MissingExtraError(_NO_GREENLET) from exc
    _greenlet_found = True


def _sync_connection(session: Any) -> Any:
    from sqlalchemy.engine import Connection

    conn = session if isinstance(session, Connection) else session.connection()
    _check_driver(conn.dialect)
    return conn


def _fetch_sqlalchemy(conn: Any, statement: store.Statement) -> list[store.Row]:
    # exec_driver_sql runs the statement through SQLAlchemy so it autobegins the transaction
    # and keeps its own bookkeeping right, while psycopg still binds the parameters.
    result = conn.exec_driver_sql(statement.query.decode(), statement.params)
    return [tuple(row) for row in result.fetchall()]


def _is_async_connection(session: Any) -> bool:
    from sqlalchemy.ext.asyncio import AsyncConnection

    return isinstance(session, AsyncConnection)


async def _fetch_sqlalchemy_async(session: Any, statement: store.Statement) -> list[store.Row]:
    conn = session if _is_async_connection(session) else await session.connection()
    _check_driver(conn.dialect, asynchronous=True)
    if conn.dialect.driver == "asyncpg":
        # asyncpg numbers its parameters ($1); SQLAlchemy still runs the statement, so it
        # begins the transaction asyncpg's adapter opens lazily, as it does for psycopg.
        result = await conn.exec_driver_sql(*store.numbered(statement))
    else:
        result = await conn.exec_driver_sql(statement.query.decode(), statement.params)
    return [tuple(row) for row in result.fetchall()]


def _check_driver(dialect: Any, *, asynchronous: bool = False) -> None:
    drivers = ("psycopg", "asyncpg") if asynchronous else ("psycopg",)
    if dialect.name != "postgresql" or dialect.driver not in drivers:
        raise SessionTypeError(
            f"pgq needs PostgreSQL through the psycopg 3 driver (or asyncpg, for async "
            f"sessions), not {dialect.name}+{dialect.driver}; create the engine with a "
            "postgresql+psycopg:// URL"
        )
