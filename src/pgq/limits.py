"""Flow control across every worker: paused queues, concurrency and rate limits per key.

A paused queue is a row in ``pgq.queue_pauses``. Workers read the table once per poll
interval, and again at once when ``pause_queue`` / ``resume_queue`` notify them, and leave
the paused queues out of their claim: the claim statement is the same as without pauses,
so queues nobody paused pay nothing. Jobs already running finish; jobs enqueued into a
paused queue wait in it. A pause lives in the database, so it outlives worker and
database restarts until someone resumes the queue.

A task with ``concurrency_limit=N`` has at most N jobs per key holding a slot (queued or
running) across every worker; its other jobs wait ``blocked``, outside the claim index,
and the statement that finishes a job hands its slot to the oldest blocked job of its key.
The key is the task's name unless ``concurrency_key`` gives a string (shared by every task
that names it) or a function of the job's arguments. A task with ``rate_limit="10/s"``
has at most 10 jobs per key started in any window of a second; its jobs wait ``blocked``
too, and a worker's rated claim admits and claims them in one statement. The statements
are in ``sql/`` (job_insert_blocked, concurrency_keys_unblock, job_finish_limited,
job_insert_rated, job_claim_rated); docs/flow-control.md explains the rules.

Every function below takes a psycopg connection; with autocommit (what the CLI uses) each call
is its own transaction, else the change takes effect when the caller commits.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from pgq import options, store
from pgq.errors import OptionError, TaskRegistrationError

# The NOTIFY payload of a pause or resume on the 'pgq' channel. '!' is not allowed in a
# queue name, so it cannot be mistaken for an enqueue's wake-up.
PAUSE_PAYLOAD = "!pause"
REASON_MAX_CHARS = 500
CONCURRENCY_LIMIT_MAX = 100_000
LIMIT_KEY_MAX_CHARS = 255
# How many wakeups one promotion pass takes; a worker runs passes until one comes back short.
UNBLOCK_BATCH_DEFAULT = 1000

ConcurrencyKey = str | Callable[[dict[str, Any]], str]
RATE_MAX = 1_000_000  # starts per period
RATE_PERIOD_MAX = 86_400.0  # seconds
_RATE = re.compile(r"\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*(s|sec|m|min|h|hour|d|day)\s*")
_UNIT_SECONDS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hour": 3600, "d": 86400,
                 "day": 86400}  # fmt: skip

Connection = psycopg.Connection[Any]


@dataclass(frozen=True, slots=True)
class QueuePause:
    """A paused queue: since when, and why (the reason given to ``pause_queue``)."""

    queue: str
    paused_at: datetime
    reason: str | None


def pause_queue(conn: Connection, queue: str, reason: str | None = None) -> QueuePause:
    """Pause ``queue`` on every worker: none claims a job of it until ``resume_queue``.

    Running jobs finish; new jobs wait in the queue. Pausing a paused queue keeps its
    ``paused_at`` (and replaces the reason when one is given). Raises QueueNameError for a
    bad name, OptionError for a reason longer than 500 characters. Example::

        with psycopg.connect(url, autocommit=True) as conn:
            pgq.pause_queue(conn, "emails", reason="provider down")
    """
    queue = options.check_queue(queue)
    if reason is not None and (not isinstance(reason, str) or len(reason) > REASON_MAX_CHARS):
        raise OptionError(f"a pause reason must be text of at most {REASON_MAX_CHARS} characters")
    (row,) = store.fetch(conn, store.pause_queue(queue=queue, reason=reason))
    return QueuePause(*row[:3])


def resume_queue(conn: Connection, queue: str) -> QueuePause | None:
    """Resume ``queue``: workers claim from it again at once. Returns the pause lifted, or
    None when ``queue`` was not paused."""
    queue = options.check_queue(queue)
    rows = store.fetch(conn, store.resume_queue(queue=queue))
    return QueuePause(*rows[0][:3]) if rows else None


def paused_queues(conn: Connection) -> list[QueuePause]:
    """Every paused queue, oldest pause first."""
    return [QueuePause(*row) for row in store.fetch(conn, store.list_queue_pauses())]


FLOW_LIMITS_MAX = 100  # rows `pgq limits` and the gauges read: the keys with most waiting


@dataclass(frozen=True, slots=True)
class FlowLimit:
    """One row of the ``pgq.flow_limits`` view: a limit, its use, the jobs waiting on it.

    ``kind`` is ``concurrency`` (``max`` jobs of the key hold a slot at once; ``in_use``
    hold one now) or ``rate`` (``max`` starts per ``period_seconds``; ``in_use`` started in
    the last period)."""

    kind: str
    key: str
    max: int
    period_seconds: float | None
    in_use: int
    waiting: int


def flow_limits(conn: Connection, limit: int = FLOW_LIMITS_MAX) -> list[FlowLimit]:
    """The limits in use, the keys with the most jobs waiting first (at most ``limit``)."""
    return [FlowLimit(*row) for row in store.fetch(conn, store.select_flow_limits(limit=limit))]


# --- concurrency limits: the task options --------------------------------------------------


def check_concurrency(task: str, limit: object, key: object) -> int | None:
    """``limit`` checked for ``@pgq.task(concurrency_limit=..., concurrency_key=...)``;
    TaskRegistrationError naming the problem."""
    if limit is None:
        if key is not None:
            raise TaskRegistrationError(
                f"task {task}: concurrency_key needs a concurrency_limit (how many jobs of "
                "one key may run at once)"
            )
        return None
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise TaskRegistrationError(
            f"task {task}: concurrency_limit must be a whole number, not {limit!r}"
        )
    if not 1 <= limit <= CONCURRENCY_LIMIT_MAX:
        raise TaskRegistrationError(
            f"task {task}: concurrency_limit must be between 1 and {CONCURRENCY_LIMIT_MAX}"
        )
    if key is not None and not callable(key):
        _checked_key(task, key)
    return limit


def concurrency_key_of(
    task: str, key: ConcurrencyKey | None, args: Mapping[str, Any], option: str = "concurrency_key"
) -> str:
    """The key a job of ``task`` with ``args`` is limited under: the task's name when
    ``key`` is None, ``key`` itself when a string, else ``key(args)``. OptionError when the
    function raises or returns something that is not a key."""
    if key is None:
        return task
    if isinstance(key, str):
        return key
    try:
        found = key(dict(args))
    except Exception as exc:
        raise OptionError(
            f"task {task}: concurrency_key({dict(args)!r:.200}) raised {type(exc).__name__}: {exc}"
        ) from exc
    return _checked_key(task, found)


def _checked_key(task: str, key: object) -> str:
    if not isinstance(key, str) or not key or len(key) > LIMIT_KEY_MAX_CHARS or "\x00" in key:
        raise OptionError(
            f"task {task}: a limit's key must be a non-empty string of at most "
            f"{LIMIT_KEY_MAX_CHARS} characters without NUL, not {key!r:.100}"
        )
    return key


# --- rate limits: the task options ----------------------------------------------------------


def check_rate(
    task: str, rate: object, key: object, concurrency_limit: object
) -> tuple[int, float] | None:
    """``rate`` ("10/s", "600/m", "5/10s", "1000/h") as (starts, period seconds), checked for
    ``@pgq.task(rate_limit=..., rate_key=...)``; TaskRegistrationError naming the problem."""
    if rate is None:
        if key is not None:
            raise TaskRegistrationError(f"task {task}: rate_key needs a rate_limit, e.g. '10/s'")
        return None
    if concurrency_limit is not None:
        raise TaskRegistrationError(
            f"task {task}: a task takes a rate_limit or a concurrency_limit, not both"
        )
    match = _RATE.fullmatch(rate) if isinstance(rate, str) else None
    if match is None:
        raise TaskRegistrationError(
            f"task {task}: rate_limit must look like '10/s', '600/m', '5/10s' or '1000/h', "
            f"not {rate!r}"
        )
    starts, every, unit = int(match[1]), float(match[2] or 1), match[3]
    period = every * _UNIT_SECONDS[unit]
    if not 1 <= starts <= RATE_MAX or not 0 < period <= RATE_PERIOD_MAX:
        raise TaskRegistrationError(
            f"task {task}: rate_limit {rate!r} needs 1 to {RATE_MAX:,} starts per period of "
            f"at most a day"
        )
    if key is not None and not callable(key):
        _checked_key(task, key)
    return starts, period
