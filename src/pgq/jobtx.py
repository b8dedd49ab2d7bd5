"""A task's own transaction (``ctx.transaction()``): it commits together with the job's
``succeeded``, its result and the jobs the task enqueued on it, or not at all.

The transaction runs on a connection of its own, opened from the worker's database URL
(in PgBouncer mode without prepared statements, as the worker's) when the task first asks
for it: a task that never asks costs nothing. It is held in a psycopg transaction block,
so a task calling ``commit()`` or ``rollback()`` on it gets psycopg's error instead of
silently committing half of its work.

When the task returns, the worker (in the task's thread, or on the loop for ``async def``
tasks) completes the job in that transaction, fenced by the attempt's lease token
(sql/job_complete_tx.sql), releases the jobs that wait for it (a workflow's
dependents, sql/job_release_dependents.sql), and commits. A fence that fails rolls
everything back: a stale attempt commits nothing. When the task raises, or the attempt
was interrupted (timeout, cancel, lost lease, shutdown), the transaction rolls back and
the outcome is written as for any other attempt.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import psycopg

from pgq import store
from pgq.db import connect, connect_async
from pgq.enqueue import run_statement
from pgq.errors import LeaseLost

APPLICATION_NAME = "pgq task"


@dataclass(frozen=True, slots=True)
class Database:
    """Where a task's transaction connects: the worker's database."""

    url: str
    pgbouncer: bool = False


class TaskTransaction:
    """One attempt's transaction on a sync psycopg connection of its own."""

    def __init__(self, database: Database) -> None:
        self.conn = connect(
            database.url, pgbouncer=database.pgbouncer, application_name=APPLICATION_NAME
        )
        self._block: contextlib.AbstractContextManager[Any] | None = None
        try:
            self._block = self.conn.transaction()
            self._block.__enter__()
        except BaseException:
            self.conn.close()
            raise

    def commit(self, job_id: int, token: int, result: str | None, has_dependents: bool) -> bool:
        """Complete the job (releasing its dependents, if it has any) and commit; False
        (everything rolled back) when the lease is no longer ``token``'s. A database error
        rolls back too, and is raised."""
        statement = store.complete_job_in_transaction(job_id=job_id, token=token, result=result)
        if not store.fetch(self.conn, statement):
            return False  # close() rolls back
        if has_dependents:
            store.fetch(self.conn, store.release_dependents(ids=[job_id]))
        block, self._block = self._block, None
        assert block is not None, "committed once"
        block.__exit__(None, None, None)  # COMMIT; raises if it fails
        return True

    def close(self) -> None:
        """Roll back (unless committed) and close the connection; never raises."""
        block, self._block = self._block, None
        if block is not None:
            with contextlib.suppress(Exception):
                block.__exit__(psycopg.Rollback, psycopg.Rollback(), None)
        with contextlib.suppress(Exception):
            self.conn.close()


class AsyncTaskTransaction:
    """``TaskTransaction`` for ``async def`` tasks, on an async psycopg connection."""

    conn: psycopg.AsyncConnection[Any]
    _block: contextlib.AbstractAsyncContextManager[Any] | None = None

    @classmethod
    async def open(cls, database: Database) -> AsyncTaskTransaction:
        tx = cls()
        tx.conn = await connect_async(
            database.url, pgbouncer=database.pgbouncer, application_name=APPLICATION_NAME
        )
        try:
            block = tx.conn.transaction()
            await block.__aenter__()
            tx._block = block
        except BaseException:
            await tx.conn.close()
            raise
        return tx

    async def commit(
        self, job_id: int, token: int, result: str | None, has_dependents: bool
    ) -> bool:
        """As ``TaskTransaction.commit``."""
        statement = store.complete_job_in_transaction(job_id=job_id, token=token, result=result)
        if not await store.fetch_async(self.conn, statement):
            return False
        if has_dependents:
            await store.fetch_async(self.conn, store.release_dependents(ids=[job_id]))
        block, self._block = self._block, None
        assert block is not None, "committed once"
        await block.__aexit__(None, None, None)
        return True

    async def close(self) -> None:
        """As ``TaskTransaction.close``."""
        block, self._block = self._block, None
        if block is not None:
            with contextlib.suppress(Exception):
                await block.__aexit__(psycopg.Rollback, psycopg.Rollback(), None)
        with contextlib.suppress(Exception):
            await self.conn.close()


def complete_in(
    session: Any,
    job_id: int,
    token: int,
    result: str | None,
    has_dependents: bool,
    on_completed: Callable[[], None],
) -> Any:
    """Complete the job inside ``session``'s transaction (anything ``pgq.enqueue`` takes;
    an awaitable for async sessions): the fenced complete, then its dependents' release.
    ``on_completed`` is called once the fence held; LeaseLost is raised when it did not."""
    statement = store.complete_job_in_transaction(job_id=job_id, token=token, result=result)

    def fenced(rows: list[store.Row]) -> None:
        if not rows:
            raise LeaseLost(
                f"job {job_id}: this attempt's lease is gone (the reaper took the job back, "
                "or another worker holds it), so it was not completed; roll the "
                "transaction back (let this exception propagate)",
                job_id=job_id,
            )
        on_completed()

    done = run_statement(session, statement, fenced)
    release = store.release_dependents(ids=[job_id]) if has_dependents else None
    if inspect.isawaitable(done):
        return _complete_in_async(session, done, release)
    if release is not None:
        run_statement(session, release, lambda rows: None)
    return None


async def _complete_in_async(
    session: Any, done: Awaitable[None], release: store.Statement | None
) -> None:
    await done
    if release is not None:
        await run_statement(session, release, lambda rows: None)
