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

from pgq.errors import Fail, Retry, Snooze
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

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> ClaimedJob:
        return cls(*row)


@dataclass(eq=False)
class JobContext:
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
    """What to write for an attempt: see sql/job_finish_many.sql for each kind."""

    kind: str  # succeeded | retry | snooze | failed | cancelled | release
    delay: float = 0.0
    error: dict[str, Any] | None = None
    exception: BaseException | None = field(default=None, compare=False)

    def error_json(self) -> str | None:
        return None if self.error is None else json.dumps(self.error, ensure_ascii=False)


SUCCEEDED = Outcome("succeeded")


async def execute(task: Task, job: ClaimedJob, ctx: JobContext) -> Outcome:
    """Run one attempt of an ``async def`` task's ``job`` on the running loop and return its
    outcome; never raises for the task's errors. (Sync tasks run in the worker's threads;
    ``outcome_of_call`` turns what their call did into an outcome.)"""
    try:
        await _run_async(task, job, ctx)
    except asyncio.CancelledError:
        return stopped_outcome(task, job, ctx)
    except BaseException as exc:
        # Every failure of the task becomes an outcome, SystemExit from a task included:
        # only signals (handled by the worker) stop the worker.
        return outcome_of_exception(task, job, ctx, exc)
    return outcome_of_call(task, job, ctx, None)


def outcome_of_call(
    task: Task, job: ClaimedJob, ctx: JobContext, error: BaseException | None
) -> Outcome:
    """The outcome of an attempt that returned (``error`` None) or raised ``error``."""
    if error is not None:
        return outcome_of_exception(task, job, ctx, error)
    return stopped_outcome(task, job, ctx) if ctx.interrupt else SUCCEEDED


async def _run_async(task: Task, job: ClaimedJob, ctx: JobContext) -> None:
    args = (ctx,) if task.pass_context else ()
    if task.timeout is None:
        await task.func(*args, **job.args)
        return
    try:
        async with asyncio.timeout(task.timeout) as deadline:
            await task.func(*args, **job.args)
    except TimeoutError:
        if deadline.expired():
            ctx.request_stop("timeout")
            return
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
