"""Schedules as pure functions of time: ticks across daylight-saving changes, catch-up after
an outage, the default grace, and the definition checks. No database, no clock: every
test passes ``now``."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

import pgq
from pgq.periodic import Schedule, ScheduleRegistry, schedule
from pgq.registry import Registry

TASKS = Registry()


@pgq.task(registry=TASKS, queue="reports")
def build_report(kind: str) -> None:
    pass


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def define(**settings: object) -> Schedule:
    settings.setdefault("task", build_report)
    settings.setdefault("args", {"kind": "k"})
    name = str(settings.pop("name", "s"))
    return schedule(name, registry=ScheduleRegistry(), **settings)  # type: ignore[arg-type]


def ticks_between(definition: Schedule, start: datetime, end: datetime) -> list[datetime]:
    found = []
    for tick in definition.ticks_after(start):
        if tick > end:
            return found
        found.append(tick)
    raise AssertionError("unreachable")


# --- daylight-saving changes (Europe/Paris: 2026-03-29 02:00 -> 03:00, 2026-10-25 03:00
# -> 02:00) ---------------------------------------------------------------------------------


def test_spring_a_fixed_time_in_the_skipped_hour_runs_once_just_after_the_change() -> None:
    daily = define(cron="30 2 * * *", timezone="Europe/Paris")
    ticks = ticks_between(daily, utc(2026, 3, 27, 12), utc(2026, 3, 31, 12))
    # 02:30 CET = 01:30Z; on the 29th 02:30 does not exist: 03:00 CEST = 01:00Z; then CEST.
    assert ticks == [
        utc(2026, 3, 28, 1, 30),
        utc(2026, 3, 29, 1, 0),
        utc(2026, 3, 30, 0, 30),
        utc(2026, 3, 31, 0, 30),
    ]


def test_autumn_a_fixed_time_in_the_repeated_hour_runs_once() -> None:
    daily = define(cron="30 2 * * *", timezone="Europe/Paris")
    ticks = ticks_between(daily, utc(2026, 10, 24, 12), utc(2026, 10, 26, 12))
    # 02:30 happens twice on the 25th (00:30Z in CEST, 01:30Z in CET): once only.
    assert ticks == [utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]


def test_autumn_a_wildcard_hour_keeps_ticking_by_elapsed_time() -> None:
    every_half_hour = define(cron="*/30 * * * *", timezone="Europe/Paris")
    ticks = ticks_between(every_half_hour, utc(2026, 10, 24, 23, 0), utc(2026, 10, 25, 2, 0))
    assert ticks == [utc(2026, 10, 24, 23, 30) + timedelta(minutes=30 * i) for i in range(6)]


def test_spring_an_hourly_schedule_neither_loses_nor_doubles_a_tick() -> None:
    hourly = define(cron="0 * * * *", timezone="Europe/Paris")
    ticks = ticks_between(hourly, utc(2026, 3, 28, 22, 30), utc(2026, 3, 29, 4, 30))
    assert ticks == [utc(2026, 3, 28, 23) + timedelta(hours=i) for i in range(6)]


def test_autumn_an_hourly_schedule_ticks_in_both_passes_of_the_repeated_hour() -> None:
    hourly = define(cron="0 * * * *", timezone="Europe/Paris")
    ticks = ticks_between(hourly, utc(2026, 10, 24, 22, 30), utc(2026, 10, 25, 3, 30))
    assert ticks == [utc(2026, 10, 24, 23) + timedelta(hours=i) for i in range(5)]
    assert len(set(ticks)) == len(ticks)


def test_due_ticks_across_the_autumn_change_are_each_due_once() -> None:
    """A pass every minute through the night: each tick is due in exactly one pass."""
    daily = define(cron="30 2 * * *", timezone="Europe/Paris")
    last = utc(2026, 10, 24, 12)
    enqueued = []
    now = utc(2026, 10, 24, 22)
    while now < utc(2026, 10, 25, 4):
        due = daily.due_ticks(last, now)
        enqueued += due
        last = due[-1] if due else last
        now += timedelta(minutes=1)
    assert enqueued == [utc(2026, 10, 25, 0, 30)]


# --- catch-up ---------------------------------------------------------------------------------


def test_after_an_outage_only_the_most_recent_missed_tick_is_due_by_default() -> None:
    hourly = define(cron="0 * * * *")
    assert hourly.due_ticks(utc(2026, 1, 1, 9), utc(2026, 1, 1, 14, 5)) == [utc(2026, 1, 1, 14)]


def test_catch_up_n_returns_up_to_n_missed_ticks_oldest_first() -> None:
    hourly = define(cron="0 * * * *", catch_up=3)
    assert hourly.due_ticks(utc(2026, 1, 1, 9), utc(2026, 1, 1, 14, 5)) == [
        utc(2026, 1, 1, 12),
        utc(2026, 1, 1, 13),
        utc(2026, 1, 1, 14),
    ]
    # Fewer missed than catch_up: all of them, and nothing at or before the last tick.
    assert hourly.due_ticks(utc(2026, 1, 1, 12), utc(2026, 1, 1, 13, 59)) == [utc(2026, 1, 1, 13)]


def test_nothing_is_due_before_the_next_tick() -> None:
    hourly = define(cron="0 * * * *")
    assert hourly.due_ticks(utc(2026, 1, 1, 9), utc(2026, 1, 1, 9, 59, 59)) == []
    assert hourly.due_ticks(utc(2026, 1, 1, 9), utc(2026, 1, 1, 10)) == [utc(2026, 1, 1, 10)]


def test_a_long_outage_of_a_one_second_schedule_is_caught_up_in_few_steps() -> None:
    every_second = define(every=1, catch_up=5)
    cron_seconds = define(cron="* * * * * *", catch_up=5)
    now = utc(2026, 1, 4, 0, 0, 0)
    for definition in (every_second, cron_seconds):
        started = time.process_time()
        due = definition.due_ticks(utc(2026, 1, 1), now)
        assert due == [now - timedelta(seconds=4 - i) for i in range(5)]
        # Three days are 259,200 ticks; stepping through them would take seconds.
        assert time.process_time() - started < 1.0


def test_interval_ticks_are_multiples_of_the_interval_since_the_epoch() -> None:
    every_30s = define(every=timedelta(seconds=30))
    ticks = every_30s.ticks_after(utc(2026, 1, 1, 0, 0, 10))
    assert [next(ticks) for _ in range(3)] == [
        utc(2026, 1, 1, 0, 0, 30),
        utc(2026, 1, 1, 0, 1, 0),
        utc(2026, 1, 1, 0, 1, 30),
    ]
    assert every_30s.expression == "every 30s"


def test_six_fields_have_seconds_first_and_aliases_work() -> None:
    assert define(cron="*/20 * * * * *").next_tick(utc(2026, 1, 1, 0, 0, 1)) == utc(
        2026, 1, 1, 0, 0, 20
    )
    assert define(cron="@hourly").next_tick(utc(2026, 1, 1, 0, 0, 1)) == utc(2026, 1, 1, 1)


# --- grace, overdue's threshold -------------------------------------------------------------


def test_default_grace_is_two_periods() -> None:
    assert define(every=30).grace_period == timedelta(seconds=60)
    assert define(cron="*/15 * * * *").grace_period == timedelta(minutes=30)
    # A weekday-only schedule's period is its longest gap (the weekend), so it is not
    # overdue every Sunday.
    assert define(cron="0 9 * * 1-5").grace_period == timedelta(days=6)
    assert define(cron="0 * * * *", grace=600).grace_period == timedelta(minutes=10)


def test_the_definition_hash_changes_with_what_is_enqueued_and_when() -> None:
    base = define(cron="0 * * * *", args={"kind": "a"})
    assert base.definition_hash == define(cron="0 * * * *", args={"kind": "a"}).definition_hash
    for other in (
        define(cron="5 * * * *", args={"kind": "a"}),
        define(cron="0 * * * *", args={"kind": "b"}),
        define(cron="0 * * * *", args={"kind": "a"}, timezone="Europe/Paris"),
        define(cron="0 * * * *", args={"kind": "a"}, queue="other"),
    ):
        assert other.definition_hash != base.definition_hash


# --- definitions ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"cron": "61 * * * *"}, "cron expression '61 * * * *' is not valid"),
        ({"cron": "* * * *"}, "is not valid"),
        ({"cron": "0 0 30 2 *"}, "is not valid"),
        ({"cron": "0 * * * *", "timezone": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
        ({"every": 0.5}, "at least 1 second"),
        ({"every": 30, "timezone": "Europe/Paris"}, "cron= only"),
        ({}, "exactly one of cron="),
        ({"cron": "0 * * * *", "every": 60}, "exactly one of cron="),
        ({"cron": "0 * * * *", "catch_up": 0}, "catch_up must be between 1"),
        ({"cron": "0 * * * *", "overlap": "queue"}, "overlap must be one of skip, allow"),
        ({"cron": "0 * * * *", "args": {"x": float("nan")}}, "NaN"),
        ({"cron": "0 * * * *", "queue": "bad queue"}, "queue"),
        ({"cron": "0 * * * *", "grace": -1}, "grace must be positive"),
        ({"cron": "0 * * * *", "args": {"kind": "a", "extra": 1}}, "unexpected argument 'extra'"),
        ({"cron": "0 * * * *", "args": {}}, "'kind'"),
    ],
)
def test_a_bad_definition_raises_a_schedule_error_naming_the_schedule(
    settings: dict[str, object], message: str
) -> None:
    with pytest.raises(pgq.ScheduleError, match="schedule 'nightly'") as raised:
        define(name="nightly", **settings)
    assert message in str(raised.value)


def test_periodic_registers_the_task_under_its_name_and_returns_it() -> None:
    registry = ScheduleRegistry()
    tasks = Registry()

    @pgq.periodic(cron="0 * * * *", args={"kind": "hourly"}, registry=registry)
    @pgq.task(registry=tasks, queue="reports")
    def hourly(kind: str) -> None:
        pass

    assert isinstance(hourly, pgq.Task)
    (only,) = list(registry)
    assert (only.name, only.task, only.args, only.job_queue) == (
        hourly.name,
        hourly,
        {"kind": "hourly"},
        "reports",
    )
    with pytest.raises(pgq.ScheduleError, match=r"above @pgq\.task"):
        pgq.periodic(cron="0 * * * *")(lambda: None)


def test_a_name_defined_twice_differently_is_refused() -> None:
    registry = ScheduleRegistry()
    schedule("s", task=build_report, cron="0 * * * *", args={"kind": "k"}, registry=registry)
    schedule(
        "s", task=build_report, cron="0 * * * *", args={"kind": "k"}, registry=registry
    )  # same: fine
    with pytest.raises(pgq.ScheduleError, match="defined twice"):
        schedule("s", task=build_report, cron="5 * * * *", args={"kind": "k"}, registry=registry)
