"""Recurring jobs: what a schedule is, and which of its ticks are due at a given ``now``.

Everything here is a pure function of the definition and of times it is given (database
times, read by [`pgq.scheduler`][pgq.scheduler]); nothing reads a clock or a database, so
tests move time by passing ``now``.

Cron expressions are parsed and iterated by cronsim (docs/design-notes.md says why that
library): five fields, or six with seconds first, in the schedule's time zone, with
Debian cron's rules at daylight-saving changes. A job at a fixed time that falls in the
hour skipped in spring runs at the first minute after the change; one in the hour that
repeats in autumn runs once, in its first pass. Expressions with ``*`` in the minute or
hour field run by real elapsed time, so ``*/15 * * * *`` ticks every 15 minutes through
both changes. Fixed intervals (``every=``) tick at whole multiples of the interval since
the Unix epoch, so every worker computes the same ticks whenever it started.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from pgq import options
from pgq.args import args_problem, encode_args
from pgq.errors import PgqError, ScheduleError
from pgq.registry import Task

CATCH_UP_DEFAULT = 1  # after an outage, enqueue only the most recent missed tick
CATCH_UP_MAX = 1000
OVERLAP_POLICIES = ("skip", "allow")
OVERLAP_DEFAULT = "skip"  # a tick whose previous job is still queued or running is skipped
GRACE_PERIODS_DEFAULT = 2  # overdue after this many periods without a success
# The period of a cron expression, for the default grace: the longest gap between its next
# ticks (so a weekday-only schedule is not overdue every Sunday).
PERIOD_SAMPLE_TICKS = 20
PERIOD_SAMPLE_SPAN = timedelta(days=8)
EVERY_MIN = timedelta(seconds=1)
# due_and_next walks this many missed ticks from the last one before it jumps ahead.
FORWARD_STEPS_MAX = 64
NAME_MAX_LENGTH = 255
# The usual aliases, spelled as cron expressions (cronsim reads the five fields only).
CRON_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)


@dataclass(frozen=True)
class Schedule:
    """One recurring job: a task, fixed JSON arguments, and when it is due.

    Made by [`pgq.periodic`][pgq.periodic.periodic] or [`pgq.schedule`][pgq.periodic.schedule],
    which validate it. ``cron`` or ``every`` (exactly one), ``timezone`` for cron only.
    """

    name: str
    task: Task
    cron: str | None = None
    every: timedelta | None = None
    timezone: str = "UTC"
    args: dict[str, Any] = field(default_factory=dict)
    queue: str | None = None  # None: the task's
    priority: int | None = None
    max_attempts: int | None = None
    catch_up: int = CATCH_UP_DEFAULT
    overlap: str = OVERLAP_DEFAULT
    grace: timedelta | None = None  # None: GRACE_PERIODS_DEFAULT periods

    @property
    def expression(self) -> str:
        """The cron expression, or ``every 30s`` for an interval: how it is shown and stored."""
        if self.cron is not None:
            return self.cron
        assert self.every is not None
        return f"every {_seconds_text(self.every)}"

    @property
    def job_queue(self) -> str:
        return self.queue if self.queue is not None else self.task.queue

    @property
    def job_priority(self) -> int:
        return self.priority if self.priority is not None else self.task.priority

    @property
    def job_max_attempts(self) -> int:
        return self.max_attempts if self.max_attempts is not None else self.task.max_attempts

    # Cached (the dataclass is frozen; cached_property writes the instance dict directly):
    # the scheduler asks on every pass, and a cron period takes 20 cronsim steps.
    @functools.cached_property
    def grace_period(self) -> timedelta:
        """How long without a success before the schedule is overdue."""
        return self.grace if self.grace is not None else GRACE_PERIODS_DEFAULT * self.period()

    @functools.cached_property
    def job_limits(self) -> dict[str, Any]:
        """The concurrency or rate limit the task puts its jobs under, for this schedule's
        fixed args, as schedule_tick_many.sql reads them: a scheduled job waits for its
        key's slot like an enqueued one. OptionError when a key function fails."""
        concurrency = self.task.concurrency_for(self.args)
        rate = self.task.rate_for(self.args)
        return {
            "concurrency_key": concurrency[0] if concurrency else None,
            "concurrency_limit": concurrency[1] if concurrency else None,
            "rate_key": rate[0] if rate else None,
            "max_starts": rate[1] if rate else None,
            "period": rate[2] if rate else None,
        }

    def period(self) -> timedelta:
        """The interval, or a cron expression's longest gap between its coming ticks."""
        if self.every is not None:
            return self.every
        start = datetime(2001, 1, 1, tzinfo=UTC)  # a fixed start: the hash must not drift
        ticks: list[datetime] = []
        for tick in self.ticks_after(start):
            ticks.append(tick)
            # Enough ticks to see a week's gaps (a weekday-only schedule's weekend); a
            # yearly one stops at three instead of stepping through twenty years.
            if len(ticks) > PERIOD_SAMPLE_TICKS or (
                len(ticks) >= 3 and tick - ticks[0] > PERIOD_SAMPLE_SPAN
            ):
                break
        return max(b - a for a, b in itertools.pairwise(ticks))

    def ticks_after(self, after: datetime) -> Iterator[datetime]:
        """Every tick strictly after ``after`` (an aware datetime), in order, as UTC times."""
        if self.every is not None:
            step = self.every
            count = (after - _EPOCH) // step + 1
            while True:
                yield _EPOCH + count * step
                count += 1
        assert self.cron is not None
        zone = ZoneInfo(self.timezone)
        for tick in CronSim(_cron_text(self.cron), after.astimezone(zone)):
            yield tick.astimezone(UTC)

    def next_tick(self, after: datetime) -> datetime:
        """The first tick strictly after ``after``."""
        return next(self.ticks_after(after))

    def due_ticks(self, after: datetime, now: datetime) -> list[datetime]:
        """The ticks to enqueue at ``now``: those after ``after`` and not after ``now``, at
        most ``catch_up`` of them, the most recent ones, oldest first.

        ``after`` is the last tick enqueued (or when the schedule became active).
        """
        return self.due_and_next(after, now)[0]

    def due_and_next(self, after: datetime, now: datetime) -> tuple[list[datetime], datetime]:
        """``due_ticks(after, now)`` and the first tick after ``now``, in one iteration.

        A pass usually finds one tick due, or none: the ticks are walked from ``after``.
        After a long outage (more than ``FORWARD_STEPS_MAX`` missed ticks) the walk starts
        just before the ``catch_up`` most recent ticks instead, so a schedule down for days
        costs ``catch_up`` steps, not one per missed tick.
        """
        due: list[datetime] = []
        for steps, tick in enumerate(self.ticks_after(after)):
            if tick > now:
                return due[-self.catch_up :], tick
            due.append(tick)
            if steps >= FORWARD_STEPS_MAX:
                break
        start = max(after, self._catch_up_start(now))
        due = []
        for tick in self.ticks_after(start):
            if tick > now:
                return due[-self.catch_up :], tick
            due.append(tick)
        raise AssertionError("unreachable: ticks_after never ends")

    def _catch_up_start(self, now: datetime) -> datetime:
        """A time before the ``catch_up`` most recent ticks up to ``now``."""
        if self.every is not None:
            return now - (self.catch_up + 1) * self.every
        assert self.cron is not None
        zone = ZoneInfo(self.timezone)
        # Backwards from just after now; forward iteration from there is what decides, so
        # the two directions' handling of a daylight-saving change never matters here.
        back = CronSim(_cron_text(self.cron), (now + _SECOND).astimezone(zone), reverse=True)
        earliest = now
        try:
            for _ in range(self.catch_up + 1):
                earliest = next(back).astimezone(UTC)
        except StopIteration:  # no earlier tick within cronsim's 50 years
            return _EPOCH
        return earliest - _SECOND

    @functools.cached_property
    def definition_hash(self) -> str:
        """A digest of everything that decides what and when this schedule enqueues."""
        text = json.dumps(self.definition(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def definition(self) -> dict[str, Any]:
        """The definition as stored in pgq.schedules (without the tick state)."""
        return {
            "name": self.name,
            "task": self.task.name,
            "queue": self.job_queue,
            "expression": self.expression,
            "timezone": self.timezone,
            "args": self.args,
            "priority": self.job_priority,
            "max_attempts": self.job_max_attempts,
            "catch_up": self.catch_up,
            "overlap": self.overlap,
            "grace_seconds": self.grace_period.total_seconds(),
        }


class ScheduleRegistry:
    """Schedule names → schedules, for one process (like the task registry)."""

    def __init__(self) -> None:
        self._schedules: dict[str, Schedule] = {}

    def add(self, schedule: Schedule) -> Schedule:
        existing = self._schedules.get(schedule.name)
        if existing is not None and existing.definition() != schedule.definition():
            raise ScheduleError(
                f"schedule {schedule.name!r} is defined twice, differently; give one of "
                "them another name="
            )
        self._schedules[schedule.name] = schedule
        return schedule

    def get(self, name: str) -> Schedule | None:
        return self._schedules.get(name)

    def remove(self, name: str) -> None:
        self._schedules.pop(name, None)

    def names(self) -> list[str]:
        return sorted(self._schedules)

    def __iter__(self) -> Iterator[Schedule]:
        return iter([self._schedules[name] for name in sorted(self._schedules)])

    def __len__(self) -> int:
        return len(self._schedules)


SCHEDULES = ScheduleRegistry()


def schedule(
    name: str,
    *,
    task: Task,
    cron: str | None = None,
    every: timedelta | float | None = None,
    timezone: str = "UTC",
    args: dict[str, Any] | None = None,
    queue: str | None = None,
    priority: int | None = None,
    max_attempts: int | None = None,
    catch_up: int = CATCH_UP_DEFAULT,
    overlap: str = OVERLAP_DEFAULT,
    grace: timedelta | float | None = None,
    registry: ScheduleRegistry | None = None,
) -> Schedule:
    """Run ``task`` with ``args`` on a schedule: ``cron="*/15 * * * *"`` or ``every=30``.

    ``cron`` takes five fields (minute hour day month weekday), six with seconds first,
    or an alias such as ``@hourly``; it is read in ``timezone`` (an IANA name, default
    UTC). ``every`` is a ``timedelta`` or seconds (at least 1). Every ``pgq work`` that
    imports this definition may enqueue a due tick, and each tick makes exactly one job
    whose ``run_at`` is the tick. ``queue``, ``priority`` and ``max_attempts`` default to
    the task's.

    ``catch_up``: how many missed ticks to enqueue after nobody could (an outage), the
    most recent ones, oldest first (default 1). ``overlap``: ``"skip"`` (default) consumes
    a tick without a job while the previous tick's job is still queued or running, and
    records the skip; ``"allow"`` enqueues it anyway. ``grace`` (timedelta or seconds):
    how long without a success before the schedule is reported overdue (default two
    periods). Raises ScheduleError naming the schedule and the problem.
    """
    definition = Schedule(
        name=_check_name(name),
        task=task,
        cron=cron,
        every=_as_timedelta(every, name, "every"),
        timezone=timezone,
        args=dict(args or {}),
        queue=queue,
        priority=priority,
        max_attempts=max_attempts,
        catch_up=catch_up,
        overlap=overlap,
        grace=_as_timedelta(grace, name, "grace"),
    )
    check_schedule(definition)
    return (SCHEDULES if registry is None else registry).add(definition)


def periodic(
    *,
    cron: str | None = None,
    every: timedelta | float | None = None,
    name: str | None = None,
    **settings: Any,
) -> Any:
    """Decorate a task to run it on a schedule; put it above ``@pgq.task``::

        @pgq.periodic(cron="0 * * * *", timezone="Europe/Paris", args={"kind": "hourly"})
        @pgq.task(queue="reports")
        def build_report(kind: str) -> None: ...

    ``name`` defaults to the task's name; the other settings are
    [`pgq.schedule`][pgq.periodic.schedule]'s. Returns the task unchanged.
    """

    def register(target: Task) -> Task:
        if not isinstance(target, Task):
            raise ScheduleError(
                f"@pgq.periodic needs a task: put it above @pgq.task, not on {target!r}"
            )
        schedule(name or target.name, task=target, cron=cron, every=every, **settings)
        return target

    return register


def check_schedule(definition: Schedule) -> None:
    """Raise ScheduleError (naming the schedule) unless ``definition`` can run."""
    label = f"schedule {definition.name!r}"
    try:
        _check_when(definition)
        _check_options(definition)
        encode_args(definition.args)
        _ = definition.job_limits  # a key function that fails is refused here, not at a tick
    except PgqError as exc:
        raise ScheduleError(f"{label}: {exc}") from None
    task = definition.task
    problem = args_problem(task.func, definition.args, pass_context=task.pass_context)
    if problem is not None:
        raise ScheduleError(f"{label}: its args do not fit {task.name}: {problem}")


def _check_when(definition: Schedule) -> None:
    if (definition.cron is None) == (definition.every is None):
        raise ScheduleError("give exactly one of cron= (an expression) or every= (an interval)")
    if definition.every is not None:
        if definition.every < EVERY_MIN:
            raise ScheduleError(f"every= must be at least 1 second, not {definition.every}")
        if definition.timezone != "UTC":
            raise ScheduleError("timezone= applies to cron= only; an interval is time-zone free")
        return
    assert definition.cron is not None
    try:
        zone = ZoneInfo(definition.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(
            f"unknown time zone {definition.timezone!r}; use an IANA name such as "
            "'Europe/Paris' or 'UTC'"
        ) from None
    try:
        next(CronSim(_cron_text(definition.cron), datetime.now(zone)))
    except CronSimError as exc:
        raise ScheduleError(
            f"cron expression {definition.cron!r} is not valid ({exc}); it takes five "
            "fields, minute hour day-of-month month day-of-week, or six with seconds first"
        ) from None
    except StopIteration:
        raise ScheduleError(f"cron expression {definition.cron!r} never fires") from None


def _check_options(definition: Schedule) -> None:
    if definition.queue is not None:
        options.check_queue(definition.queue)
    if definition.priority is not None:
        options.check_priority(definition.priority)
    if definition.max_attempts is not None:
        options.check_max_attempts(definition.max_attempts)
    catch_up = definition.catch_up
    if isinstance(catch_up, bool) or not isinstance(catch_up, int):
        raise ScheduleError(f"catch_up must be an integer, not {catch_up!r}")
    if not 1 <= catch_up <= CATCH_UP_MAX:
        raise ScheduleError(f"catch_up must be between 1 and {CATCH_UP_MAX}, not {catch_up}")
    if definition.overlap not in OVERLAP_POLICIES:
        raise ScheduleError(
            f"overlap must be one of {', '.join(OVERLAP_POLICIES)}, not {definition.overlap!r}"
        )
    if definition.grace is not None and definition.grace <= timedelta(0):
        raise ScheduleError(f"grace must be positive, not {definition.grace}")


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not 1 <= len(name) <= NAME_MAX_LENGTH:
        raise ScheduleError(
            f"a schedule name must be a string of 1 to {NAME_MAX_LENGTH} characters, not {name!r}"
        )
    return name


def _as_timedelta(value: timedelta | float | None, name: str, label: str) -> timedelta | None:
    if value is None or isinstance(value, timedelta):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ScheduleError(
            f"schedule {name!r}: {label}= must be a timedelta or seconds, not {value!r}"
        )
    return timedelta(seconds=value)


def _cron_text(cron: str) -> str:
    return CRON_ALIASES.get(cron.strip().lower(), cron)


def _seconds_text(every: timedelta) -> str:
    seconds = every.total_seconds()
    return f"{seconds:g}s"
