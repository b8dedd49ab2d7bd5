"""Every error pgq raises, under one base class, plus the control exceptions tasks raise.

Each exception's docstring is its default message, so ``raise QueueNameError()`` reads well
and callers can still pass a sentence that names the exact field and problem.
"""

from __future__ import annotations

from typing import Any


class PgqError(Exception):
    """pgq failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class ValidationError(PgqError, ValueError):
    """A value given to pgq is not valid; nothing was sent to the database."""


class ArgsError(ValidationError):
    """The job arguments cannot be stored as JSON."""


class ArgsTooLargeError(ArgsError):
    """The job arguments are larger than the size cap."""


class ResultError(PgqError, ValueError):
    """A task returned a value that cannot be stored as its JSON result; the attempt failed."""


class ResultTooLargeError(ResultError):
    """A task's result is larger than the result size cap; the attempt failed."""


class QueueNameError(ValidationError):
    """The queue name is not valid."""


class TaskNameError(ValidationError):
    """The task name is not valid."""


class OptionError(ValidationError):
    """A job option (priority, max_attempts, run_at, delay, unique_key) is not valid."""


class ScheduleError(ValidationError):
    """A recurring job's schedule is not valid; the message names the schedule."""


class ScheduleOverdue(PgqError):
    """A schedule had no successful run within its grace period.

    What the failure hooks receive (as ``exc``) for an overdue schedule; ``schedule`` is
    its name, ``last_success_at`` the last success (None: never), ``grace`` in seconds.
    """

    def __init__(
        self, message: str, *, schedule: str, last_success_at: object, grace: float
    ) -> None:
        super().__init__(message)
        self.schedule = schedule
        self.last_success_at = last_success_at
        self.grace = grace


class SessionTypeError(PgqError, TypeError):
    """pgq cannot enqueue through this kind of object."""


class DatabaseUrlError(PgqError):
    """The database URL is not valid."""


class DatabaseUnavailableError(PgqError):
    """The database cannot be reached."""


class SchemaError(PgqError):
    """The pgq schema is missing or older than this version of pgq; run `pgq migrate`."""


class TaskRegistrationError(PgqError):
    """A task cannot be registered."""


class MissingExtraError(PgqError, ImportError):
    """An optional dependency of pgq is not installed; the message names the extra to install."""


class JobNotFound(PgqError, LookupError):
    """No job has this id: it never existed, or it finished longer ago than the retention
    and was pruned."""

    def __init__(self, message: str | None = None, *, job_id: int | None = None) -> None:
        super().__init__(message)
        self.job_id = job_id


class JobNotFinished(PgqError):
    """The job has not finished yet, so it has no result; ``pgq.wait`` waits for it."""

    def __init__(
        self, message: str | None = None, *, job_id: int | None = None, state: str = ""
    ) -> None:
        super().__init__(message)
        self.job_id = job_id
        self.state = state


class JobFailed(PgqError):
    """The job failed for good; ``error`` is its last error (kind, message, traceback)."""

    def __init__(
        self,
        message: str | None = None,
        *,
        job_id: int | None = None,
        error: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.job_id = job_id
        self.error = error


class JobCancelled(PgqError):
    """The job was cancelled, so it has no result."""

    def __init__(self, message: str | None = None, *, job_id: int | None = None) -> None:
        super().__init__(message)
        self.job_id = job_id


class WaitTimeout(PgqError, TimeoutError):
    """The job did not finish within the time given to ``pgq.wait``; it may still finish."""

    def __init__(
        self, message: str | None = None, *, job_id: int | None = None, state: str = ""
    ) -> None:
        super().__init__(message)
        self.job_id = job_id
        self.state = state


class LeaseLost(PgqError):
    """This attempt's lease on the job is gone (the reaper took the job back, or another
    worker holds it): nothing was completed; let the exception roll your transaction back."""

    def __init__(self, message: str | None = None, *, job_id: int | None = None) -> None:
        super().__init__(message)
        self.job_id = job_id


class ControlFlow(Exception):
    """Base of the exceptions a task raises to choose its outcome."""


class Retry(ControlFlow):
    """Run the job again after ``delay`` seconds (or the task's backoff); counts as an attempt."""

    def __init__(self, delay: float | None = None, reason: str = "retry requested") -> None:
        super().__init__(reason)
        self.delay = delay
        self.reason = reason


class Snooze(ControlFlow):
    """Run the job again after ``delay`` seconds; does not count as an attempt."""

    def __init__(self, delay: float) -> None:
        super().__init__(f"snoozed for {delay}s")
        self.delay = delay


class Fail(ControlFlow):
    """Mark the job failed now, without further retries."""

    def __init__(self, reason: str = "failed by the task") -> None:
        super().__init__(reason)
        self.reason = reason
