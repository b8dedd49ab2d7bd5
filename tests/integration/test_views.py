"""The dashboard views against real rows: exact values, and plans that never scan the table.

Rows are inserted with timestamps relative to now() inside one transaction, and the view is
read in that same transaction, where now() does not move: every value is known exactly.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

import pgq
from pgq import reaper, testing
from pgq.registry import Registry

Conn = psycopg.Connection[Any]
VIEWS = ("queue_stats", "recent_failures", "running_jobs", "throughput")


def add_job(
    conn: Conn,
    queue: str,
    state: str,
    *,
    run_at: str = "0",
    finished: str | None = None,
    started: str | None = None,
    lease: str | None = None,
    errors: list[tuple[int, str]] = (),  # type: ignore[assignment]
    task: str = "tests.task",
    **columns: Any,
) -> int:
    """Insert a job; times are intervals relative to now() such as '-5 minutes'.

    ``errors`` are ``(attempt, at)`` pairs; each becomes an error entry written the way the
    worker writes them (jsonb_build_object with 'at' => a timestamptz).
    """
    entries = [
        conn.execute(
            "SELECT jsonb_build_object('attempt', %s::int, 'at', now() + %s::interval, "
            "'kind', 'ValueError', 'message', %s::text, 'traceback', NULL, "
            "'worker_id', 'w-' || %s)",
            (attempt, at, f"boom {attempt}", attempt),
        ).fetchone()[0]  # type: ignore[index]
        for attempt, at in errors
    ]
    extra = "".join(f", {name}" for name in columns)
    values = "".join(f", %({name})s" for name in columns)
    row = conn.execute(
        f"""
        INSERT INTO pgq.jobs (queue, task, state, run_at, finished_at, started_at,
                              lease_expires_at, errors{extra})
        VALUES (%(queue)s, %(task)s, %(state)s, now() + %(run_at)s::interval,
                now() + %(finished)s::interval, now() + %(started)s::interval,
                now() + %(lease)s::interval, %(errors)s::jsonb{values})
        RETURNING id
        """,
        {
            "queue": queue,
            "task": task,
            "state": state,
            "run_at": run_at,
            "finished": finished,
            "started": started,
            "lease": lease,
            "errors": psycopg.types.json.Jsonb(entries),
            **columns,
        },
    ).fetchone()
    assert row is not None
    return int(row[0])


def select(conn: Conn, query: str) -> list[dict[str, Any]]:
    cur = conn.execute(query)
    names = [d.name for d in cur.description or []]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def db_now(conn: Conn) -> datetime:
    return conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index,no-any-return]


# --- pgq.queue_stats ----------------------------------------------------------------------


def test_queue_stats_counts_every_column_exactly(conn: Conn) -> None:
    with conn.transaction():
        for run_at in ("-10 seconds", "-5 minutes", "0"):  # ready: run_at <= now()
            add_job(conn, "a", "queued", run_at=run_at)
        for run_at in ("1 second", "1 hour"):  # scheduled
            add_job(conn, "a", "queued", run_at=run_at)
        add_job(conn, "a", "running", started="-1 minute", lease="30 seconds")
        add_job(conn, "a", "failed", finished="-2 days")
        add_job(conn, "a", "failed", finished="-1 minute")  # also in the 5-minute rate
        add_job(conn, "a", "succeeded", finished="-30 seconds")  # last hour and 5 minutes
        add_job(conn, "a", "succeeded", finished="-10 minutes")  # last hour only
        add_job(conn, "a", "succeeded", finished="-1 hour")  # not after now() - 1 hour
        add_job(conn, "a", "succeeded", finished="-2 hours")
        add_job(conn, "a", "cancelled", finished="-1 minute")  # in no count
        add_job(conn, "b", "succeeded", finished="-2 hours")  # b has nothing recent
        add_job(conn, "c", "failed", finished="-20 days")
        add_job(conn, "d", "queued", run_at="5 minutes")
        for _ in range(2):  # waiting for their parents in a workflow
            add_job(conn, "a", "waiting", workflow_id=1, parents_pending=1)
        add_job(conn, "e", "waiting", workflow_id=1, parents_pending=1)  # only waiting jobs
        rows = select(conn, "SELECT * FROM pgq.queue_stats")

    assert rows == [
        {
            "queue": "a",
            "ready": 3,
            "scheduled": 2,
            "running": 1,
            "failed": 2,
            "succeeded_last_hour": 2,
            "oldest_ready_seconds": 300.0,
            "per_minute_last_5m": 0.4,
            "waiting": 2,
        },
        {
            "queue": "c",
            "ready": 0,
            "scheduled": 0,
            "running": 0,
            "failed": 1,
            "succeeded_last_hour": 0,
            "oldest_ready_seconds": None,
            "per_minute_last_5m": 0.0,
            "waiting": 0,
        },
        {
            "queue": "d",
            "ready": 0,
            "scheduled": 1,
            "running": 0,
            "failed": 0,
            "succeeded_last_hour": 0,
            "oldest_ready_seconds": None,
            "per_minute_last_5m": 0.0,
            "waiting": 0,
        },
        {
            "queue": "e",
            "ready": 0,
            "scheduled": 0,
            "running": 0,
            "failed": 0,
            "succeeded_last_hour": 0,
            "oldest_ready_seconds": None,
            "per_minute_last_5m": 0.0,
            "waiting": 1,
        },
    ]


def test_queue_stats_is_empty_without_jobs(conn: Conn) -> None:
    assert select(conn, "SELECT * FROM pgq.queue_stats") == []


# --- pgq.recent_failures ------------------------------------------------------------------


def test_recent_failures_lists_every_recent_error_newest_first(conn: Conn) -> None:
    with conn.transaction():
        now = db_now(conn)
        failed = add_job(
            conn,
            "a",
            "failed",
            finished="-1 minute",
            errors=[(1, "-3 minutes"), (2, "-1 minute")],
            task="t.failed",
        )
        retrying = add_job(conn, "b", "queued", run_at="1 hour", errors=[(1, "-2 minutes")])
        recovered = add_job(conn, "a", "succeeded", finished="-30 seconds", errors=[(1, "-40 s")])
        add_job(conn, "a", "failed", finished="-2 days", errors=[(1, "-2 days")])
        add_job(conn, "a", "queued", run_at="1 hour", errors=[(1, "-25 hours")])
        old_and_new = add_job(
            conn, "c", "failed", finished="-1 hour", errors=[(1, "-30 hours"), (2, "-1 hour")]
        )
        add_job(conn, "a", "succeeded", finished="-1 minute")
        rows = select(conn, "SELECT * FROM pgq.recent_failures")

    def row(job_id: int, queue: str, state: str, attempt: int, ago: timedelta, task: str) -> Any:
        return {
            "job_id": job_id,
            "queue": queue,
            "task": task,
            "state": state,
            "attempt": attempt,
            "kind": "ValueError",
            "message": f"boom {attempt}",
            "at": now - ago,
            "worker_id": f"w-{attempt}",
        }

    assert rows == [
        row(recovered, "a", "succeeded", 1, timedelta(seconds=40), "tests.task"),
        row(failed, "a", "failed", 2, timedelta(minutes=1), "t.failed"),
        row(retrying, "b", "queued", 1, timedelta(minutes=2), "tests.task"),
        row(failed, "a", "failed", 1, timedelta(minutes=3), "t.failed"),
        row(old_and_new, "c", "failed", 2, timedelta(hours=1), "tests.task"),
    ]


class CardDeclined(Exception):
    pass


def test_recent_failures_kind_is_what_the_worker_and_reaper_record(conn: Conn) -> None:
    # Written by the real worker (pgq.testing.run_jobs) and the real reaper, not by hand:
    # kind is the exception's type (module-qualified unless builtin), Fail, Retry, or
    # lease_expired.
    tasks = Registry()

    @pgq.task(name="v.builtin", registry=tasks, max_attempts=1)
    def builtin() -> None:
        raise KeyError("sku")

    @pgq.task(name="v.own", registry=tasks, max_attempts=1)
    def own() -> None:
        raise CardDeclined("declined")

    @pgq.task(name="v.fail", registry=tasks)
    def fail() -> None:
        raise pgq.Fail("gave up")

    @pgq.task(name="v.retry", registry=tasks, max_attempts=1)
    def retry() -> None:
        raise pgq.Retry(delay=0, reason="later")

    for task in (builtin, own, fail, retry):
        pgq.enqueue(conn, task)
    testing.run_jobs(conn, registry=tasks)
    lapsed = pgq.enqueue(conn, "v.lapsed", queue="views", max_attempts=1)
    conn.execute(
        "UPDATE pgq.jobs SET state = 'running', attempts = 1, lease_token = 1, worker_id = 'w',"
        " started_at = now() - interval '2 minutes', lease_expires_at = now() - interval '1 minute'"
        " WHERE id = %s",
        (lapsed,),
    )
    assert len(reaper.reap_once(conn).jobs) == 1

    kinds = dict(select_pairs(conn, "SELECT task, kind FROM pgq.recent_failures"))
    assert kinds == {
        "v.builtin": "KeyError",
        "v.own": f"{__name__}.CardDeclined",
        "v.fail": "Fail",
        "v.retry": "Retry",
        "v.lapsed": "lease_expired",
    }


def select_pairs(conn: Conn, query: str) -> list[tuple[Any, Any]]:
    return [(row[0], row[1]) for row in conn.execute(query)]


# --- pgq.running_jobs ---------------------------------------------------------------------


def test_running_jobs_shows_holder_age_and_lease_left(conn: Conn) -> None:
    with conn.transaction():
        now = db_now(conn)
        newer = add_job(
            conn,
            "a",
            "running",
            started="-90 seconds",
            lease="20 seconds",
            worker_id="host-1:42",
            attempts=2,
            max_attempts=5,
        )
        older = add_job(
            conn,
            "b",
            "running",
            started="-10 minutes",
            lease="-5 seconds",  # lapsed; the reaper has not come by yet
            worker_id="host-2:7",
            attempts=1,
            cancel_requested=True,
        )
        add_job(conn, "a", "queued")
        add_job(conn, "a", "succeeded", finished="-1 second")
        rows = select(conn, "SELECT * FROM pgq.running_jobs")

    assert rows == [
        {
            "id": older,
            "queue": "b",
            "task": "tests.task",
            "worker_id": "host-2:7",
            "attempt": 1,
            "max_attempts": 20,
            "started_at": now - timedelta(minutes=10),
            "running_seconds": 600.0,
            "lease_expires_at": now - timedelta(seconds=5),
            "lease_left_seconds": -5.0,
            "cancel_requested": True,
        },
        {
            "id": newer,
            "queue": "a",
            "task": "tests.task",
            "worker_id": "host-1:42",
            "attempt": 2,
            "max_attempts": 5,
            "started_at": now - timedelta(seconds=90),
            "running_seconds": 90.0,
            "lease_expires_at": now + timedelta(seconds=20),
            "lease_left_seconds": 20.0,
            "cancel_requested": False,
        },
    ]


# --- pgq.throughput -----------------------------------------------------------------------


def test_throughput_counts_per_minute_and_queue_for_24_hours(conn: Conn) -> None:
    with conn.transaction():
        minute = conn.execute("SELECT date_trunc('minute', now())").fetchone()[0]  # type: ignore[index]
        # Offsets from the start of the current minute, so each row's bucket is known.
        at = "date_trunc('minute', now()) - now() + interval "
        bucket_1 = [at + "'-10 minutes 5 seconds'", at + "'-10 minutes 50 seconds'"]
        for offset in bucket_1:
            _finished_at(conn, add_job(conn, "a", "succeeded"), offset)
        _finished_at(conn, add_job(conn, "a", "failed"), at + "'-10 minutes 20 seconds'")
        _finished_at(conn, add_job(conn, "b", "failed"), at + "'-10 minutes 59 seconds'")
        _finished_at(conn, add_job(conn, "a", "cancelled"), at + "'-10 minutes 30 seconds'")
        _finished_at(conn, add_job(conn, "a", "succeeded"), at + "'-3 minutes'")
        add_job(conn, "a", "succeeded", finished="-25 hours")
        add_job(conn, "a", "queued")
        add_job(conn, "a", "running", started="-1 minute", lease="1 minute")
        rows = select(conn, "SELECT * FROM pgq.throughput")

    assert rows == [
        {"minute": minute - timedelta(minutes=10), "queue": "a", "succeeded": 2, "failed": 1},
        {"minute": minute - timedelta(minutes=10), "queue": "b", "succeeded": 0, "failed": 1},
        {"minute": minute - timedelta(minutes=3), "queue": "a", "succeeded": 1, "failed": 0},
    ]


def _finished_at(conn: Conn, job_id: int, offset_sql: str) -> None:
    # offset_sql is a test constant (an expression relative to now()), never user input.
    conn.execute(
        f"UPDATE pgq.jobs SET finished_at = now() + ({offset_sql}) WHERE id = %s",  # type: ignore[arg-type]
        (job_id,),
    )


# --- cheap on a big table -----------------------------------------------------------------


def seq_scans_of_jobs(plan: dict[str, Any]) -> list[str]:
    """Every node of an EXPLAIN (FORMAT JSON) plan that reads pgq.jobs sequentially."""
    found = []
    if plan.get("Node Type") == "Seq Scan" and plan.get("Relation Name") == "jobs":
        found.append(f"Seq Scan on {plan.get('Schema', 'pgq')}.jobs")
    for child in plan.get("Plans", []):
        found += seq_scans_of_jobs(child)
    return found


def explain(conn: Conn, query: str) -> dict[str, Any]:
    row = conn.execute(f"EXPLAIN (FORMAT JSON, VERBOSE) {query}").fetchone()  # type: ignore[arg-type]
    assert row is not None
    plan: dict[str, Any] = row[0][0]["Plan"]
    return plan


def test_the_big_table_is_populated(big_db: Conn) -> None:
    counts = dict(
        big_db.execute("SELECT state::text, count(*) FROM pgq.jobs GROUP BY 1").fetchall()
    )
    assert counts == {
        "succeeded": 950_000,
        "failed": 40_000,
        "cancelled": 10_000,
        "queued": 100_000,
        "running": 100,
    }


def test_the_detector_sees_a_sequential_scan(big_db: Conn) -> None:
    # A query no index serves, so the check below cannot pass by never finding anything.
    plan = explain(big_db, "SELECT count(*) FROM pgq.jobs WHERE args ? 'x'")
    assert seq_scans_of_jobs(plan) == ["Seq Scan on pgq.jobs"]


@pytest.mark.parametrize(
    "query",
    [
        *(f"SELECT * FROM pgq.{view}" for view in VIEWS),
        "SELECT * FROM pgq.recent_failures LIMIT 50",
        "SELECT * FROM pgq.throughput WHERE queue = 'q1'",
        "SELECT sum(ready), max(oldest_ready_seconds) FROM pgq.queue_stats",
        "SELECT * FROM pgq.worker_status",
        "SELECT * FROM pgq.orphaned_jobs",
        "SELECT * FROM pgq.health",
        "SELECT * FROM pgq.flow_limits",
    ],
)
def test_no_view_scans_the_jobs_table(big_db: Conn, query: str) -> None:
    plan = explain(big_db, query)
    assert seq_scans_of_jobs(plan) == [], f"{query} scans pgq.jobs:\n{plan}"


# --- the Grafana dashboard ----------------------------------------------------------------

DASHBOARD = Path(__file__).resolve().parents[2] / "dashboards" / "pgq.json"
# What Grafana's PostgreSQL data source makes of the macros the panels use.
GRAFANA_MACROS = {"$__timeFilter(minute)": "minute BETWEEN now() - interval '6 hours' AND now()"}


def dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["rawSql"])
        for panel in dashboard["panels"]
        for target in panel["targets"]
    ]


@pytest.mark.parametrize(("title", "sql"), dashboard_queries(), ids=lambda v: v[:40])
def test_every_dashboard_query_runs_on_the_views(conn: Conn, title: str, sql: str) -> None:
    for macro, expansion in GRAFANA_MACROS.items():
        sql = sql.replace(macro, expansion)
    assert "$__" not in sql, f"{title}: a Grafana macro the test does not expand"
    assert "pgq.jobs" not in sql, f"{title}: dashboards read the views, not the table"
    with conn.transaction():
        add_job(conn, "a", "failed", finished="-1 minute", errors=[(1, "-1 minute")])
        add_job(conn, "a", "running", started="-1 minute", lease="30 seconds")
        add_job(conn, "a", "queued", run_at="-1 minute")
        conn.execute(
            "INSERT INTO pgq.schedules (name, task, queue, expression, grace, definition_hash)"
            " VALUES ('s', 't', 'a', '0 * * * *', '2 hours', 'h') ON CONFLICT DO NOTHING"
        )
        conn.execute(  # a worker serving another queue: queue a's job is orphaned
            "INSERT INTO pgq.workers (id, hostname, pid, version, queues, tasks, concurrency, "
            "stale_after_seconds) VALUES ('w', 'h', 1, '0', '{b}', '{}', 1, 30)"
        )
        rows = conn.execute(sql.encode()).fetchall()
    assert rows, f"{title} returned no rows"
