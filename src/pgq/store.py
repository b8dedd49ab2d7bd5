"""One thin function per SQL statement; no policy lives here.

Each function names a statement in ``pgq/sql/<name>.sql`` and binds its parameters. It
returns a ``Statement``; ``fetch`` and ``fetch_async`` run it on a psycopg
connection, so every statement is written once for sync and async callers alike. Statement
texts never change (arrays are parameters), so psycopg prepares the hot ones.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

import psycopg
from psycopg import pq
from psycopg.rows import tuple_row

Row = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Statement:
    name: str
    params: dict[str, Any]

    @property
    def query(self) -> bytes:
        # bytes, not str: psycopg only types LiteralString queries, and these come from files.
        return load_sql(self.name)


_INCLUDE = re.compile(rb"^-- pgq:include (\w+)\n", re.MULTILINE)


@functools.cache
def load_sql(name: str) -> bytes:
    """The text of ``sql/<name>.sql`` (cached), each ``-- pgq:include FRAGMENT`` line
    replaced by that fragment's SQL: CTEs several statements share are written once, and
    each statement's text stays constant (psycopg prepares it)."""
    text = resources.files("pgq").joinpath("sql", f"{name}.sql").read_bytes()
    return _INCLUDE.sub(lambda match: _fragment_body(match.group(1).decode()), text)


def _fragment_body(name: str) -> bytes:
    """A fragment's SQL without the comment that opens its file (what it is, who uses it)."""
    lines = load_sql(name).splitlines(keepends=True)
    while lines and lines[0].startswith(b"--"):
        lines.pop(0)
    return b"".join(lines)


_NAMED_PARAMETER = re.compile(rb"%\((\w+)\)s|%%")


@functools.cache
def numbered_sql(name: str) -> tuple[str, tuple[str, ...]]:
    """``sql/<name>.sql`` with ``$1, $2 ...`` for its ``%(name)s`` parameters (asyncpg's
    style), and the parameter names in that order. Cached: the text never changes."""
    names: list[str] = []

    def number(match: re.Match[bytes]) -> bytes:
        if match.group(0) == b"%%":
            return b"%"
        name = match.group(1).decode()
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}".encode()

    return _NAMED_PARAMETER.sub(number, load_sql(name)).decode(), tuple(names)


def numbered(statement: Statement) -> tuple[str, tuple[Any, ...]]:
    """``statement`` for a driver with numbered parameters: its text and its values."""
    sql, names = numbered_sql(statement.name)
    return sql, tuple(statement.params[name] for name in names)


def fetch(conn: psycopg.Connection[Any], statement: Statement) -> list[Row]:
    """Run ``statement`` on a sync psycopg connection and return its rows as tuples.

    On a connection in pipeline mode the statement runs in a nested pipeline block, whose
    end syncs: its result (a new job's id) is there to read, not queued behind whatever
    the caller sends next. The caller's transaction stays open."""
    with conn.cursor(row_factory=tuple_row) as cur:
        with conn.pipeline() if in_pipeline(conn) else contextlib.nullcontext():
            cur.execute(statement.query, statement.params)
        return cur.fetchall() if cur.description else []


async def fetch_async(conn: psycopg.AsyncConnection[Any], statement: Statement) -> list[Row]:
    """Run ``statement`` on an async psycopg connection and return its rows as tuples (in
    pipeline mode as ``fetch`` does)."""
    async with conn.cursor(row_factory=tuple_row) as cur:
        async with conn.pipeline() if in_pipeline(conn) else contextlib.nullcontext():
            await cur.execute(statement.query, statement.params)
        return await cur.fetchall() if cur.description else []


def in_pipeline(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> bool:
    """True when ``conn`` is in psycopg's pipeline mode."""
    return conn.pgconn.pipeline_status != pq.PipelineStatus.OFF


def copy_rows(conn: psycopg.Connection[Any], statement: Statement, rows: Iterable[Row]) -> None:
    """Run the ``COPY ... FROM STDIN`` ``statement`` on a sync psycopg connection, sending
    ``rows`` (one tuple per row, in the statement's column order)."""
    with conn.cursor() as cur, cur.copy(statement.query) as copy:
        for row in rows:
            copy.write_row(row)


async def copy_rows_async(
    conn: psycopg.AsyncConnection[Any], statement: Statement, rows: Iterable[Row]
) -> None:
    """``copy_rows`` on an async psycopg connection."""
    async with conn.cursor() as cur, cur.copy(statement.query) as copy:
        for row in rows:
            await copy.write_row(row)


# --- array parameters ------------------------------------------------------------------------
# The worker's statements take arrays of a batch's ids, tokens and outcomes. psycopg builds
# a list parameter in Python, item by item (3 us per job for a finish batch, the largest
# cost in the worker after the task itself); the same array as PostgreSQL's text literal is
# one C-level join. Statements cast these parameters (``%(ids)s::bigint[]``), so the
# literal is parsed by the server exactly as the list would have been.


def number_array(values: Iterable[int | float]) -> str:
    """``{1,2,3}``: an array literal of ints or floats (``repr`` keeps a float exact)."""
    return "{" + ",".join(map(repr, values)) + "}"


def word_array(values: Iterable[str]) -> str:
    """``{a,b}``: an array literal of words that need no quoting (outcome names)."""
    return "{" + ",".join(values) + "}"


def text_array(values: Iterable[str | None]) -> str:
    """An array literal of any strings or NULLs, quoted and escaped."""
    return "{" + ",".join(map(_quoted_element, values)) + "}"


def _quoted_element(value: str | None) -> str:
    if value is None:
        return "NULL"
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- statements -----------------------------------------------------------------------------


def insert_job(
    *,
    queue: str,
    task: str,
    args: str,
    priority: int,
    run_at: Any,
    delay: float,
    max_attempts: int,
    unique_key: str | None,
    notify: bool = True,
) -> Statement:
    """Insert one job; returns ``(id, notified)`` or no row when the unique key is live.

    ``notify=False`` skips the NOTIFY (the caller notified this queue moments ago)."""
    return Statement("job_insert", locals())


def insert_blocked_job(
    *,
    queue: str,
    task: str,
    args: str,
    priority: int,
    run_at: Any,
    delay: float,
    max_attempts: int,
    unique_key: str | None,
    concurrency_key: str,
    concurrency_limit: int,
    notify: bool = True,
) -> Statement:
    """Insert one job of a concurrency-limited key, blocked, with its wakeup; returns
    ``(id, notified)`` or no row when the unique key is live."""
    return Statement("job_insert_blocked", locals())


def insert_rated_job(
    *,
    queue: str,
    task: str,
    args: str,
    priority: int,
    run_at: Any,
    delay: float,
    max_attempts: int,
    unique_key: str | None,
    rate_key: str,
    max_starts: int,
    period: float,
    notify: bool = True,
) -> Statement:
    """Insert one job of a rate-limited key, blocked (its key's row made if new); returns
    ``(id, notified)`` or no row when the unique key is live."""
    return Statement("job_insert_rated", locals())


def claim_rated_jobs(
    *,
    queues: list[str],
    tasks: list[str],
    leases: list[float],
    rates: list[tuple[int, float] | None],
    limit: int,
    worker_id: str,
) -> Statement:
    """Admit and claim up to ``limit`` jobs of rate-limited keys; rows as ``claim_jobs``.

    ``rates[i]`` is ``tasks[i]``'s rate limit (starts, period seconds), or None: the limit a
    key with due jobs of the task and no row gets (see job_claim_rated.sql)."""
    return Statement(
        "job_claim_rated",
        {
            "queues": text_array(queues),
            "tasks": text_array(tasks),
            "leases": number_array(leases),
            "max_starts": text_array(None if rate is None else str(rate[0]) for rate in rates),
            "periods": text_array(None if rate is None else repr(rate[1]) for rate in rates),
            "limit": limit,
            "worker_id": worker_id,
        },
    )


def next_rate_slot(*, queues: list[str], tasks: list[str]) -> Statement:
    """``(seconds,)`` until a rate key with a due job of ``queues``/``tasks`` may admit one
    (0: now; NULL: no such job waits)."""
    return Statement(
        "rate_limit_next_free", {"queues": text_array(queues), "tasks": text_array(tasks)}
    )


def sync_rate_limits(*, keys: list[str], max_starts: list[int], periods: list[float]) -> Statement:
    """Set the limits of rate keys known at a worker's start (see rate_limits_sync.sql)."""
    return Statement(
        "rate_limits_sync",
        {
            "keys": text_array(keys),
            "max_starts": number_array(max_starts),
            "periods": number_array(periods),
        },
    )


def insert_jobs_blocked(*, jobs: str) -> Statement:
    """``insert_jobs`` for a batch with concurrency-limited jobs: each object also has
    concurrency_key and concurrency_limit (null for a job without a limit)."""
    return Statement("job_insert_many_blocked", locals())


def insert_jobs(*, jobs: str) -> Statement:
    """Insert many jobs at once; ``jobs`` is a JSON array of objects with the keys queue,
    task, args, priority, run_at, delay, max_attempts and unique_key. Returns one
    ``(id, notified)`` row per job created."""
    return Statement("job_insert_many", locals())


def next_job_ids(*, n: int, queues: list[str], earliest: list[Any]) -> Statement:
    """``n`` new job ids for ``copy_jobs``; returns one row ``(ids, now, notified)``: the
    ids ascending, the transaction's ``now()``, and how many queues were notified.

    Notifies each of ``queues`` whose ``earliest`` run_at is NULL (a job due now) or due.
    ids is NULL, and nothing notified, when the current role cannot COPY into pgq.jobs.
    """
    return Statement("job_ids_next", locals())


def copy_jobs() -> Statement:
    """``COPY`` of jobs due now, to run with ``copy_rows``; each row is ``(id, queue, task,
    args, priority, max_attempts)`` with an id from ``next_job_ids``."""
    return Statement("job_copy", {})


def copy_jobs_scheduled() -> Statement:
    """``copy_jobs`` with each row's run_at: ``(id, queue, task, args, priority,
    max_attempts, run_at)``."""
    return Statement("job_copy_scheduled", {})


def get_schema_version() -> Statement:
    """The pgq schema version in this database, or NULL when pgq was never migrated."""
    return Statement("schema_version", {})


def claim_jobs(
    *,
    queues: list[str],
    tasks: list[str],
    leases: list[float],
    limit: int,
    worker_id: str,
    now: Any = None,
) -> Statement:
    """Claim up to ``limit`` due jobs; ``leases[i]`` is the lease in seconds of ``tasks[i]``.

    Returns ``(id, queue, task, args, attempts, max_attempts, lease_token, priority, run_at,
    created_at, lag_seconds, limited)`` per claimed job.
    """
    return Statement(
        "job_claim",
        {
            "queues": text_array(queues),
            "tasks": text_array(tasks),
            "leases": number_array(leases),
            "limit": limit,
            "worker_id": worker_id,
            "now": now,
        },
    )


def unblock_jobs(*, limit: int) -> Statement:
    """One promotion pass over up to ``limit`` wakeups; returns one row ``(woken, created,
    keys, promoted, notified)``: wakeups read, key rows created (their wakeups wait for the
    next pass), keys whose slots were filled, jobs made queued."""
    return Statement("concurrency_keys_unblock", locals())


def finish_jobs(
    *,
    ids: list[int],
    tokens: list[int],
    outcomes: list[str],
    delays: list[float],
    errors: list[str | None],
) -> Statement:
    """Write many attempts' outcomes, fenced by lease token; returns ``(id, state)`` applied.

    ``errors`` are JSON texts (None: no error to record)."""
    return Statement(
        "job_finish_many",
        {
            "ids": number_array(ids),
            "tokens": number_array(tokens),
            "outcomes": word_array(outcomes),
            "delays": number_array(delays),
            "errors": text_array(errors),
        },
    )


def finish_and_release_jobs(
    *,
    ids: list[int],
    tokens: list[int],
    outcomes: list[str],
    delays: list[float],
    errors: list[str | None],
    results: list[str | None] | None = None,
) -> Statement:
    """``finish_jobs`` for jobs with dependents, releasing (or cancelling) those in the same
    statement; returns ``(id, state, notified)`` per outcome applied. ``results`` are the
    successes' JSON results (None: none)."""
    return Statement(
        "job_finish_release_many",
        {
            "ids": number_array(ids),
            "tokens": number_array(tokens),
            "outcomes": word_array(outcomes),
            "delays": number_array(delays),
            "errors": text_array(errors),
            "results": text_array(results or [None] * len(ids)),
        },
    )


def finish_limited_jobs(
    *,
    ids: list[int],
    tokens: list[int],
    outcomes: list[str],
    delays: list[float],
    errors: list[str | None],
    results: list[str | None] | None = None,
) -> Statement:
    """``finish_jobs`` for jobs of a concurrency-limited key: also hands each freed slot to
    the next blocked job of its key, and stores ``results`` (JSON texts; None: none).
    Returns ``(id, state, notified)`` per outcome applied."""
    return Statement(
        "job_finish_limited",
        {
            "ids": number_array(ids),
            "tokens": number_array(tokens),
            "outcomes": word_array(outcomes),
            "delays": number_array(delays),
            "errors": text_array(errors),
            "results": text_array(results or [None] * len(ids)),
        },
    )


def release_dependents(*, ids: list[int]) -> Statement:
    """Release or cancel the dependents of ``ids``, jobs this transaction just made final
    (by the reaper or a cancel); returns one row ``(cancelled, released, notified)``."""
    return Statement("job_release_dependents", {"ids": ids})


def restore_dependents(*, ids: list[int]) -> Statement:
    """Put back to waiting the jobs cancelled because of ``ids``, jobs this transaction just
    retried; returns one row ``(restored, kept)``."""
    return Statement("job_restore_dependents", locals())


def select_parents(*, job_id: int) -> Statement:
    """The parents of ``job_id``: ``(id, task, state, finished_at, result)`` rows, by id."""
    return Statement("job_parents_select", locals())


def get_workflow(*, job_id: int) -> Statement:
    """Every job of ``job_id``'s workflow, with its parents' ids; no row when it has none."""
    return Statement("workflow_get", locals())


def list_live_workflow_jobs(*, workflow_id: int) -> Statement:
    """``(id,)`` of every queued, waiting or running job of the workflow."""
    return Statement("workflow_live_ids", locals())


def insert_workflow(*, jobs: str) -> Statement:
    """Insert a workflow's jobs and edges; ``jobs`` is the JSON array workflow_insert.sql
    reads. Returns one ``(id, edges, notified)`` row per job, ids ascending."""
    return Statement("workflow_insert", locals())


def finish_jobs_with_results(*, ids: list[int], tokens: list[int], results: list[str]) -> Statement:
    """Mark attempts that returned a value succeeded with their ``results`` (JSON texts),
    fenced by lease token; returns ``(id, state)`` applied."""
    return Statement(
        "job_finish_result_many",
        {"ids": number_array(ids), "tokens": number_array(tokens), "results": text_array(results)},
    )


def complete_job_in_transaction(*, job_id: int, token: int, result: str | None) -> Statement:
    """Mark one attempt succeeded (``result`` a JSON text or None) inside the task's own
    transaction, fenced by lease token; returns ``(id, state)``, or no row when the lease is
    no longer this attempt's."""
    return Statement("job_complete_tx", locals())


def get_job_result(*, job_id: int) -> Statement:
    """``(state, result, task, attempts, last_error)`` of one job, or no row."""
    return Statement("job_result_get", locals())


def flag_job_waited(*, job_id: int) -> Statement:
    """Ask for a ``pgq_finished`` notification when this queued or running job ends."""
    return Statement("job_flag_waited", locals())


def listen_finished() -> Statement:
    """Subscribe this connection to the notifications of flagged jobs' finishes."""
    return Statement("finished_listen", {})


def unlisten_finished() -> Statement:
    """Undo ``listen_finished``."""
    return Statement("finished_unlisten", {})


# The parameters of the worker registry's upsert in ``extend_leases`` (pgq.worker_registry).
WORKER_FIELDS = (
    *("worker_id", "hostname", "pid", "version", "queues", "tasks"),
    *("concurrency", "running", "stale_after"),
)
_NO_WORKER = dict.fromkeys(WORKER_FIELDS)


def extend_leases(
    *,
    ids: list[int],
    tokens: list[int],
    leases: list[float],
    worker: Mapping[str, Any] | None = None,
) -> Statement:
    """Extend the leases of held jobs; returns ``(id, cancel_requested)`` for those still held.

    ``worker`` (the keys of ``WORKER_FIELDS``) also upserts that worker's row in pgq.workers
    as seen now; None leaves pgq.workers alone."""
    return Statement(
        "job_extend_leases",
        {
            "ids": number_array(ids),
            "tokens": number_array(tokens),
            "leases": number_array(leases),
            **(_NO_WORKER if worker is None else worker),
        },
    )


def listen() -> Statement:
    """Subscribe this connection to enqueue notifications."""
    return Statement("listen", {})


def reap_expired_jobs(
    *,
    limit: int,
    backoff_base: float,
    backoff_factor: float,
    backoff_cap: float,
    backoff_jitter: float,
    now: Any = None,
) -> Statement:
    """Requeue (with backoff) or fail up to ``limit`` running jobs whose lease lapsed.

    Returns ``(id, queue, task, state, attempts, max_attempts, run_at, worker_id,
    lease_expires_at)`` per reaped job; worker and lease are the ones that lapsed.
    """
    return Statement("job_reap_expired", locals())


def prune_finished_jobs(*, state: str, retention: float, limit: int, now: Any = None) -> Statement:
    """Delete up to ``limit`` jobs in finished ``state`` older than ``retention`` seconds.

    Returns one row: ``(deleted,)``.
    """
    return Statement("job_prune_finished", locals())


def try_reap_lock(*, key: int, idle_timeout: str = "10s") -> Statement:
    """Take the reaper's transaction-scoped advisory lock if free; returns ``(taken, _)``.

    ``idle_timeout`` (a PostgreSQL duration) bounds how long the transaction may sit idle
    holding it."""
    return Statement("job_reap_try_lock", locals())


def count_table_churn() -> Statement:
    """``(dead, live, modified_since_analyze)`` row counts of pgq.jobs from the statistics
    views."""
    return Statement("job_table_churn", {})


def vacuum_jobs() -> Statement:
    """VACUUM pgq.jobs, unless someone is vacuuming it already; autocommit only."""
    return Statement("job_table_vacuum", {})


def prune_concurrency_keys(*, after: str, limit: int) -> Statement:
    """Delete the idle rows among the next ``limit`` concurrency keys after ``after``;
    returns one row ``(scanned, last_key, deleted)`` (see concurrency_keys_prune.sql)."""
    return Statement("concurrency_keys_prune", locals())


def prune_rate_limits(*, after: str, limit: int) -> Statement:
    """Delete the idle rows among the next ``limit`` rate keys after ``after``; returns one
    row ``(scanned, last_key, deleted)`` (see rate_limits_prune.sql)."""
    return Statement("rate_limits_prune", locals())


def try_prune_lock(*, key: int, idle_timeout: str = "10s") -> Statement:
    """Take the pruner's transaction-scoped advisory lock if free; returns ``(taken, _)``.

    ``idle_timeout`` (a PostgreSQL duration) bounds how long the transaction may sit idle
    holding it."""
    return Statement("job_prune_try_lock", locals())


# --- operations (pgq.admin) -------------------------------------------------------------------


def list_jobs(*, state: str | None, queue: str | None, task: str | None, limit: int) -> Statement:
    """Jobs newest first, filtered (None = any); returns ``(id, queue, task, state, priority,
    attempts, max_attempts, run_at, created_at, started_at, finished_at, worker_id,
    cancel_requested, last_error)``."""
    return Statement("job_list", locals())


def get_job(*, job_id: int) -> Statement:
    """One job with its args and errors, or no row; see ``sql/job_get.sql`` for the columns."""
    return Statement("job_get", locals())


def get_job_states(*, ids: list[int]) -> Statement:
    """``(id, state, unique_key)`` of the jobs among ``ids`` that exist."""
    return Statement("job_get_states", locals())


def retry_jobs(*, ids: list[int], now: Any = None) -> Statement:
    """Failed or cancelled jobs among ``ids`` → queued now; returns ``(id, notified)`` each."""
    return Statement("job_retry_many", locals())


def retry_failed_jobs(
    *, after_id: int, limit: int, queue: str | None, task: str | None, now: Any = None
) -> Statement:
    """One batch of failed jobs → queued; returns ``(last_id, picked, retried, notified,
    parents)``, parents the retried ids that have dependents."""
    return Statement("job_retry_failed", locals())


def count_failed_jobs(*, queue: str | None, task: str | None) -> Statement:
    """``(count,)``: the failed jobs :func:`retry_failed_jobs` would look at."""
    return Statement("job_count_failed", locals())


def cancel_jobs(*, ids: list[int], now: Any = None) -> Statement:
    """Cancel queued jobs, request a stop of running ones; returns ``(id, new_state)`` each."""
    return Statement("job_cancel_many", locals())


def select_queue_stats() -> Statement:
    """The ``pgq.queue_stats`` view, one row per queue."""
    return Statement("queue_stats_select", {})


# --- flow control (pgq.limits) ----------------------------------------------------------------


def pause_queue(*, queue: str, reason: str | None) -> Statement:
    """Pause ``queue``; returns ``(queue, paused_at, reason, notified)``."""
    return Statement("queue_pause", locals())


def resume_queue(*, queue: str) -> Statement:
    """Resume ``queue``; returns the lifted pause ``(queue, paused_at, reason, notified)``
    or no row when it was not paused."""
    return Statement("queue_resume", locals())


def select_flow_limits(*, limit: int) -> Statement:
    """``(kind, key, max, period_seconds, in_use, waiting)`` of the ``pgq.flow_limits`` view,
    most waiting first, at most ``limit`` rows."""
    return Statement("flow_limits_select", locals())


def list_queue_pauses() -> Statement:
    """Every paused queue: ``(queue, paused_at, reason)``, oldest pause first."""
    return Statement("queue_pause_list", {})


# --- metrics (pgq.metrics) --------------------------------------------------------------------


def select_queue_counts(*, now: Any = None) -> Statement:
    """Live jobs per queue: ``(queue, ready, scheduled, running, oldest_ready_seconds,
    paused)``."""
    return Statement("queue_counts_select", locals())


def use_generic_plans() -> Statement:
    """Session settings for the worker's claim connection: generic plans, no JIT."""
    return Statement("session_generic_plans", {})


def set_statement_timeout(*, milliseconds: int) -> Statement:
    """Bound the statements of the current transaction to ``milliseconds``."""
    return Statement("session_set_statement_timeout", locals())


def select_session_state() -> Statement:
    """``(prepared statements, session settings as name=value, LISTEN channels, advisory
    locks, temporary tables)`` of the current server connection (pgq.devbouncer)."""
    return Statement("session_state_select", {})


# --- testing (pgq.testing) --------------------------------------------------------------------


def find_jobs(
    *, task: str | None, queue: str | None, state: str | None, args: str | None, limit: int
) -> Statement:
    """Jobs oldest first, filtered (None = any; ``args`` a JSON object the job's args must
    contain); columns as ``get_job``'s, with args and errors as JSON text."""
    return Statement("job_find", locals())


def get_jobs(*, ids: list[int]) -> Statement:
    """The jobs among ``ids`` that exist; columns as ``get_job``'s."""
    return Statement("job_get_many", locals())


def make_jobs_due(*, queues: list[str], tasks: list[str]) -> Statement:
    """Queued jobs of ``queues`` and ``tasks`` scheduled for later → due now."""
    return Statement("job_make_due", locals())


def truncate_jobs() -> Statement:
    """Delete every job and restart the ids (between tests)."""
    return Statement("job_truncate", {})


# --- schedules (pgq.scheduler) ----------------------------------------------------------------


def sync_schedules(*, schedules: str, deactivate_missing: bool) -> Statement:
    """Upsert the definitions in ``schedules`` (a JSON array); mark the others inactive when
    ``deactivate_missing``. Returns ``(name, change)`` per row changed: created, updated or
    deactivated."""
    return Statement("schedule_sync", locals())


def list_schedules(*, names: list[str], now: Any = None) -> Statement:
    """``(name, definition_hash, active, active_since, last_tick_at, now)`` per named
    schedule; ``now`` is the database's (or the one given)."""
    return Statement("schedule_list", {"names": text_array(names), "now": now})


def tick_schedules(*, ticks: str, now: Any = None) -> Statement:
    """Enqueue due ticks, each once (compare-and-set on last_tick_at); ``ticks`` is a JSON
    array (see sql/schedule_tick_many.sql). Returns ``(name, enqueued, skipped, last_job_id,
    notified)`` per schedule advanced."""
    return Statement("schedule_tick_many", locals())


def mark_overdue_schedules(*, names: list[str]) -> Statement:
    """Mark newly overdue schedules among ``names`` (and clear recovered ones); returns the
    newly overdue: ``(name, task, queue, expression, timezone, last_success_at,
    grace_seconds, last_job_id, recovered)``."""
    return Statement("schedule_overdue_mark", {"names": text_array(names)})


def select_schedule_status() -> Statement:
    """The ``pgq.schedule_status`` view (see sql/schedule_status_select.sql for columns)."""
    return Statement("schedule_status_select", {})


def get_database_now(*, now: Any = None) -> Statement:
    """``(now,)``: the database's clock, or ``now`` when given."""
    return Statement("database_now", locals())


# --- the worker registry (pgq.worker_registry) -------------------------------------------------


def delete_worker(*, worker_id: str) -> Statement:
    """Remove a worker's row from pgq.workers (its clean exit)."""
    return Statement("worker_delete", locals())


def delete_stale_workers(*, now: Any = None) -> Statement:
    """Remove the workers unseen for longer than their bound; returns ``(id, hostname, pid,
    last_seen_at)`` of each."""
    return Statement("worker_delete_stale", locals())


def select_worker_status() -> Statement:
    """The ``pgq.worker_status`` view: one row per registered worker."""
    return Statement("worker_status_select", {})


def select_orphaned_jobs() -> Statement:
    """The ``pgq.orphaned_jobs`` view: queued jobs no live worker serves, per queue and task."""
    return Statement("orphaned_jobs_select", {})


def select_worker_counts() -> Statement:
    """``(alive, stale)``: registered workers seen within their bound, and not."""
    return Statement("worker_counts_select", {})


def select_worker_serving(*, task: str, queue: str) -> Statement:
    """``(served, queues, alive)``: whether a live worker serves ``task`` on ``queue``, the
    queues live workers serve it on, and how many workers are alive."""
    return Statement("worker_serving_select", locals())


# --- queue health (pgq.doctor) ------------------------------------------------------------------


def select_health() -> Statement:
    """The one row of the ``pgq.health`` view, and the seconds since the last vacuum and
    analyze; see ``sql/health_select.sql`` for the columns."""
    return Statement("health_select", {})


def select_schedule_gauges() -> Statement:
    """``(name, last_success, last_tick, overdue)`` per active schedule, times as Unix
    seconds (0: never)."""
    return Statement("schedule_gauges_select", {})
