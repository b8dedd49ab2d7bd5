"""The reaper: takes back jobs whose lease lapsed, prunes finished jobs past retention and
the rows of flow-control keys nothing uses any more.

A worker that dies (kill -9, OOM, a lost network) leaves its jobs ``running`` with a lease
that nobody extends. The reaper finds them by database time and, in one fenced statement
per batch, returns each to the queue with the default backoff or fails it when its
attempts are used up. It needs no application code: everything it decides on is on the row.
The same pass removes the worker's row from ``pgq.workers`` once it has gone unseen for
longer than its bound (pgq.worker_registry).

Every ``pgq work`` runs [`run`][pgq.reaper.run] in a thread, and ``pgq reap`` runs it alone.
Only one process does the work at a time: each batch is a short transaction that first takes a
transaction-scoped advisory lock (safe behind PgBouncer in transaction mode, released by a
crash with the connection); a process that does not get it skips the pass. Tests call
[`reap_once`][pgq.reaper.reap_once], [`prune_once`][pgq.reaper.prune_once] and
``prune_limit_keys`` directly (the first two with ``now`` to
move time).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

from pgq import db, store
from pgq.errors import DatabaseUnavailableError, ValidationError
from pgq.retry import DEFAULT_BACKOFF, Backoff
from pgq.worker_registry import StaleWorker, remove_stale_workers

log = logging.getLogger("pgq.reaper")

REAP_INTERVAL_DEFAULT = 5.0  # seconds between passes
REAP_BATCH_SIZE_DEFAULT = 1000  # jobs per statement (and per transaction)
PRUNE_INTERVAL_DEFAULT = 60.0  # seconds between pruning passes inside run()
PRUNE_BATCH_SIZE_DEFAULT = 1000  # rows per DELETE (and per transaction)
# run() prunes at most this many batches before it reaps again, so a first prune of
# millions of old rows never delays the recovery of a dead worker's jobs.
PRUNE_MAX_BATCHES_DEFAULT = 10
RETENTION_SUCCEEDED_DEFAULT = 24 * 3600.0
RETENTION_CANCELLED_DEFAULT = 7 * 24 * 3600.0
RETENTION_FAILED_DEFAULT = 30 * 24 * 3600.0
FINISHED_STATES = ("succeeded", "cancelled", "failed")
# After a connection error run() waits 0.5 s, 1 s, 2 s, ... up to 30 s (± 25 %) between tries.
RECONNECT_BACKOFF = Backoff(base=0.5, factor=2.0, cap=30.0, jitter=0.25)
APPLICATION_NAME = "pgq reaper"
# Vacuum pgq.jobs from the reaper when it holds more dead rows than this (or than this
# fraction of its live rows, whichever is more), or when that many rows changed since its
# last ANALYZE. Every claim and every finish leaves a dead row version whose index entries
# later scans must step over until a vacuum removes them, so claiming slows down as they
# pile up; and the claim's plan is only as good as the table's statistics. Autovacuum does
# this when it is on, but it looks at a database only once a minute by default, and some
# servers run without it.
VACUUM_DEAD_ROWS_DEFAULT = 20_000
VACUUM_DEAD_FRACTION_DEFAULT = 0.05

# Advisory lock keys: the bytes "pgq:reap" and "pgq:prun" as big-endian bigints, so they
# are recognisable in pg_locks (classid/objid) and unlikely to collide with an app's keys.
REAP_LOCK_KEY = int.from_bytes(b"pgq:reap", "big")
PRUNE_LOCK_KEY = int.from_bytes(b"pgq:prun", "big")


@dataclass(frozen=True)
class ReaperConfig:
    """How often and how much the reaper works, and how long finished jobs are kept.

    Durations are seconds. A retention of None keeps that state's jobs forever;
    ``prune_interval`` None turns pruning off inside [`run`][pgq.reaper.run]. Raises ValidationError
    for a value that cannot work (a non-positive interval or batch size, a negative
    retention).
    """

    interval: float = REAP_INTERVAL_DEFAULT
    batch_size: int = REAP_BATCH_SIZE_DEFAULT
    backoff: Backoff = DEFAULT_BACKOFF
    prune_interval: float | None = PRUNE_INTERVAL_DEFAULT
    prune_batch_size: int = PRUNE_BATCH_SIZE_DEFAULT
    prune_max_batches: int = PRUNE_MAX_BATCHES_DEFAULT
    succeeded_retention: float | None = RETENTION_SUCCEEDED_DEFAULT
    cancelled_retention: float | None = RETENTION_CANCELLED_DEFAULT
    failed_retention: float | None = RETENTION_FAILED_DEFAULT
    vacuum_dead_rows: int | None = VACUUM_DEAD_ROWS_DEFAULT  # None: leave it to autovacuum
    vacuum_dead_fraction: float = VACUUM_DEAD_FRACTION_DEFAULT

    def __post_init__(self) -> None:
        for name in ("interval", "prune_interval"):
            _check_positive(name, getattr(self, name), allow_none=name == "prune_interval")
        for name in ("batch_size", "prune_batch_size", "prune_max_batches"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValidationError(f"{name} must be a positive integer, not {value!r}")
        rows = self.vacuum_dead_rows
        if rows is not None and (isinstance(rows, bool) or not isinstance(rows, int) or rows < 1):
            raise ValidationError(
                f"vacuum_dead_rows must be a positive integer or None, not {rows!r}"
            )
        if not (_is_number(self.vacuum_dead_fraction) and self.vacuum_dead_fraction >= 0):
            raise ValidationError(
                f"vacuum_dead_fraction must be a number >= 0, not {self.vacuum_dead_fraction!r}"
            )
        for state in FINISHED_STATES:
            value = self.retention(state)
            if value is not None and not (_is_number(value) and 0 <= value < float("inf")):
                raise ValidationError(
                    f"{state}_retention must be seconds >= 0 or None, not {value!r}"
                )

    def retention(self, state: str) -> float | None:
        """Seconds a job in finished ``state`` is kept, or None to keep it forever."""
        value: float | None = getattr(self, f"{state}_retention")
        return value


@dataclass(frozen=True, slots=True)
class ReapedJob:
    """One job the reaper took back: its new state and the lease that lapsed."""

    id: int
    queue: str
    task: str
    state: str  # "queued" (retry at run_at), "failed" or "cancelled"
    attempts: int
    max_attempts: int
    run_at: datetime
    worker_id: str | None
    lease_expired_at: datetime | None


@dataclass(frozen=True)
class ReapResult:
    """What one [`reap_once`][pgq.reaper.reap_once] call did.

    ``locked_out``: another process held the lock, and this pass did nothing.
    ``workers``: the stale workers whose rows it removed from ``pgq.workers``.
    """

    jobs: list[ReapedJob] = field(default_factory=list)
    batches: int = 0
    locked_out: bool = False
    workers: list[StaleWorker] = field(default_factory=list)

    def count(self, state: str) -> int:
        return sum(1 for job in self.jobs if job.state == state)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (``pgq reap --json``)."""
        return {
            "reaped": len(self.jobs),
            "requeued": self.count("queued"),
            "failed": self.count("failed"),
            "cancelled": self.count("cancelled"),
            "batches": self.batches,
            "locked_out": self.locked_out,
            "jobs": [_job_dict(job) for job in self.jobs],
            "workers_removed": [worker.id for worker in self.workers],
        }


@dataclass(frozen=True)
class PruneResult:
    """What one [`prune_once`][pgq.reaper.prune_once] call deleted, per state.

    ``complete`` is False when it stopped early (``max_batches`` or ``locked_out``) and
    rows past their retention may remain.
    """

    deleted: Mapping[str, int] = field(default_factory=dict)
    batches: int = 0
    locked_out: bool = False
    complete: bool = True

    @property
    def total(self) -> int:
        return sum(self.deleted.values())

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (``pgq prune --json``)."""
        return {
            "deleted": {state: self.deleted.get(state, 0) for state in FINISHED_STATES},
            "total": self.total,
            "batches": self.batches,
            "locked_out": self.locked_out,
            "complete": self.complete,
        }


def reap_once(
    conn: psycopg.Connection[Any],
    config: ReaperConfig | None = None,
    now: datetime | None = None,
) -> ReapResult:
    """Take back every running job whose lease lapsed before ``now`` (default: database now),
    and remove the workers unseen for longer than their bound before ``now``.

    Works in batches of ``config.batch_size``, each its own short transaction under the
    reaper's advisory lock, until a batch comes back short. If another process holds the
    lock, stops and returns a result with ``locked_out=True``. ``conn`` must have no
    transaction open (an autocommit connection is simplest). Raises psycopg errors as is.
    """
    config = config or ReaperConfig()
    _check_idle(conn)
    jobs: list[ReapedJob] = []
    workers: list[StaleWorker] = []
    batches = 0
    statement = _reap_statement(config, now)
    while True:
        with conn.transaction():
            if not _try_lock(conn, store.try_reap_lock(key=REAP_LOCK_KEY)):
                log.debug("another process holds the reaper lock; skipping this pass")
                return ReapResult(jobs, batches, locked_out=True, workers=workers)
            if batches == 0:
                workers = remove_stale_workers(conn, now)
            rows = store.fetch(conn, statement)
            _release_dependents(conn, rows)
        batches += 1
        if batches == 1:
            for worker in workers:
                _log_removed(worker)
        reaped = [ReapedJob(*row[:9]) for row in rows]
        for job in reaped:
            _log_reaped(job)
        jobs.extend(reaped)
        if len(rows) < config.batch_size:
            return ReapResult(jobs, batches, workers=workers)


def _release_dependents(conn: psycopg.Connection[Any], rows: list[store.Row]) -> None:
    # A lapsed job that failed for good (or was cancelled) cancels the workflow jobs waiting
    # for it, in the same transaction as the reap: both commit, or neither. The statement
    # skips jobs without dependents itself; it is not sent when no job became final.
    final = [row[0] for row in rows if row[3] in ("failed", "cancelled")]
    if final:
        store.fetch(conn, store.release_dependents(ids=final))


def prune_once(
    conn: psycopg.Connection[Any],
    config: ReaperConfig | None = None,
    now: datetime | None = None,
    *,
    max_batches: int | None = None,
    on_batch: Callable[[str, int], None] | None = None,
) -> PruneResult:
    """Delete finished jobs older than their state's retention, in bounded batches.

    Each batch of ``config.prune_batch_size`` rows is its own transaction under the
    pruner's advisory lock; a state is done when a batch comes back short. Stops early
    after ``max_batches`` full batches (plus at most one short batch per state) or when
    another process holds the lock; the result then has ``complete=False`` and the next
    call carries on. ``on_batch(state, deleted)`` is called after every batch (progress
    for the CLI). ``conn`` must have no transaction open.
    """
    config = config or ReaperConfig()
    _check_idle(conn)
    deleted = dict.fromkeys(FINISHED_STATES, 0)
    batches = full = 0
    for state in FINISHED_STATES:
        retention = config.retention(state)
        statement = store.prune_finished_jobs(
            state=state, retention=retention or 0.0, limit=config.prune_batch_size, now=now
        )
        while retention is not None:
            with conn.transaction():
                if not _try_lock(conn, store.try_prune_lock(key=PRUNE_LOCK_KEY)):
                    return PruneResult(deleted, batches, locked_out=True, complete=False)
                count = int(store.fetch(conn, statement)[0][0])
            batches += 1
            deleted[state] += count
            if on_batch is not None:
                on_batch(state, count)
            if count < config.prune_batch_size:
                break
            full += 1
            if max_batches is not None and full >= max_batches:
                return PruneResult(deleted, batches, complete=False)
    if sum(deleted.values()):
        log.info("pruned %s", ", ".join(f"{n} {s}" for s, n in deleted.items() if n))
    return PruneResult(deleted, batches)


LIMIT_KEY_KINDS = ("concurrency", "rate")  # pgq.concurrency_keys, then pgq.rate_limits


@dataclass(frozen=True)
class KeyPruneResult:
    """What one ``prune_limit_keys`` call deleted: idle rows of
    ``pgq.concurrency_keys`` and ``pgq.rate_limits``, per kind.

    ``resume`` is ``(kind, key)`` where the next call carries on when this one stopped
    early (``max_batches``), else None. ``complete`` is False when it stopped early or was
    ``locked_out``.
    """

    deleted: Mapping[str, int] = field(default_factory=dict)
    batches: int = 0
    locked_out: bool = False
    resume: tuple[str, str] | None = None

    @property
    def complete(self) -> bool:
        return self.resume is None and not self.locked_out


def prune_limit_keys(
    conn: psycopg.Connection[Any],
    config: ReaperConfig | None = None,
    *,
    after: tuple[str, str] | None = None,
    max_batches: int | None = None,
) -> KeyPruneResult:
    """Delete the rows of concurrency and rate keys nothing needs any more, in batches.

    A concurrency key's row goes when no job holds a slot, none is blocked, no wakeup waits
    and no failed or cancelled job of the key is left to retry; a rate key's row when no job
    is blocked and its newest start is older than its period, unless a worker wrote it from
    its code (sql/concurrency_keys_prune.sql and sql/rate_limits_prune.sql say why that is
    safe against racing finishes, passes, claims and enqueues). Each batch looks at the next
    ``config.prune_batch_size`` keys in key order, in its own transaction under the
    pruner's advisory lock. Stops after ``max_batches`` batches (the result's ``resume`` is
    the ``after`` to carry on from) or when another process holds the lock.
    """
    config = config or ReaperConfig()
    _check_idle(conn)
    first, key = after or (LIMIT_KEY_KINDS[0], "")
    deleted = dict.fromkeys(LIMIT_KEY_KINDS, 0)
    batches = 0
    for kind in LIMIT_KEY_KINDS[LIMIT_KEY_KINDS.index(first) :]:
        while True:
            if max_batches is not None and batches >= max_batches:
                return KeyPruneResult(deleted, batches, resume=(kind, key))
            statement = _key_prune_statement(kind, key, config.prune_batch_size)
            with conn.transaction():
                if not _try_lock(conn, store.try_prune_lock(key=PRUNE_LOCK_KEY)):
                    return KeyPruneResult(deleted, batches, locked_out=True, resume=(kind, key))
                scanned, last_key, count = store.fetch(conn, statement)[0]
            batches += 1
            deleted[kind] += count
            if scanned < config.prune_batch_size:
                break
            key = last_key
        key = ""
    if sum(deleted.values()):
        log.info("pruned idle limit keys: %s", ", ".join(f"{n} {k}" for k, n in deleted.items()))
    return KeyPruneResult(deleted, batches)


def _key_prune_statement(kind: str, after: str, limit: int) -> store.Statement:
    if kind == "concurrency":
        return store.prune_concurrency_keys(after=after, limit=limit)
    return store.prune_rate_limits(after=after, limit=limit)


def run(
    url: str,
    config: ReaperConfig | None = None,
    stop: threading.Event | None = None,
    *,
    on_pass: Callable[[ReapResult, PruneResult | None], None] | None = None,
    pgbouncer: bool | None = None,
) -> None:
    """Reap every ``config.interval`` seconds (and prune every ``config.prune_interval``)
    until ``stop`` is set.

    ``pgbouncer``: ``url`` goes through PgBouncer in transaction pooling mode (None:
    $PGQ_PGBOUNCER), so the connection prepares no statement; see :func:`pgq.db.connect`.
    Every statement here is safe behind it: the locks are transaction-scoped.

    Made to run in a thread of ``pgq work`` or alone as ``pgq reap``. Connection errors
    (a database restart, ``pg_terminate_backend``, a network cut) and database errors are
    logged and retried on a fresh connection with capped backoff: this never returns
    before ``stop`` is set, and never spins. ``on_pass`` is called after every pass.
    """
    config = config or ReaperConfig()
    stop = stop or threading.Event()
    loop = _Loop(url, config, stop, on_pass, pgbouncer)
    while not stop.is_set():
        try:
            loop.serve()
        except (psycopg.Error, DatabaseUnavailableError) as exc:
            loop.failures += 1
            delay = RECONNECT_BACKOFF.delay(loop.failures)
            log.warning(
                "reaper: %s; reconnecting in %.1fs",
                _one_line(exc, url),
                delay,
                exc_info=not isinstance(exc, psycopg.OperationalError | DatabaseUnavailableError),
            )
            stop.wait(delay)


@dataclass
class _Loop:
    url: str
    config: ReaperConfig
    stop: threading.Event
    on_pass: Callable[[ReapResult, PruneResult | None], None] | None
    pgbouncer: bool | None = None
    failures: int = 0
    next_prune: float = 0.0  # time.monotonic() of the next prune
    keys_resume: tuple[str, str] | None = None  # where the pruning of limit keys carries on

    def serve(self) -> None:
        """Connect, then pass every interval until stopped; raises on connection errors."""
        with db.connect(
            self.url, pgbouncer=self.pgbouncer, autocommit=True, application_name=APPLICATION_NAME
        ) as conn:
            if self.failures:
                log.info("reaper: connected again after %d failed tries", self.failures)
            while not self.stop.is_set():
                reaped = reap_once(conn, self.config)
                pruned = self._prune(conn)
                if not reaped.locked_out:  # one process vacuums: the one that reaped
                    vacuum_if_needed(conn, self.config)
                self.failures = 0
                if self.on_pass is not None:
                    self.on_pass(reaped, pruned)
                self.stop.wait(self.config.interval)

    def _prune(self, conn: psycopg.Connection[Any]) -> PruneResult | None:
        if self.config.prune_interval is None or time.monotonic() < self.next_prune:
            return None
        result = prune_once(conn, self.config, max_batches=self.config.prune_max_batches)
        # After the jobs: a pruned failed job may be what kept its key's row.
        keys = prune_limit_keys(
            conn, self.config, after=self.keys_resume, max_batches=self.config.prune_max_batches
        )
        self.keys_resume = keys.resume
        # Unfinished (a backlog, or another process pruning): carry on after the next reap.
        wait = self.config.prune_interval if result.complete and keys.complete else 0.0
        self.next_prune = time.monotonic() + wait
        return result


def vacuum_if_needed(conn: psycopg.Connection[Any], config: ReaperConfig) -> bool:
    """VACUUM (and ANALYZE) pgq.jobs when its dead rows, or the rows changed since its last
    ANALYZE, pass the config's threshold; True if it ran.

    The second count matters for a backlog enqueued faster than it is worked: inserts
    leave no dead rows, but statistics taken while the queue was short make the planner
    claim with a sort of every due row (230 ms per claim at 300,000 due jobs, against
    under 1 ms once analyzed). ``conn`` must be in autocommit mode (VACUUM cannot run in a
    transaction block).
    """
    if config.vacuum_dead_rows is None:
        return False
    dead, live, modified = store.fetch(conn, store.count_table_churn())[0]
    threshold = max(config.vacuum_dead_rows, config.vacuum_dead_fraction * live)
    if dead <= threshold and modified <= threshold:
        return False
    started = time.monotonic()
    store.fetch(conn, store.vacuum_jobs())
    log.info(
        "vacuumed pgq.jobs (%d dead rows, %d changed since the last analyze) in %.2fs",
        dead,
        modified,
        time.monotonic() - started,
    )
    return True


def _reap_statement(config: ReaperConfig, now: datetime | None) -> store.Statement:
    backoff = config.backoff
    return store.reap_expired_jobs(
        limit=config.batch_size,
        backoff_base=backoff.base,
        backoff_factor=backoff.factor,
        backoff_cap=backoff.cap,
        backoff_jitter=backoff.jitter,
        now=now,
    )


def _try_lock(conn: psycopg.Connection[Any], statement: store.Statement) -> bool:
    return bool(store.fetch(conn, statement)[0][0])


def _check_idle(conn: psycopg.Connection[Any]) -> None:
    # Inside an open transaction conn.transaction() would only make a savepoint: the lock
    # would outlive the batch and nothing would commit until the caller does.
    if conn.info.transaction_status != TransactionStatus.IDLE:
        raise ValueError(
            "the reaper needs a connection with no transaction open; "
            "use an autocommit connection or commit first"
        )


def _log_reaped(job: ReapedJob) -> None:
    holder = job.worker_id or "(unknown)"
    what = f"job {job.id} ({job.task} on {job.queue}): lease expired while held by {holder}"
    if job.state == "queued":
        log.warning(
            "%s; attempt %d/%d, retry at %s",
            what,
            job.attempts,
            job.max_attempts,
            job.run_at.isoformat(),
        )
    else:
        log.warning("%s; %s after %d/%d attempts", what, job.state, job.attempts, job.max_attempts)


def _log_removed(worker: StaleWorker) -> None:
    log.warning(
        "worker %s (pid %d on %s) unseen since %s: removed from pgq.workers",
        worker.id,
        worker.pid,
        worker.hostname,
        worker.last_seen_at.isoformat(),
    )


def _job_dict(job: ReapedJob) -> dict[str, Any]:
    return {
        "id": job.id,
        "queue": job.queue,
        "task": job.task,
        "state": job.state,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "run_at": job.run_at.isoformat(),
        "worker_id": job.worker_id,
        "lease_expired_at": job.lease_expired_at.isoformat() if job.lease_expired_at else None,
    }


def _check_positive(name: str, value: object, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if not (is_number and 0 < value < float("inf")):  # type: ignore[operator]
        raise ValidationError(f"{name} must be a positive number of seconds, not {value!r}")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _one_line(exc: BaseException, url: str) -> str:
    text = db.describe_error(exc)
    # psycopg messages can quote the conninfo; never log a password.
    return text.replace(url, db.redact(url))
