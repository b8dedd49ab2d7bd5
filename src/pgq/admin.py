"""Operating queues: list and inspect jobs, retry and cancel them, read queue statistics.

What ``pgq jobs``, ``pgq show``, ``pgq retry``, ``pgq cancel`` and ``pgq stats`` call; usable
from Python too. Every function takes a psycopg connection (autocommit is what the CLI
uses). Each change is one SQL statement that is correct while workers and the reaper run:
a retry never touches a queued, running or succeeded job, a cancel only queued and running
ones. Ids are handled in batches of at most :data:`BATCH_SIZE_DEFAULT`, each batch in its
own transaction (a savepoint if the caller already has one open), so a long run never
holds many locks for long.

Retry policy: a failed (or cancelled) job goes back to ``queued`` with ``run_at = now()``.
Its ``attempts`` and ``errors`` are kept so the history stays visible; when it had used all
its attempts, ``max_attempts`` becomes ``attempts + 1`` so it gets exactly one more.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from pgq import options, store
from pgq.errors import OptionError, PgqError

JOB_STATES = ("queued", "blocked", "waiting", "running", "succeeded", "failed", "cancelled")
LIST_LIMIT_DEFAULT = 50
LIST_LIMIT_MAX = 10_000
BATCH_SIZE_DEFAULT = 1000
JOB_ID_MAX = 2**63 - 1  # bigint
# A job enqueued with the same unique key between our snapshot and our write aborts the
# statement; running it again sees that job and skips the key. More than a few in a row
# means something enqueues that key in a tight loop.
UNIQUE_RACE_RETRIES = 3

Connection = psycopg.Connection[Any]


@dataclass(frozen=True, slots=True)
class JobSummary:
    """One row of [`list_jobs`][pgq.admin.list_jobs]: a job without its args and error history."""

    id: int
    queue: str
    task: str
    state: str
    priority: int
    attempts: int
    max_attempts: int
    run_at: datetime
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    worker_id: str | None
    cancel_requested: bool
    last_error: str | None


@dataclass(frozen=True, slots=True)
class Job:
    """Everything about one job ([`get_job`][pgq.admin.get_job]); ``errors`` oldest first."""

    id: int
    queue: str
    task: str
    state: str
    priority: int
    attempts: int
    max_attempts: int
    run_at: datetime
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    worker_id: str | None
    cancel_requested: bool
    lease_token: int
    lease_expires_at: datetime | None
    unique_key: str | None
    args: dict[str, Any]
    errors: list[dict[str, Any]]
    result: Any = None  # what the task returned, once succeeded (JSON)
    workflow_id: int | None = None  # its workflow (pgq workflow ID); None for a plain job
    parents_pending: int | None = None  # while waiting: parents it still waits for


@dataclass(frozen=True, slots=True)
class QueueStats:
    """One row of the ``pgq.queue_stats`` view (README "Dashboards and operations")."""

    queue: str
    ready: int
    scheduled: int
    running: int
    failed: int
    succeeded_last_hour: int
    oldest_ready_seconds: float | None
    per_minute_last_5m: float
    paused: bool = False  # `pgq pause`: no worker claims from it
    waiting: int = 0  # workflow jobs waiting for their parents (never claimed until released)


@dataclass(slots=True)
class RetryResult:
    """Ids retried, and for each id that was not, why (``{id: reason}``).

    ``resumed``: workflow jobs cancelled because of a retried job that wait again;
    ``kept_cancelled``: those left cancelled, another parent still running or failed."""

    retried: list[int] = field(default_factory=list)
    skipped: dict[int, str] = field(default_factory=dict)
    resumed: int = 0
    kept_cancelled: int = 0


@dataclass(slots=True)
class CancelResult:
    """Queued jobs cancelled, running jobs asked to stop, and ids left alone with why."""

    cancelled: list[int] = field(default_factory=list)
    cancel_requested: list[int] = field(default_factory=list)
    skipped: dict[int, str] = field(default_factory=dict)


@dataclass(slots=True)
class RetryFailedResult:
    """Totals of [`retry_failed`][pgq.admin.retry_failed].

    Jobs retried, jobs skipped because a live job holds their unique key, batches run.
    """

    retried: int = 0
    skipped: int = 0
    batches: int = 0
    resumed: int = 0  # workflow jobs waiting again (see RetryResult)
    kept_cancelled: int = 0


def queue_stats(conn: Connection) -> list[QueueStats]:
    """The ``pgq.queue_stats`` view, one row per queue, ordered by queue name."""
    return [QueueStats(*row) for row in store.fetch(conn, store.select_queue_stats())]


def list_jobs(
    conn: Connection,
    *,
    state: str | None = None,
    queue: str | None = None,
    task: str | None = None,
    limit: int = LIST_LIMIT_DEFAULT,
) -> list[JobSummary]:
    """Jobs newest first, filtered by state, queue and task (None = any).

    Raises OptionError (or QueueNameError) for an unknown state, a bad queue name or a
    limit outside 1..10,000.
    """
    statement = store.list_jobs(
        state=check_state(state) if state is not None else None,
        queue=options.check_queue(queue) if queue is not None else None,
        task=task,
        limit=_check_limit(limit),
    )
    return [JobSummary(*row) for row in store.fetch(conn, statement)]


def get_job(conn: Connection, job_id: int) -> Job | None:
    """The job with id ``job_id`` and its whole error history, or None if there is none."""
    rows = store.fetch(conn, store.get_job(job_id=check_job_id(job_id)))
    return Job(*rows[0]) if rows else None


def retry_jobs(
    conn: Connection,
    ids: Iterable[int],
    *,
    batch_size: int = BATCH_SIZE_DEFAULT,
    now: datetime | None = None,
) -> RetryResult:
    """Failed or cancelled jobs among ``ids`` → queued now (see the module's retry policy).

    Ids in another state, unknown ids and jobs whose unique key is held by a live job are
    reported in ``skipped`` with the reason; nothing is raised for them.
    """
    result = RetryResult()
    for batch in _batches(check_job_ids(ids), check_batch_size(batch_size)):
        rows, resumed, kept = _with_unique_retries(
            conn, store.retry_jobs(ids=batch, now=now), lambda rows: [row[0] for row in rows]
        )
        result.resumed += resumed
        result.kept_cancelled += kept
        done = [row[0] for row in rows]
        result.retried += done
        result.skipped.update(_explain(conn, batch, done, _retry_reason))
    return result


def count_failed(conn: Connection, *, queue: str | None = None, task: str | None = None) -> int:
    """How many failed jobs (of ``queue`` and ``task`` when given) there are now: the
    total :func:`retry_failed` starts from, for a progress bar."""
    queue = options.check_queue(queue) if queue is not None else None
    return int(store.fetch(conn, store.count_failed_jobs(queue=queue, task=task))[0][0])


def retry_failed(
    conn: Connection,
    *,
    queue: str | None = None,
    task: str | None = None,
    batch_size: int = BATCH_SIZE_DEFAULT,
    on_batch: Callable[[RetryFailedResult], None] | None = None,
    now: datetime | None = None,
) -> RetryFailedResult:
    """Every failed job (of ``queue`` and ``task`` when given) → queued now, in batches.

    Each batch of ``batch_size`` jobs is one statement in its own transaction; after every
    full batch (more may follow) ``on_batch`` gets the totals so far, for progress reports.
    Jobs whose unique key is held by a live job stay failed and are counted in ``skipped``.
    """
    queue = options.check_queue(queue) if queue is not None else None
    size = check_batch_size(batch_size)
    result, after_id = RetryFailedResult(), 0
    while True:
        statement = store.retry_failed_jobs(
            after_id=after_id, limit=size, queue=queue, task=task, now=now
        )
        rows, resumed, kept = _with_unique_retries(conn, statement, lambda rows: list(rows[0][4]))
        last_id, picked, retried, _, _ = rows[0]
        result.resumed += resumed
        result.kept_cancelled += kept
        if picked == 0:
            return result
        result.batches += 1
        result.retried += retried
        result.skipped += picked - retried
        after_id = last_id
        if picked == size and on_batch is not None:
            on_batch(result)


def cancel_jobs(
    conn: Connection,
    ids: Iterable[int],
    *,
    batch_size: int = BATCH_SIZE_DEFAULT,
    now: datetime | None = None,
) -> CancelResult:
    """Cancel queued jobs among ``ids`` now; ask the workers running the running ones to stop.

    A running job stays ``running`` with ``cancel_requested`` set until the worker holding
    it sees the flag at its next heartbeat. Other ids are reported in ``skipped``.
    """
    result = CancelResult()
    for batch in _batches(check_job_ids(ids), check_batch_size(batch_size)):
        with conn.transaction():
            rows = store.fetch(conn, store.cancel_jobs(ids=batch, now=now))
            # Cancelled queued (or waiting) jobs cancel their waiting dependents with them,
            # in the same transaction. A running job's dependents follow when its worker
            # writes the cancellation.
            cancelled = [row[0] for row in rows if row[1] == "cancelled"]
            if cancelled:
                store.fetch(conn, store.release_dependents(ids=cancelled))
        result.cancelled += [row[0] for row in rows if row[1] == "cancelled"]
        result.cancel_requested += [row[0] for row in rows if row[1] == "running"]
        done = [row[0] for row in rows]
        result.skipped.update(_explain(conn, batch, done, _cancel_reason))
    return result


# --- validation ---------------------------------------------------------------------------


def check_state(state: str) -> str:
    if state not in JOB_STATES:
        raise OptionError(f"state {state!r} is not one of {', '.join(JOB_STATES)}")
    return state


def check_job_id(job_id: object) -> int:
    if isinstance(job_id, bool) or not isinstance(job_id, int) or not 1 <= job_id <= JOB_ID_MAX:
        raise OptionError(f"job id {job_id!r} is not a job id (a positive 64-bit integer)")
    return job_id


def check_job_ids(ids: Iterable[int]) -> list[int]:
    """The ids validated, duplicates dropped, order kept."""
    return list(dict.fromkeys(check_job_id(job_id) for job_id in ids))


def _check_limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= LIST_LIMIT_MAX:
        raise OptionError(f"limit must be between 1 and {LIST_LIMIT_MAX}, not {limit!r}")
    return limit


def check_batch_size(size: int) -> int:
    """``size`` if it is a valid batch size for retry and cancel; OptionError otherwise."""
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= LIST_LIMIT_MAX:
        raise OptionError(f"batch size must be between 1 and {LIST_LIMIT_MAX}, not {size!r}")
    return size


# --- helpers --------------------------------------------------------------------------------


def _batches(ids: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def _with_unique_retries(
    conn: Connection,
    statement: store.Statement,
    retried_ids: Callable[[list[store.Row]], list[int]],
) -> tuple[list[store.Row], int, int]:
    """Run a retry statement in its own transaction, again if a unique key race aborted it.

    In the same transaction, the retried jobs' workflows resume: the jobs cancelled because
    these failed wait again (``retried_ids`` picks the ids out of the statement's rows).
    Returns the statement's rows and how many such jobs resumed and stayed cancelled."""
    for _ in range(UNIQUE_RACE_RETRIES):
        try:
            with conn.transaction():
                rows = store.fetch(conn, statement)
                ids = retried_ids(rows) if rows else []
                if not ids:
                    return rows, 0, 0
                ((resumed, kept),) = store.fetch(conn, store.restore_dependents(ids=ids))
                return rows, int(resumed), int(kept)
        except psycopg.errors.UniqueViolation:
            continue
    raise PgqError(
        "jobs with the same unique keys kept being enqueued while retrying; run the retry again"
    )


def _explain(
    conn: Connection, batch: list[int], done: list[int], reason: Callable[[str, str | None], str]
) -> dict[int, str]:
    """Why each id of ``batch`` not in ``done`` was left alone, read from its current state."""
    acted = set(done)
    left = [job_id for job_id in batch if job_id not in acted]
    if not left:
        return {}
    found = {row[0]: row[1:] for row in store.fetch(conn, store.get_job_states(ids=left))}
    return {job_id: reason(*found[job_id]) if job_id in found else "not found" for job_id in left}


def _retry_reason(state: str, unique_key: str | None) -> str:
    if state in ("failed", "cancelled") and unique_key is not None:
        return f"its unique key {unique_key!r} is held by a queued, blocked or running job"
    if state in ("failed", "cancelled"):
        return f"is {state} again after a concurrent change; run the retry again"
    return f"is {state}; only failed or cancelled jobs can be retried"


def _cancel_reason(state: str, unique_key: str | None) -> str:
    if state in ("queued", "blocked", "waiting", "running"):
        return f"is {state} again after a concurrent change; run the cancel again"
    return f"is {state}; only queued, blocked, waiting or running jobs can be cancelled"
