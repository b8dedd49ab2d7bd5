"""Running one attempt of one job and turning what happened into an ``Outcome``.

Sync tasks run in the worker's thread pool, ``async def`` tasks on its event loop. The
task's return or exception decides the outcome; the worker writes it, fenced by the lease.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from pgq.args import encode_result
from pgq.errors import Fail, PgqError, Retry, Snooze
from pgq.jobtx import AsyncTaskTransaction, Database, TaskTransaction, complete_in
from pgq.registry import Task

ERROR_MESSAGE_MAX_CHARS = 2000
ERROR_TRACEBACK_MAX_CHARS = 8000
# The error kind of a job whose arguments do not bind to its function: failed at once.
BAD_ARGUMENTS = "bad_arguments"


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """A job as claimed by this worker: the row's fields the worker needs."""

    id: int
    queue: str
    task: str
    args: dict[str, Any]
    attempt: int
    max_attempts: int
    lease_token: int
    priority: int
    run_at: datetime
    enqueued_at: datetime
    lag: float = 0.0  # seconds from run_at to the claim, in database time
    has_dependents: bool = False  # jobs wait for this one: its finish releases them
    # A job of a concurrency-limited key: its outcome goes through job_finish_limited.sql,
    # which hands its slot on. Read from the row, so a limit removed from the code still
    # frees the slots of the jobs enqueued under it.
    limited: bool = False

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> ClaimedJob:
        return cls(*row)


class _TransactionState:
    """A job context's own transaction, once its task asked for one: ``committing`` is set
    (and never unset) when the worker starts completing the job in it, ``completed_in``
    once ``complete_in`` completed the job in the caller's transaction. Class defaults
    outside the dataclass: a sync job that uses none of it pays no assignment at its
    start."""

    tx: TaskTransaction | AsyncTaskTransaction | None = None
    committing: bool = False
    completed_in: bool = False
    is_async: bool = False  # set by the worker for an async def task's context


@dataclass(eq=False)
class JobContext(_TransactionState):
    """What a task can know about its job: pass ``pass_context=True`` to ``@pgq.task``.

    A long task should check [`should_stop`][pgq.JobContext.should_stop] now and then and
    return (or raise) when it is true: the worker is shutting down, the job's timeout passed,
    an operator cancelled it, or its lease was lost. ``stop_reason`` says which.
    """

    job: ClaimedJob
    worker_id: str
    timeout: float | None = None
    worker_stopping: threading.Event = field(default_factory=threading.Event, repr=False)
    # Why the worker interrupted this attempt (timeout, cancelled, lease_lost, shutdown once
    # the grace period is over): set once, read by task threads. It decides the outcome, so
    # it is kept apart from a shutdown that only asks the task to finish within the grace.
    interrupt: str | None = None
    # A sync attempt's timeout, in time.monotonic(): set when its thread starts it, and
    # checked whenever the context is asked (Python cannot interrupt a thread, and the
    # attempt counts as a timeout if it returns after this).
    deadline: float | None = field(default=None, repr=False)
    # Where ctx.transaction() connects (the worker's database); None outside a worker.
    database: Database | None = field(default=None, repr=False)

    @property
    def id(self) -> int:
        return self.job.id

    @property
    def attempt(self) -> int:
        return self.job.attempt

    @property
    def queue(self) -> str:
        return self.job.queue

    @property
    def enqueued_at(self) -> datetime:
        return self.job.enqueued_at

    @property
    def stop_reason(self) -> str | None:
        """Why the task should stop: ``timeout``, ``cancelled``, ``lease_lost`` or
        ``shutdown`` (the worker is stopping: finish within the grace period); None while
        it may go on."""
        self._check_deadline()
        if self.interrupt is not None:
            return self.interrupt
        return "shutdown" if self.worker_stopping.is_set() else None

    @property
    def timed_out(self) -> bool:
        return self.stop_reason == "timeout"

    @property
    def cancelled(self) -> bool:
        return self.stop_reason == "cancelled"

    @property
    def shutting_down(self) -> bool:
        return self.stop_reason == "shutdown"

    @property
    def lease_lost(self) -> bool:
        return self.stop_reason == "lease_lost"

    def should_stop(self) -> bool:
        """True once the task should wind down: the worker is stopping, the timeout passed,
        an operator cancelled the job, or its lease was lost."""
        return self.stop_reason is not None

    def transaction(self) -> psycopg.Connection[Any]:
        """A psycopg connection in a transaction that commits together with this job's
        ``succeeded`` (and its result, and the jobs enqueued on it) when the task returns,
        or rolls back if it raises. Do not commit or roll it back yourself.

        Opened on first call (from the worker's database URL); later calls return the same
        connection. If the job's lease is no longer this attempt's when the task returns,
        nothing of the transaction is committed. ``async def`` tasks use
        [`transaction_async`][pgq.JobContext.transaction_async]. Raises PgqError outside a
        worker, DatabaseUnavailableError when the database cannot be reached.

        Example::

            @pgq.task(pass_context=True)
            def charge(ctx, order_id):
                tx = ctx.transaction()
                tx.execute("UPDATE orders SET paid = true WHERE id = %s", (order_id,))
                send_receipt.enqueue(tx, order_id=order_id)
                return {"paid": order_id}
        """
        if self.is_async:
            raise PgqError(
                "ctx.transaction() is for sync tasks; in an async def task use "
                "`await ctx.transaction_async()`"
            )
        if self.tx is None:
            self.tx = TaskTransaction(self._database())
        assert isinstance(self.tx, TaskTransaction)
        return self.tx.conn

    async def transaction_async(self) -> psycopg.AsyncConnection[Any]:
        """[`transaction`][pgq.JobContext.transaction] for ``async def`` tasks: an async
        psycopg connection in a transaction that commits with the job's success."""
        if not self.is_async:
            raise PgqError(
                "ctx.transaction_async() is for async def tasks; a sync task uses ctx.transaction()"
            )
        if self.tx is None:
            self.tx = await AsyncTaskTransaction.open(self._database())
        assert isinstance(self.tx, AsyncTaskTransaction)
        return self.tx.conn

    def complete_in(self, session: Any, result: Any = None) -> Any:
        """Complete this job inside ``session``'s transaction, River's ``JobCompleteTx``:
        when your transaction commits, the job is ``succeeded`` with ``result`` (and the
        jobs that wait for it are released); if it rolls back, nothing happened.

        ``session`` is anything [`pgq.enqueue`][pgq.enqueue.enqueue] takes, on your own
        engine: a SQLAlchemy ``Session``/``Connection`` (sync or async: then await this)
        or a psycopg connection, inside a transaction. Call it last, right before your
        commit: it locks the job's row until then, and the worker's heartbeat waits for
        that lock. Commit before the task returns; the worker then writes nothing for
        this attempt (a transaction that never commits leaves the job running until its
        lease lapses, and it runs again). The task's own return value is ignored.

        Raises [`LeaseLost`][pgq.LeaseLost] when the lease is no longer this attempt's
        (let it roll your transaction back), ResultError for a ``result`` that cannot be
        stored.

        Example::

            @pgq.task(pass_context=True)
            def charge(ctx, order_id):
                with Session(engine) as session, session.begin():
                    session.get(Order, order_id).paid = True
                    ctx.complete_in(session, {"paid": order_id})
        """
        text = None if result is None else encode_result(result, self.job.task)
        self.committing = True  # a heartbeat waiting on the row must not count it lost

        def completed() -> None:
            self.completed_in = True

        job = self.job
        return complete_in(session, job.id, job.lease_token, text, job.has_dependents, completed)

    def _database(self) -> Database:
        if self.database is None:
            raise PgqError(
                f"job {self.job.id}: this JobContext has no database, so it cannot open "
                "the task's transaction; ctx.transaction() works in a task a worker runs"
            )
        return self.database

    def close_transaction(self) -> None:
        """Roll back and close the task's transaction if one is open (sync tasks)."""
        tx, self.tx = self.tx, None
        if isinstance(tx, TaskTransaction):
            tx.close()

    async def close_transaction_async(self) -> None:
        """Roll back and close the task's transaction if one is open (async tasks)."""
        tx, self.tx = self.tx, None
        if isinstance(tx, AsyncTaskTransaction):
            await tx.close()

    def request_stop(self, reason: str) -> None:
        # The first reason wins: a job that timed out stays a timeout even if shutdown follows.
        self._check_deadline()
        if self.interrupt is None:
            self.interrupt = reason

    def start_clock(self) -> None:
        """A sync attempt starts now: its timeout counts from here."""
        if self.timeout is not None:
            self.deadline = time.monotonic() + self.timeout

    def stop_clock(self) -> None:
        """The sync attempt returned: judge its timeout now, and never again."""
        self._check_deadline()
        self.deadline = None

    def _check_deadline(self) -> None:
        deadline = self.deadline
        if deadline is not None and self.interrupt is None and time.monotonic() >= deadline:
            self.interrupt = "timeout"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What to write for an attempt: see sql/job_finish_many.sql for each kind.

    Two kinds need no write: ``committed`` (the task's own transaction completed the job)
    and ``stale`` (that transaction found the lease gone and rolled back)."""

    kind: str  # succeeded | retry | snooze | failed | cancelled | release | committed | stale
    delay: float = 0.0
    error: dict[str, Any] | None = None
    exception: BaseException | None = field(default=None, compare=False)
    result: str | None = None  # succeeded: the task's return value as JSON (None: none)

    def error_json(self) -> str | None:
        return None if self.error is None else json.dumps(self.error, ensure_ascii=False)


SUCCEEDED = Outcome("succeeded")
COMMITTED = Outcome("committed")
STALE = Outcome("stale")


@dataclass(frozen=True, slots=True)
class Returned:
    """What an attempt that returned left to write: its result as JSON (None: it returned
    None), and whether its own transaction committed the job (None: it opened none)."""

    result: str | None = None
    committed: bool | None = None


PLAIN_RETURN = Returned()  # the common case, allocated once
COMPLETED_IN = Returned(committed=True)


def settle(task: Task, job: ClaimedJob, ctx: JobContext, value: Any) -> Returned:
    """After a sync attempt returned ``value`` (called in its thread): the result
    encoded, and the task's transaction, if it opened one, committed with the job's
    success. Raises ResultError for a value that cannot be stored (the transaction is
    rolled back then, as for any error)."""
    tx = ctx.tx
    if ctx.completed_in:  # the caller's own transaction completed the job (complete_in)
        ctx.close_transaction()
        return COMPLETED_IN
    if tx is None:
        return PLAIN_RETURN if value is None else Returned(encode_result(value, task.name))
    assert isinstance(tx, TaskTransaction)
    try:
        if ctx.interrupt is not None:
            return PLAIN_RETURN  # rolled back below; outcome_of_call reads the interrupt
        result = None if value is None else encode_result(value, task.name)
        ctx.committing = True
        return Returned(result, tx.commit(job.id, job.lease_token, result, job.has_dependents))
    finally:
        ctx.close_transaction()


async def settle_async(task: Task, job: ClaimedJob, ctx: JobContext, value: Any) -> Returned:
    """``settle`` for an ``async def`` attempt, on the loop."""
    tx = ctx.tx
    if ctx.completed_in:
        await ctx.close_transaction_async()
        return COMPLETED_IN
    if tx is None:
        return PLAIN_RETURN if value is None else Returned(encode_result(value, task.name))
    assert isinstance(tx, AsyncTaskTransaction)
    try:
        if ctx.interrupt is not None:
            return PLAIN_RETURN
        result = None if value is None else encode_result(value, task.name)
        ctx.committing = True
        committed = await tx.commit(job.id, job.lease_token, result, job.has_dependents)
        return Returned(result, committed)
    finally:
        await ctx.close_transaction_async()


async def execute(task: Task, job: ClaimedJob, ctx: JobContext) -> Outcome:
    """Run one attempt of an ``async def`` task's ``job`` on the running loop and return its
    outcome; never raises for the task's errors. (Sync tasks run in the worker's threads;
    ``outcome_of_call`` turns what their call did into an outcome.)"""
    try:
        value = await _run_async(task, job, ctx)
        returned = await settle_async(task, job, ctx, value)
    except asyncio.CancelledError:
        await ctx.close_transaction_async()
        return stopped_outcome(task, job, ctx)
    except BaseException as exc:
        # Every failure of the task becomes an outcome, SystemExit from a task included:
        # only signals (handled by the worker) stop the worker.
        await ctx.close_transaction_async()
        return outcome_of_exception(task, job, ctx, exc)
    return outcome_of_call(task, job, ctx, None, returned)


def outcome_of_call(
    task: Task,
    job: ClaimedJob,
    ctx: JobContext,
    error: BaseException | None,
    returned: Returned = PLAIN_RETURN,
) -> Outcome:
    """The outcome of an attempt that returned (``error`` None) or raised ``error``."""
    if error is not None:
        return outcome_of_exception(task, job, ctx, error)
    if returned is PLAIN_RETURN:  # the common case first: returned None, no transaction
        return stopped_outcome(task, job, ctx) if ctx.interrupt else SUCCEEDED
    if returned.committed is not None:
        return COMMITTED if returned.committed else STALE
    if ctx.interrupt:
        return stopped_outcome(task, job, ctx)
    return SUCCEEDED if returned.result is None else Outcome("succeeded", result=returned.result)


async def _run_async(task: Task, job: ClaimedJob, ctx: JobContext) -> Any:
    args = (ctx,) if task.pass_context else ()
    if task.timeout is None:
        return await task.func(*args, **job.args)
    try:
        async with asyncio.timeout(task.timeout) as deadline:
            return await task.func(*args, **job.args)
    except TimeoutError:
        if deadline.expired():
            ctx.request_stop("timeout")
            return None
        raise


def stopped_outcome(task: Task, job: ClaimedJob, ctx: JobContext) -> Outcome:
    if ctx.interrupt == "timeout":
        message = f"the attempt ran past the task's timeout of {task.timeout}s"
        return Outcome(
            "retry",
            delay=task.backoff.delay(job.attempt),
            error=error_entry("timeout", message, None),
        )
    if ctx.interrupt == "cancelled":
        return Outcome("cancelled")
    # shutdown or lost lease: give the job back without counting the attempt; a lost lease's
    # write is fenced out anyway.
    return Outcome("release")


def outcome_of_exception(
    task: Task, job: ClaimedJob, ctx: JobContext, exc: BaseException
) -> Outcome:
    if ctx.interrupt is not None:
        return stopped_outcome(task, job, ctx)
    if isinstance(exc, Snooze):
        return Outcome("snooze", delay=max(0.0, exc.delay))
    if isinstance(exc, Fail):
        return Outcome("failed", error=error_entry("Fail", exc.reason, None), exception=exc)
    if isinstance(exc, Retry):
        delay = task.backoff.delay(job.attempt) if exc.delay is None else max(0.0, exc.delay)
        return Outcome(
            "retry", delay=delay, error=error_entry("Retry", exc.reason, None), exception=exc
        )
    kind = type(exc).__qualname__
    module = type(exc).__module__
    if module not in ("builtins", "__main__"):
        kind = f"{module}.{kind}"
    trace = "".join(traceback.format_exception(exc))
    return Outcome(
        "retry",
        delay=task.backoff.delay(job.attempt),
        error=error_entry(kind, str(exc), trace),
        exception=exc,
    )


def error_entry(kind: str, message: str, trace: str | None) -> dict[str, Any]:
    """An ``errors`` entry: clean text only, so the row can always be written."""
    return {
        "kind": _clean(kind, 200),
        "message": _clean(message, ERROR_MESSAGE_MAX_CHARS),
        "traceback": None if trace is None else _clean(trace, ERROR_TRACEBACK_MAX_CHARS, tail=True),
    }


def _clean(text: str, limit: int, tail: bool = False) -> str:
    # jsonb refuses NUL and invalid UTF-8 (lone surrogates), either of which would make the
    # whole batch fail; keep the end of a traceback, where the error is.
    text = text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")
    if len(text) <= limit:
        return text
    return ("…" + text[-limit:]) if tail else (text[:limit] + "…")
