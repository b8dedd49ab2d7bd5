"""Reading a job's stored result, and waiting for a job to finish.

``pgq.result`` reads once, through whatever the caller holds (like ``pgq.enqueue``).
``pgq.wait`` / ``pgq.wait_async`` block until the job ends, without hammering the
database:

- On a connection of its own (a URL), or a borrowed one that is idle in autocommit mode,
  the waiter LISTENs on ``pgq_finished`` and flags the job (``waited``); the finish of a
  flagged job sends one NOTIFY with its id, and no other finish sends any (see
  docs/design-notes.md); the reaper's and an operator's cancel notify the same way. A
  slow poll stays as the fallback, for a notification lost with a dropped connection
  and for ends written by hand.
- Behind PgBouncer in transaction pooling mode (``PGQ_PGBOUNCER=1``), or on a borrowed
  connection inside a transaction, LISTEN cannot work (or would hold a row lock against
  the worker): the waiter polls with back-off instead, one primary-key read each time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import pq

from pgq import store
from pgq.admin import check_job_id
from pgq.db import connect, connect_async, pgbouncer_mode, to_libpq_url
from pgq.enqueue import run_statement
from pgq.errors import (
    JobCancelled,
    JobFailed,
    JobNotFinished,
    JobNotFound,
    SessionTypeError,
    ValidationError,
    WaitTimeout,
)

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlalchemy.ext.asyncio import AsyncEngine

WAIT_TIMEOUT_DEFAULT = 30.0  # seconds
# Polling without LISTEN: the first read again after POLL_FIRST, then each pause grows by
# POLL_GROWTH up to POLL_MAX. With LISTEN the poll is only a fallback: LISTEN_POLL each.
POLL_FIRST = 0.02
POLL_GROWTH = 1.5
POLL_MAX = 1.0
LISTEN_POLL = 2.0

_PENDING = object()


def result(session: Any, job_id: int) -> Any:
    """The stored result of job ``job_id``: what its task returned (None if it returned
    None). Reads through ``session`` as [`enqueue`][pgq.enqueue.enqueue] writes: a
    SQLAlchemy ``Session``/``Connection`` (sync or async) or a psycopg connection; with an
    async one, await the result.

    Raises [`JobNotFinished`][pgq.JobNotFinished] (queued or running),
    [`JobFailed`][pgq.JobFailed] (with its last error), [`JobCancelled`][pgq.JobCancelled]
    or [`JobNotFound`][pgq.JobNotFound]; [`wait`][pgq.wait] waits for it instead.
    """
    checked = check_job_id(job_id)
    try:
        statement = store.get_job_result(job_id=checked)
        return run_statement(session, statement, lambda rows: _read(checked, rows))
    except SessionTypeError:
        raise SessionTypeError(
            f"pgq.result cannot read through a {type(session).__module__}."
            f"{type(session).__name__}; pass a SQLAlchemy Session/Connection (sync or "
            "async) or a psycopg connection"
        ) from None


def _read(job_id: int, rows: list[store.Row]) -> Any:
    value = _settled(job_id, rows)
    if value is _PENDING:
        state = rows[0][0]
        raise JobNotFinished(
            f"job {job_id} is {state}: it has no result yet; use pgq.wait to wait for it",
            job_id=job_id,
            state=state,
        )
    return value


def _settled(job_id: int, rows: list[store.Row]) -> Any:
    """The result of a succeeded job, ``_PENDING`` for a live one; raises for the rest."""
    if not rows:
        raise JobNotFound(
            f"job {job_id} not found: it never existed, or it finished longer ago than the "
            "retention and was pruned",
            job_id=job_id,
        )
    state, value, task, attempts, error = rows[0]
    if state == "succeeded":
        return value
    if state == "failed":
        what = f"{error.get('kind')}: {error.get('message')}" if error else "no error recorded"
        raise JobFailed(
            f"job {job_id} ({task}) failed after {attempts} attempt(s): {what}",
            job_id=job_id,
            error=error,
        )
    if state == "cancelled":
        raise JobCancelled(f"job {job_id} ({task}) was cancelled", job_id=job_id)
    return _PENDING


def _check_timeout(timeout: float | None) -> float | None:
    if timeout is not None and not (isinstance(timeout, int | float) and timeout >= 0):
        raise ValidationError(
            f"timeout must be a number of seconds (0 or more) or None, not {timeout!r}"
        )
    return timeout


@dataclass
class _Pacing:
    """When to read the job again: poll back-off, or the slow fallback under LISTEN."""

    listening: bool
    timeout: float | None  # seconds
    deadline: float | None = None  # time.monotonic()
    _next: float = POLL_FIRST

    def __post_init__(self) -> None:
        if self.timeout is not None:
            self.deadline = time.monotonic() + self.timeout

    def pause(self, job_id: int, state: str) -> float:
        """Seconds to wait before the next read; raises WaitTimeout when time is up."""
        left = None if self.deadline is None else self.deadline - time.monotonic()
        if left is not None and left <= 0:
            raise WaitTimeout(
                f"job {job_id} did not finish within {self.timeout:g}s (it is {state}); it "
                "may still finish: wait again, or read it later with pgq.result",
                job_id=job_id,
                state=state,
            )
        if self.listening:
            pause = LISTEN_POLL
        else:
            pause, self._next = self._next, min(self._next * POLL_GROWTH, POLL_MAX)
        return pause if left is None else min(pause, left)


def _can_listen(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> bool:
    # LISTEN takes effect at commit, and the flag's UPDATE would hold the job's row lock
    # against the worker until the caller's transaction ends: only on an idle autocommit
    # connection, never in pipeline mode.
    return (
        conn.autocommit
        and conn.info.transaction_status == pq.TransactionStatus.IDLE
        and not store.in_pipeline(conn)
    )


def wait(
    url_or_connection: str | Engine | psycopg.Connection[Any],
    job_id: int,
    timeout: float | None = WAIT_TIMEOUT_DEFAULT,
    *,
    pgbouncer: bool | None = None,
) -> Any:
    """Block until job ``job_id`` ends and return its result (what its task returned).

    ``url_or_connection`` is a database URL or a SQLAlchemy ``Engine`` (a connection of
    its own is opened and closed here) or a psycopg connection (used as it is, and left
    as it was). ``timeout`` is in seconds
    (None: no limit). ``pgbouncer`` (None: ``$PGQ_PGBOUNCER``) says the URL goes through
    PgBouncer in transaction pooling mode: the wait then polls instead of LISTENing.

    Raises [`JobFailed`][pgq.JobFailed] (a job that failed for good, with its last error),
    [`JobCancelled`][pgq.JobCancelled], [`JobNotFound`][pgq.JobNotFound] or
    [`WaitTimeout`][pgq.WaitTimeout] (the job may still finish).

    Example::

        job_id = encode.enqueue(session, video_id=7)
        session.commit()
        thumbnail = pgq.wait(url, job_id, timeout=60)
    """
    checked, limit = check_job_id(job_id), _check_timeout(timeout)
    with _sync_connection(url_or_connection, pgbouncer) as (conn, listening):
        pacing = _Pacing(listening, limit)
        if listening:
            store.fetch(conn, store.listen_finished())
            store.fetch(conn, store.flag_job_waited(job_id=checked))
        try:
            while True:
                rows = store.fetch(conn, store.get_job_result(job_id=checked))
                value = _settled(checked, rows)
                if value is not _PENDING:
                    return value
                pause = pacing.pause(checked, rows[0][0])
                if listening:
                    _hear(conn, checked, pause)
                else:
                    time.sleep(pause)
        finally:
            if listening and not conn.closed:
                with contextlib.suppress(psycopg.Error):
                    store.fetch(conn, store.unlisten_finished())


def _hear(conn: psycopg.Connection[Any], job_id: int, seconds: float) -> None:
    """Return when job ``job_id``'s finish is notified, or after ``seconds``."""
    expected = str(job_id)
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        for notify in conn.notifies(timeout=left, stop_after=1):
            if notify.payload == expected:
                return


@contextlib.contextmanager
def _sync_connection(
    target: str | Engine | psycopg.Connection[Any], pgbouncer: bool | None
) -> Iterator[tuple[psycopg.Connection[Any], bool]]:
    if isinstance(target, psycopg.Connection):
        yield target, _can_listen(target)
        return
    url = target if isinstance(target, str) else _engine_url(target)
    if url is None:
        raise SessionTypeError(
            f"pgq.wait takes a database URL, a SQLAlchemy Engine or a psycopg Connection, "
            f"not {type(target).__module__}.{type(target).__name__}"
        )
    bouncer = pgbouncer_mode() if pgbouncer is None else pgbouncer
    with connect(url, pgbouncer=bouncer, autocommit=True, application_name="pgq wait") as conn:
        yield conn, not bouncer


async def wait_async(
    url_or_connection: str | Engine | AsyncEngine | psycopg.AsyncConnection[Any],
    job_id: int,
    timeout: float | None = WAIT_TIMEOUT_DEFAULT,
    *,
    pgbouncer: bool | None = None,
) -> Any:
    """[`wait`][pgq.wait] for asyncio code: ``await pgq.wait_async(url, job_id)``.

    Takes a URL, a SQLAlchemy ``Engine`` or ``AsyncEngine``, or a psycopg
    ``AsyncConnection``; returns and raises as ``wait`` does.
    """
    checked, limit = check_job_id(job_id), _check_timeout(timeout)
    async with _async_connection(url_or_connection, pgbouncer) as (conn, listening):
        pacing = _Pacing(listening, limit)
        if listening:
            await store.fetch_async(conn, store.listen_finished())
            await store.fetch_async(conn, store.flag_job_waited(job_id=checked))
        try:
            while True:
                rows = await store.fetch_async(conn, store.get_job_result(job_id=checked))
                value = _settled(checked, rows)
                if value is not _PENDING:
                    return value
                pause = pacing.pause(checked, rows[0][0])
                if listening:
                    await _hear_async(conn, checked, pause)
                else:
                    await asyncio.sleep(pause)
        finally:
            if listening and not conn.closed:
                with contextlib.suppress(psycopg.Error):
                    await store.fetch_async(conn, store.unlisten_finished())


async def _hear_async(conn: psycopg.AsyncConnection[Any], job_id: int, seconds: float) -> None:
    expected = str(job_id)
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        async for notify in conn.notifies(timeout=left, stop_after=1):
            if notify.payload == expected:
                return


@contextlib.asynccontextmanager
async def _async_connection(
    target: str | Engine | AsyncEngine | psycopg.AsyncConnection[Any], pgbouncer: bool | None
) -> AsyncIterator[tuple[psycopg.AsyncConnection[Any], bool]]:
    if isinstance(target, psycopg.AsyncConnection):
        yield target, _can_listen(target)
        return
    url = target if isinstance(target, str) else _engine_url(target)
    if url is None:
        raise SessionTypeError(
            f"pgq.wait_async takes a database URL, a SQLAlchemy Engine or AsyncEngine or a "
            f"psycopg AsyncConnection, not {type(target).__module__}.{type(target).__name__}"
        )
    bouncer = pgbouncer_mode() if pgbouncer is None else pgbouncer
    conn = await connect_async(url, pgbouncer=bouncer, autocommit=True, application_name="pgq wait")
    async with conn:
        yield conn, not bouncer


def _engine_url(target: Any) -> str | None:
    """The libpq URL of a SQLAlchemy Engine or AsyncEngine (the wait opens a connection of
    its own to the same database, whatever the engine's driver); None for anything else."""
    from sqlalchemy.engine import Engine

    engine = target
    if not isinstance(engine, Engine):
        try:
            from sqlalchemy.ext.asyncio import AsyncEngine
        except ImportError:  # no greenlet: the caller cannot hold an AsyncEngine either
            return None
        if not isinstance(engine, AsyncEngine):
            return None
        engine = engine.sync_engine
    url = engine.url.set(drivername="postgresql")
    return to_libpq_url(url.render_as_string(hide_password=False))
