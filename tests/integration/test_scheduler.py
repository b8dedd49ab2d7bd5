"""The scheduler against a real PostgreSQL: sync of definitions, ticks enqueued exactly
once (also when many connections race for the same tick), catch-up, the overlap policy,
rolling deploys, removal, and overdue reported once. Time moves by ``now``, never sleep."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

import pgq
from pgq import scheduler, store
from pgq.cli import _register_commands, app
from pgq.periodic import Schedule, ScheduleRegistry, schedule
from pgq.registry import Registry
from pgq.worker import Worker, WorkerConfig

Conn = psycopg.Connection[Any]
_register_commands()
TASKS = Registry()
T0 = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)


@pgq.task(registry=TASKS, queue="reports", priority=3, max_attempts=4)
def report(kind: str) -> None:
    pass


def define(name: str = "hourly", **settings: Any) -> Schedule:
    settings.setdefault("task", report)
    if "cron" not in settings and "every" not in settings:
        settings["cron"] = "0 * * * *"
    settings.setdefault("args", {"kind": name})
    return schedule(name, registry=ScheduleRegistry(), **settings)


@pytest.fixture
def sconn(conn: Conn) -> Iterator[Conn]:
    """An autocommit connection on a database with no schedules and no jobs."""
    conn.execute("TRUNCATE pgq.schedules")
    yield conn


def created_at(conn: Conn, name: str, when: datetime) -> None:
    """Pretend the schedule became active at ``when`` (its ticks count from there)."""
    conn.execute("UPDATE pgq.schedules SET active_since = %s WHERE name = %s", (when, name))


def jobs(conn: Conn) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT task, queue, args, priority, max_attempts, run_at FROM pgq.jobs ORDER BY id"
    ).fetchall()


def row(conn: Conn, name: str, *columns: str) -> tuple[Any, ...]:
    found = conn.execute(
        f"SELECT {', '.join(columns)} FROM pgq.schedules WHERE name = %s", (name,)
    ).fetchone()
    assert found is not None
    return found


# --- sync -------------------------------------------------------------------------------------


def test_sync_creates_updates_and_deactivates_rows(sconn: Conn) -> None:
    hourly, daily = define("hourly"), define("daily", cron="0 3 * * *")
    assert scheduler.sync(sconn, [hourly, daily]) == {"daily": "created", "hourly": "created"}
    assert scheduler.sync(sconn, [hourly, daily]) == {}  # unchanged: no write at all

    changed = define("hourly", cron="30 * * * *")
    assert scheduler.sync(sconn, [changed]) == {"daily": "deactivated", "hourly": "updated"}
    assert row(sconn, "hourly", "expression", "active") == ("30 * * * *", True)
    # Removed from the code: kept with its history, inactive.
    assert row(sconn, "daily", "active", "next_tick_at") == (False, None)

    assert scheduler.sync(sconn, [changed, daily]) == {"daily": "updated"}
    assert row(sconn, "daily", "active") == (True,)


def test_sync_of_no_schedules_deactivates_nothing(sconn: Conn) -> None:
    scheduler.sync(sconn, [define()])
    assert scheduler.sync(sconn, []) == {}
    assert row(sconn, "hourly", "active") == (True,)


def test_sync_can_leave_other_apps_schedules_alone(sconn: Conn) -> None:
    scheduler.sync(sconn, [define("theirs")])
    assert scheduler.sync(sconn, [define("ours")], deactivate_missing=False) == {"ours": "created"}
    assert row(sconn, "theirs", "active") == (True,)


# --- ticks ------------------------------------------------------------------------------------


def test_a_due_tick_is_enqueued_once_with_the_schedule_options(sconn: Conn) -> None:
    hourly = define()
    scheduler.sync(sconn, [hourly])
    created_at(sconn, "hourly", T0 - timedelta(minutes=30))

    assert scheduler.run_once(sconn, [hourly], now=T0 - timedelta(minutes=1)).enqueued == {}
    first = scheduler.run_once(sconn, [hourly], now=T0 + timedelta(seconds=5))
    assert first.enqueued == {"hourly": 1}
    assert first.next_tick_at == T0 + timedelta(hours=1)
    assert scheduler.run_once(sconn, [hourly], now=T0 + timedelta(seconds=6)).enqueued == {}

    # The job is an ordinary job of the task, due at its tick.
    assert jobs(sconn) == [(report.name, "reports", {"kind": "hourly"}, 3, 4, T0)]
    last_tick, next_tick, last_job = row(
        sconn, "hourly", "last_tick_at", "next_tick_at", "last_job_id"
    )
    assert (last_tick, next_tick) == (T0, T0 + timedelta(hours=1))
    assert last_job == sconn.execute("SELECT max(id) FROM pgq.jobs").fetchone()[0]


def test_the_schedule_overrides_the_tasks_queue_and_priority(sconn: Conn) -> None:
    custom = define(queue="urgent", priority=9, max_attempts=1)
    scheduler.sync(sconn, [custom])
    created_at(sconn, "hourly", T0 - timedelta(minutes=30))
    scheduler.run_once(sconn, [custom], now=T0)
    assert [j[1:5] for j in jobs(sconn)] == [("urgent", {"kind": "hourly"}, 9, 1)]


@pgq.task(registry=TASKS, concurrency_limit=1, concurrency_key=lambda args: f"sync:{args['kind']}")
def sync_account(kind: str) -> None:
    pass


@pgq.task(registry=TASKS, rate_limit="2/m")
def call_api(kind: str) -> None:
    pass


def test_a_limited_tasks_ticks_wait_blocked_under_its_key(sconn: Conn) -> None:
    """A scheduled job is limited like an enqueued one: it starts blocked, with its key,
    and the key gets a wakeup (concurrency) or its rate row (rate)."""
    sconn.execute("TRUNCATE pgq.jobs, pgq.concurrency_wakeups, pgq.rate_limits")
    limited = define("limited", task=sync_account, catch_up=3)
    rated = define("rated", task=call_api, catch_up=3)
    scheduler.sync(sconn, [limited, rated])
    for name in ("limited", "rated"):
        created_at(sconn, name, T0 - timedelta(hours=3, minutes=30))
    result = scheduler.run_once(sconn, [limited, rated], now=T0)
    assert result.enqueued == {"limited": 3, "rated": 3}

    states = sconn.execute(
        "SELECT task, state::text, concurrency_key, rate_key, count(*) FROM pgq.jobs"
        " GROUP BY 1, 2, 3, 4 ORDER BY 1"
    ).fetchall()
    assert states == [
        (call_api.name, "blocked", None, call_api.name, 3),
        (sync_account.name, "blocked", "sync:limited", None, 3),
    ]
    wakeups = sconn.execute("SELECT key, max_active FROM pgq.concurrency_wakeups").fetchall()
    assert wakeups == [("sync:limited", 1)]
    rates = sconn.execute("SELECT key, max_starts, period FROM pgq.rate_limits").fetchall()
    assert rates == [(call_api.name, 2, 60.0)]

    # A promotion pass lets one job of the key through, the oldest tick first.
    sconn.execute(store.load_sql("concurrency_keys_unblock"), {"limit": 100})  # creates the key
    sconn.execute(store.load_sql("concurrency_keys_unblock"), {"limit": 100})  # fills its slot
    queued = sconn.execute(
        "SELECT run_at FROM pgq.jobs WHERE task = %s AND state = 'queued'", (sync_account.name,)
    ).fetchall()
    assert queued == [(T0 - timedelta(hours=2),)]


def test_a_blocked_previous_job_counts_as_live_for_skip(sconn: Conn) -> None:
    sconn.execute("TRUNCATE pgq.jobs, pgq.concurrency_wakeups")
    limited = define("limited", task=sync_account)
    scheduler.sync(sconn, [limited])
    created_at(sconn, "limited", T0 - timedelta(minutes=30))
    scheduler.run_once(sconn, [limited], now=T0)
    result = scheduler.run_once(sconn, [limited], now=T0 + timedelta(hours=1))
    assert (result.enqueued, result.skipped) == ({"limited": 0}, ["limited"])
    assert sconn.execute("SELECT count(*) FROM pgq.jobs").fetchone() == (1,)


def test_a_schedule_whose_key_function_fails_is_refused_when_defined() -> None:
    @pgq.task(registry=Registry(), concurrency_limit=1, concurrency_key=lambda args: args["id"])
    def by_id(kind: str) -> None:
        pass

    with pytest.raises(pgq.ScheduleError, match=r"schedule 'broken'.*concurrency_key.*KeyError"):
        define("broken", task=by_id)


def test_after_an_outage_one_tick_by_default_and_catch_up_n_oldest_first(sconn: Conn) -> None:
    default, three = define("default"), define("three", catch_up=3)
    scheduler.sync(sconn, [default, three])
    for name in ("default", "three"):
        created_at(sconn, name, T0 - timedelta(minutes=30))
    scheduler.run_once(sconn, [default, three], now=T0)
    sconn.execute("UPDATE pgq.jobs SET state = 'succeeded', finished_at = now()")

    # Down for five hours.
    result = scheduler.run_once(sconn, [default, three], now=T0 + timedelta(hours=5, minutes=1))
    assert result.enqueued == {"default": 1, "three": 3}
    runs = sconn.execute(
        "SELECT args->>'kind', run_at FROM pgq.jobs WHERE state = 'queued' ORDER BY id"
    ).fetchall()
    assert runs == [
        ("default", T0 + timedelta(hours=5)),
        ("three", T0 + timedelta(hours=3)),
        ("three", T0 + timedelta(hours=4)),
        ("three", T0 + timedelta(hours=5)),
    ]
    assert row(sconn, "three", "last_tick_at") == (T0 + timedelta(hours=5),)


def test_a_tick_whose_previous_job_is_still_live_is_skipped_and_recorded(sconn: Conn) -> None:
    skip, allow = define("skip"), define("allow", overlap="allow")
    scheduler.sync(sconn, [skip, allow])
    for name in ("skip", "allow"):
        created_at(sconn, name, T0 - timedelta(minutes=30))
    scheduler.run_once(sconn, [skip, allow], now=T0)
    sconn.execute("UPDATE pgq.jobs SET state = 'running'")  # a slow hourly job

    result = scheduler.run_once(sconn, [skip, allow], now=T0 + timedelta(hours=1))
    assert (result.enqueued, result.skipped) == ({"allow": 1, "skip": 0}, ["skip"])
    skipped_at, skipped, last_tick = row(
        sconn, "skip", "last_skipped_at", "skipped_ticks", "last_tick_at"
    )
    assert (skipped_at is not None, skipped, last_tick) == (True, 1, T0 + timedelta(hours=1))

    # Once it finished, the next tick runs again, and its success is recorded.
    sconn.execute("UPDATE pgq.jobs SET state = 'succeeded', finished_at = %s", (T0,))
    result = scheduler.run_once(sconn, [skip, allow], now=T0 + timedelta(hours=2))
    assert result.enqueued == {"allow": 1, "skip": 1}
    assert row(sconn, "skip", "last_outcome", "last_success_at") == ("succeeded", T0)


def test_a_changed_expression_takes_effect_from_the_next_tick(sconn: Conn) -> None:
    scheduler.sync(sconn, [define()])
    created_at(sconn, "hourly", T0 - timedelta(minutes=30))
    scheduler.run_once(sconn, [define()], now=T0)
    sconn.execute("UPDATE pgq.jobs SET state = 'succeeded', finished_at = now()")
    half_past = define(cron="30 * * * *")
    scheduler.sync(sconn, [half_past])
    result = scheduler.run_once(sconn, [half_past], now=T0 + timedelta(minutes=31))
    assert result.enqueued == {"hourly": 1}
    assert [j[-1] for j in jobs(sconn)] == [T0, T0 + timedelta(minutes=30)]


def test_during_a_rolling_deploy_only_the_synced_definition_ticks(sconn: Conn) -> None:
    old, new = define(cron="0 * * * *"), define(cron="1 * * * *")
    scheduler.sync(sconn, [old])
    created_at(sconn, "hourly", T0 - timedelta(minutes=30))
    scheduler.sync(sconn, [new])  # the new version started last
    at = T0 + timedelta(minutes=2)
    # The old version would enqueue 12:00, the new one 12:01: "the same" hourly run twice.
    refused = scheduler.run_once(sconn, [old], now=at)
    assert (refused.enqueued, refused.foreign) == ({}, ["hourly"])
    assert scheduler.run_once(sconn, [new], now=at).enqueued == {"hourly": 1}
    assert scheduler.run_once(sconn, [old], now=at).enqueued == {}
    assert [j[-1] for j in jobs(sconn)] == [T0 + timedelta(minutes=1)]


def test_an_inactive_schedule_does_not_tick_and_restarts_afresh(sconn: Conn) -> None:
    hourly = define()
    scheduler.sync(sconn, [hourly])
    created_at(sconn, "hourly", T0 - timedelta(minutes=30))
    scheduler.sync(sconn, [define("other")])  # removed from the code
    assert scheduler.run_once(sconn, [hourly], now=T0 + timedelta(hours=3)).enqueued == {}
    # Back in the code: ticks missed while it was inactive are never caught up.
    scheduler.sync(sconn, [hourly, define("other")])
    now = sconn.execute("SELECT now()").fetchone()[0]
    assert scheduler.run_once(sconn, [hourly], now=now).enqueued == {}


# --- exactly once under races -----------------------------------------------------------------


def test_many_connections_racing_for_every_tick_make_one_job_per_tick(db_url: str) -> None:
    every_second = define("every-second", every=1)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("TRUNCATE pgq.schedules")
        scheduler.sync(conn, [every_second])
        created_at(conn, "every-second", T0)
    racers, rounds = 8, 40
    barrier = threading.Barrier(racers)
    won: list[int] = []
    errors: list[BaseException] = []

    def race() -> None:
        try:
            with psycopg.connect(db_url, autocommit=True) as own:
                for step in range(1, rounds + 1):
                    barrier.wait(timeout=30)
                    now = T0 + timedelta(seconds=step, milliseconds=1)
                    result = scheduler.run_once(own, [every_second], now=now)
                    won.append(result.enqueued.get("every-second", 0))
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=race) for _ in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    with psycopg.connect(db_url) as conn:
        ticks = [r[0] for r in conn.execute("SELECT run_at FROM pgq.jobs ORDER BY run_at")]
    # The jobs stay queued, so after the first tick the policy skips every one: each tick
    # is consumed exactly once, by one racer, with a job or as a recorded skip.
    assert ticks == [T0 + timedelta(seconds=1)]
    assert sum(won) == 1
    assert skipped_ticks(db_url, "every-second") == rounds - 1


def skipped_ticks(url: str, name: str) -> int:
    with psycopg.connect(url) as conn:
        found = conn.execute(
            "SELECT skipped_ticks FROM pgq.schedules WHERE name = %s", (name,)
        ).fetchone()
        assert found is not None
        return int(found[0])


def test_racing_connections_with_overlap_allowed_enqueue_every_tick_once(db_url: str) -> None:
    every_second = define("allow", every=1, overlap="allow", catch_up=5)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("TRUNCATE pgq.schedules")
        scheduler.sync(conn, [every_second])
        created_at(conn, "allow", T0)
    racers, rounds = 8, 40
    barrier = threading.Barrier(racers)
    errors: list[BaseException] = []

    def race(offset: int) -> None:
        try:
            with psycopg.connect(db_url, autocommit=True) as own:
                for step in range(1, rounds + 1):
                    barrier.wait(timeout=30)
                    # Racers see slightly different clocks: some see one more tick due.
                    now = T0 + timedelta(seconds=step, milliseconds=offset * 120)
                    scheduler.run_once(own, [every_second], now=now)
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=race, args=(i,)) for i in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    with psycopg.connect(db_url) as conn:
        ticks = [r[0] for r in conn.execute("SELECT run_at FROM pgq.jobs ORDER BY run_at")]
    # Every second from T0+1 s to the last tick any racer saw due, each exactly once.
    assert ticks == [T0 + timedelta(seconds=s) for s in range(1, len(ticks) + 1)]
    assert len(ticks) in (rounds, rounds + 1)


# --- overdue ----------------------------------------------------------------------------------


def test_overdue_is_reported_once_then_cleared_by_a_success(sconn: Conn, db_url: str) -> None:
    every_minute = define("minutely", cron="* * * * *")  # grace: two minutes
    scheduler.sync(sconn, [every_minute])
    assert scheduler.check_overdue(sconn, [every_minute]) == []

    created_at(sconn, "minutely", datetime.now(UTC) - timedelta(minutes=3))
    with psycopg.connect(db_url, autocommit=True) as other:
        found = scheduler.check_overdue(sconn, [every_minute]) + scheduler.check_overdue(
            other, [every_minute]
        )
    assert [(o.name, o.grace_seconds, o.last_success_at) for o in found] == [
        ("minutely", 120.0, None)
    ]
    assert "schedule 'minutely'" in str(found[0].error())
    status = sconn.execute(
        "SELECT overdue, overdue_since IS NOT NULL FROM pgq.schedule_status"
    ).fetchone()
    assert status == (True, True)

    # A run succeeds: no longer overdue, and the next episode is reported again.
    scheduler.run_once(sconn, [every_minute])
    sconn.execute("UPDATE pgq.jobs SET state = 'succeeded', finished_at = now()")
    assert scheduler.check_overdue(sconn, [every_minute]) == []
    assert row(sconn, "minutely", "overdue_since") == (None,)
    sconn.execute("UPDATE pgq.jobs SET finished_at = now() - interval '5 minutes'")
    assert [o.name for o in scheduler.check_overdue(sconn, [every_minute])] == ["minutely"]


def test_the_status_view_shows_the_last_jobs_outcome(sconn: Conn) -> None:
    hourly = define()
    scheduler.sync(sconn, [hourly])
    created_at(sconn, "hourly", T0 - timedelta(minutes=30))
    scheduler.run_once(sconn, [hourly], now=T0)
    view = "SELECT last_outcome, last_success_at, overdue FROM pgq.schedule_status"
    assert sconn.execute(view).fetchone()[0] == "queued"
    sconn.execute("UPDATE pgq.jobs SET state = 'succeeded', finished_at = now()")
    outcome, success, overdue = sconn.execute(view).fetchone()
    assert (outcome, success is not None, overdue) == ("succeeded", True, False)


# --- inside a worker --------------------------------------------------------------------------


def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_worker_runs_its_schedules_and_reports_overdue_to_the_hooks(db_url: str) -> None:
    tasks, ran, hooked = Registry(), [], []

    def on_failure(job: Any, exc: BaseException | None) -> None:
        hooked.append((job, exc))

    @pgq.task(registry=tasks, pass_context=True)
    def tick(ctx: pgq.JobContext) -> None:
        ran.append(ctx.job.run_at)

    @pgq.task(registry=tasks, on_failure=on_failure)
    def never(kind: str) -> None:
        pass

    every_second = schedule("tick", task=tick, every=1, registry=ScheduleRegistry())
    stuck = schedule(
        "stuck",
        task=never,
        cron="0 0 1 1 *",
        grace=1,
        args={"kind": "x"},
        registry=ScheduleRegistry(),
    )
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("TRUNCATE pgq.schedules")
        scheduler.sync(conn, [every_second, stuck])
        # Its last success is long past its grace: overdue at the worker's first check.
        created_at(conn, "stuck", datetime.now(UTC) - timedelta(hours=1))
    config = WorkerConfig(db_url, run_reaper=False, concurrency=2, poll_interval=0.2)
    worker = Worker(config, registry=tasks, schedules=[every_second, stuck])
    worker_hooked: list[str] = []
    worker.on_failure = lambda job, exc: worker_hooked.append(job.name)
    thread = threading.Thread(target=lambda: asyncio.run(worker.run_async()), daemon=True)
    thread.start()
    try:
        wait_until(lambda: len(ran) >= 3 and bool(hooked))
    finally:
        worker.stop()
        thread.join(timeout=30)
    # Consecutive ticks, each run once, each job's run_at its tick (whole seconds).
    ticks = sorted(ran)
    assert all(t.microsecond == 0 for t in ticks)
    assert ticks == [ticks[0] + timedelta(seconds=i) for i in range(len(ticks))]
    overdue, exc = hooked[0]
    assert isinstance(exc, pgq.ScheduleOverdue) and exc.schedule == "stuck"
    assert overdue.name == "stuck" and worker_hooked == ["stuck"]


# --- pgq schedules --------------------------------------------------------------------------


def test_pgq_schedules_shows_each_schedule_with_its_outcome(sconn: Conn, db_url: str) -> None:
    hourly, gone = define(), define("gone", cron="0 3 * * *")
    scheduler.sync(sconn, [hourly, gone])
    scheduler.sync(sconn, [hourly])  # "gone" left the code
    created_at(sconn, "hourly", T0 - timedelta(minutes=30))
    scheduler.run_once(sconn, [hourly], now=T0)
    sconn.execute("UPDATE pgq.jobs SET state = 'failed', finished_at = now()")
    runner = CliRunner()
    shown = runner.invoke(app, ["schedules", "--json", "--database-url", db_url])
    assert shown.exit_code == 0, shown.output
    rows = {r["name"]: r for r in json.loads(shown.stdout)}
    assert rows["hourly"]["active"] and not rows["gone"]["active"]
    assert rows["hourly"]["last_outcome"] == "failed"
    assert rows["hourly"]["last_tick_at"] == T0.isoformat()
    assert rows["hourly"]["expression"] == "0 * * * *"
    table = runner.invoke(app, ["schedules", "--database-url", db_url])
    assert table.exit_code == 0
    assert "(inactive)" in table.stdout and "failed" in table.stdout, table.stdout


# --- Prometheus gauges ----------------------------------------------------------------------


def test_the_metrics_report_last_success_last_tick_and_overdue(sconn: Conn, db_url: str) -> None:
    from prometheus_client import CollectorRegistry

    from pgq.metrics import QueueGauges

    hourly, stuck, gone = define(), define("stuck", grace=60), define("gone")
    scheduler.sync(sconn, [hourly, stuck, gone])
    scheduler.sync(sconn, [hourly, stuck])  # inactive schedules are not reported
    created_at(sconn, "hourly", T0 - timedelta(minutes=30))
    created_at(sconn, "stuck", datetime.now(UTC) - timedelta(hours=1))
    scheduler.run_once(sconn, [hourly], now=T0)
    sconn.execute("UPDATE pgq.jobs SET state = 'succeeded', finished_at = %s", (T0,))
    registry = CollectorRegistry()
    registry.register(QueueGauges(db_url))
    found: dict[str, dict[str, float]] = {}
    for family in registry.collect():
        for sample in family.samples:
            if "schedule" in sample.labels:
                found.setdefault(sample.name, {})[sample.labels["schedule"]] = sample.value
    assert found["pgq_schedule_last_success_timestamp_seconds"] == {
        "hourly": T0.timestamp(),
        "stuck": 0,
    }
    assert found["pgq_schedule_last_tick_timestamp_seconds"] == {
        "hourly": T0.timestamp(),
        "stuck": 0,
    }
    assert found["pgq_schedule_overdue"] == {"hourly": 1, "stuck": 1}
