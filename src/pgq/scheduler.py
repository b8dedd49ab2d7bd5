"""The scheduler: enqueues the due ticks of recurring jobs, each exactly once, with no leader.

Every ``pgq work`` whose app defines schedules runs [`run`][pgq.scheduler.run] in a
thread with a connection of its own. Each pass reads the schedules' tick state and the
database's clock (one statement), computes the due ticks from the definitions
(pgq.periodic, pure functions of that ``now``), and enqueues them all in one statement
that advances each schedule's last tick by compare-and-set in the same transaction as the
jobs' INSERT. Any number of processes may do this at once: for each tick exactly one of
them wins the compare, the others insert nothing. A pass with nothing due costs nothing:
the loop sleeps until the earliest next tick (capped, so a change made by another worker
is seen soon), measured on the database's clock.

Every ``overdue_interval`` the loop also marks the schedules that had no success within
their grace; the one process whose statement marks a schedule logs it and calls
``on_overdue``, so an overdue schedule is reported once per episode across the cluster.
Tests call [`sync`][pgq.scheduler.sync], [`run_once`][pgq.scheduler.run_once] and
[`check_overdue`][pgq.scheduler.check_overdue] directly, with ``now`` to move time.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from pgq import db, store
from pgq.errors import DatabaseUnavailableError, ScheduleOverdue, ValidationError
from pgq.periodic import Schedule
from pgq.retry import Backoff

log = logging.getLogger("pgq.scheduler")

# The longest sleep between passes: how soon a pass sees a schedule another worker (a
# newer version) changed, or a tick this one lost to an outage of its own.
PASS_INTERVAL_MAX_DEFAULT = 10.0
PASS_INTERVAL_MIN = 0.01  # never spin when a tick is due "now" by a hair
OVERDUE_INTERVAL_DEFAULT = 30.0  # seconds between overdue checks
RECONNECT_BACKOFF = Backoff(base=0.5, factor=2.0, cap=30.0, jitter=0.25)
APPLICATION_NAME = "pgq scheduler"


@dataclass(frozen=True)
class SchedulerConfig:
    """How the scheduler loop runs. ``deactivate_missing``: at start, mark inactive the
    schedules in the database that this app does not define (turn it off when several apps
    with different schedules share one database)."""

    pass_interval_max: float = PASS_INTERVAL_MAX_DEFAULT
    overdue_interval: float = OVERDUE_INTERVAL_DEFAULT
    deactivate_missing: bool = True

    def __post_init__(self) -> None:
        for name in ("pass_interval_max", "overdue_interval"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ValidationError(f"{name} must be a positive number of seconds, not {value!r}")


@dataclass(frozen=True)
class TickResult:
    """What one [`run_once`][pgq.scheduler.run_once] did, in database time.

    ``enqueued``: jobs made per schedule this pass won; ``skipped``: schedules whose ticks
    were consumed without a job (overlap policy); ``next_tick_at``: the earliest tick not
    yet due among the schedules this process may tick (None: none); ``foreign``:
    schedules this process leaves alone because the worker that synced last defines them
    differently (another version of the app).
    """

    now: datetime
    enqueued: dict[str, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    next_tick_at: datetime | None = None
    foreign: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class OverdueSchedule:
    """A schedule that just became overdue: what the failure hooks get as their ``job``."""

    name: str
    task: str
    queue: str
    expression: str
    timezone: str
    last_success_at: datetime | None
    grace_seconds: float
    last_job_id: int | None

    def error(self) -> ScheduleOverdue:
        """The exception the failure hooks get with it."""
        since = (
            f"since {self.last_success_at.isoformat()}"
            if self.last_success_at is not None
            else "ever since it became active"
        )
        return ScheduleOverdue(
            f"schedule {self.name!r} ({self.task}, {self.expression}) is overdue: no "
            f"successful run {since}, longer than its grace of {self.grace_seconds:g}s",
            schedule=self.name,
            last_success_at=self.last_success_at,
            grace=self.grace_seconds,
        )


def sync(
    conn: psycopg.Connection[Any],
    schedules: Iterable[Schedule],
    *,
    deactivate_missing: bool = True,
    now: datetime | None = None,
) -> dict[str, str]:
    """Write the definitions into pgq.schedules; returns ``{name: change}`` for the rows
    changed (``created``, ``updated``, ``deactivated``).

    With ``deactivate_missing``, every schedule not in ``schedules`` is marked inactive
    (kept, with its history). Does nothing when ``schedules`` is empty: a process that
    defines none is not taken to mean that every schedule was removed.
    """
    definitions = list(schedules)
    if not definitions:
        return {}
    db_now = _database_now(conn, now)
    payload = json.dumps([_definition_json(s, db_now) for s in definitions])
    rows = store.fetch(
        conn, store.sync_schedules(schedules=payload, deactivate_missing=deactivate_missing)
    )
    changes = {name: change for name, change in rows}
    for name, change in changes.items():
        log.debug("schedule %s %s", name, change)
    counts = {change: list(changes.values()).count(change) for change in set(changes.values())}
    log.info(
        "schedules: %d defined here%s",
        len(definitions),
        "".join(f", {n} {change}" for change, n in sorted(counts.items())) or ", none changed",
    )
    return changes


def run_once(
    conn: psycopg.Connection[Any],
    schedules: Iterable[Schedule],
    now: datetime | None = None,
    *,
    memo: dict[tuple[str, datetime], datetime] | None = None,
) -> TickResult:
    """Enqueue every due tick of ``schedules`` that nobody enqueued yet, as of ``now``
    (default: the database's now()). Two statements when something is due, one otherwise.

    A schedule whose row is missing (run [`sync`][pgq.scheduler.sync] first), inactive,
    or defined differently by the worker that synced last is left alone. ``memo`` (a dict
    the caller keeps between passes) remembers each schedule's next tick, so a pass over
    schedules that are not due computes nothing.
    """
    by_name = {s.name: s for s in schedules}
    if not by_name:
        return TickResult(now=now or _database_now(conn, None))
    rows = store.fetch(conn, store.list_schedules(names=list(by_name), now=now))
    db_now: datetime = rows[0][-1] if rows else _database_now(conn, now)
    ticks: list[dict[str, Any]] = []
    upcoming: list[datetime] = []
    known, memo = dict(memo or {}), memo if memo is not None else {}
    memo.clear()
    foreign: list[str] = []
    for name, definition_hash, active, active_since, last_tick_at, _ in rows:
        definition = by_name[name]
        if not active:
            continue
        if definition_hash != definition.definition_hash:
            foreign.append(name)
            continue
        after = active_since if last_tick_at is None else max(last_tick_at, active_since)
        following = known.get((definition_hash, after))
        due: list[datetime] = []
        if following is None or following <= db_now:
            due, following = definition.due_and_next(after, db_now)
        if due:
            tick = _tick_json(name, last_tick_at, definition_hash, due, following)
            ticks.append(tick | definition.job_limits)
            after = due[-1]  # what the row will say if this pass wins
        memo[(definition_hash, after)] = following
        upcoming.append(following)
    enqueued: dict[str, int] = {}
    skipped: list[str] = []
    if ticks:
        statement = store.tick_schedules(ticks=json.dumps(ticks), now=now)
        for name, count, was_skipped, last_job_id, _ in store.fetch(conn, statement):
            enqueued[name] = count
            if was_skipped:
                skipped.append(name)
                log.info(
                    "schedule %s: tick skipped, its previous job %s is still queued or running",
                    name,
                    last_job_id,
                )
            else:
                log.debug("schedule %s: enqueued %d job(s), last %s", name, count, last_job_id)
    return TickResult(db_now, enqueued, skipped, min(upcoming, default=None), foreign)


def check_overdue(
    conn: psycopg.Connection[Any], schedules: Iterable[Schedule]
) -> list[OverdueSchedule]:
    """Mark the schedules among ``schedules`` that just became overdue (no success within
    their grace), log each once, and return them; clears those that recovered.

    Across processes each overdue episode is returned by exactly one call.
    """
    names = [s.name for s in schedules]
    if not names:
        return []
    rows = store.fetch(conn, store.mark_overdue_schedules(names=names))
    found = [OverdueSchedule(*row[:-1]) for row in rows]
    for schedule in found:
        log.warning("%s", schedule.error())
    return found


def run(
    url: str,
    schedules: Iterable[Schedule],
    config: SchedulerConfig | None = None,
    stop: threading.Event | None = None,
    *,
    on_overdue: Callable[[OverdueSchedule], None] | None = None,
    on_pass: Callable[[TickResult], None] | None = None,
    pgbouncer: bool | None = None,
) -> None:
    """Sync the definitions, then enqueue due ticks until ``stop`` is set.

    Made to run in a thread of ``pgq work``. Connection and database errors are logged and
    retried on a fresh connection with capped backoff; this never returns before ``stop``
    is set. Every statement is safe behind PgBouncer in transaction mode (``pgbouncer``:
    None reads $PGQ_PGBOUNCER). ``on_overdue`` is called for each schedule this process
    reports overdue; ``on_pass`` after every pass.
    """
    loop = _Loop(
        url,
        list(schedules),
        config or SchedulerConfig(),
        stop or threading.Event(),
        on_overdue,
        on_pass,
        pgbouncer,
    )
    while not loop.stop.is_set():
        try:
            loop.serve()
        except (psycopg.Error, DatabaseUnavailableError) as exc:
            loop.failures += 1
            delay = RECONNECT_BACKOFF.delay(loop.failures)
            log.warning(
                "scheduler: %s; reconnecting in %.1fs",
                db.describe_error(exc).replace(url, db.redact(url)),
                delay,
                exc_info=not isinstance(exc, psycopg.OperationalError | DatabaseUnavailableError),
            )
            loop.stop.wait(delay)


@dataclass
class _Loop:
    url: str
    schedules: list[Schedule]
    config: SchedulerConfig
    stop: threading.Event
    on_overdue: Callable[[OverdueSchedule], None] | None
    on_pass: Callable[[TickResult], None] | None
    pgbouncer: bool | None
    failures: int = 0
    next_overdue_check: float = 0.0  # time.monotonic()
    memo: dict[tuple[str, datetime], datetime] = field(default_factory=dict)
    told_foreign: set[str] = field(default_factory=set)  # logged once each

    def serve(self) -> None:
        with db.connect(
            self.url, pgbouncer=self.pgbouncer, autocommit=True, application_name=APPLICATION_NAME
        ) as conn:
            sync(conn, self.schedules, deactivate_missing=self.config.deactivate_missing)
            if self.failures:
                log.info("scheduler: connected again after %d failed tries", self.failures)
            while not self.stop.is_set():
                result = run_once(conn, self.schedules, memo=self.memo)
                self._tell_foreign(result.foreign)
                self._check_overdue(conn)
                self.failures = 0
                if self.on_pass is not None:
                    self.on_pass(result)
                self.stop.wait(self._sleep(result))

    def _tell_foreign(self, names: list[str]) -> None:
        for name in sorted(set(names) - self.told_foreign):
            log.warning(
                "schedule %s is defined differently by the worker that started last (another "
                "version of the app?); this worker leaves its ticks to workers with that "
                "definition until one with this definition starts",
                name,
            )
        self.told_foreign = set(names)

    def _sleep(self, result: TickResult) -> float:
        if result.next_tick_at is None:
            return self.config.pass_interval_max
        until = (result.next_tick_at - result.now).total_seconds()
        return min(self.config.pass_interval_max, max(PASS_INTERVAL_MIN, until))

    def _check_overdue(self, conn: psycopg.Connection[Any]) -> None:
        if time.monotonic() < self.next_overdue_check:
            return
        self.next_overdue_check = time.monotonic() + self.config.overdue_interval
        for schedule in check_overdue(conn, self.schedules):
            if self.on_overdue is not None:
                try:
                    self.on_overdue(schedule)
                except Exception:  # a broken hook must not stop the scheduler
                    log.exception("on_overdue for schedule %s raised", schedule.name)


def _definition_json(schedule: Schedule, now: datetime) -> dict[str, Any]:
    definition = schedule.definition()
    definition["definition_hash"] = schedule.definition_hash
    definition["next_tick_at"] = schedule.next_tick(now).isoformat()
    return definition


def _tick_json(
    name: str,
    expected: datetime | None,
    definition_hash: str,
    due: list[datetime],
    following: datetime,
) -> dict[str, Any]:
    return {
        "name": name,
        "expected": expected.isoformat() if expected is not None else None,
        "definition_hash": definition_hash,
        "ticks": [tick.isoformat() for tick in due],
        "next_tick_at": following.isoformat(),
    }


def _database_now(conn: psycopg.Connection[Any], now: datetime | None) -> datetime:
    rows = store.fetch(conn, store.get_database_now(now=now))
    value: datetime = rows[0][0]
    return value


@dataclass(frozen=True)
class ScheduleStatus:
    """One row of the ``pgq.schedule_status`` view (``pgq schedules``)."""

    name: str
    task: str
    queue: str
    expression: str
    timezone: str
    active: bool
    next_tick_at: datetime | None
    last_tick_at: datetime | None
    last_job_id: int | None
    last_enqueued_at: datetime | None
    last_outcome: str | None
    last_outcome_at: datetime | None
    last_success_at: datetime | None
    last_skipped_at: datetime | None
    skipped_ticks: int
    grace_seconds: float
    overdue: bool
    overdue_since: datetime | None


def schedule_status(conn: psycopg.Connection[Any]) -> list[ScheduleStatus]:
    """Every schedule in the database, active ones first, from ``pgq.schedule_status``."""
    return [ScheduleStatus(*row) for row in store.fetch(conn, store.select_schedule_status())]
