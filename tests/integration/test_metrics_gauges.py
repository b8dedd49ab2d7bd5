"""The queue gauges of pgq.metrics against a real database: sql/queue_counts_select.sql
with injected time, and the scrape-time collector with its timeout."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
from prometheus_client import CollectorRegistry
from worker_rows import last_seen, register

import pgq
from pgq import limits, store
from pgq.metrics import QueueGauges

INSERT = (
    "INSERT INTO pgq.jobs (queue, task, args, state, run_at) "
    "VALUES (%s, 't', '{}', %s, %s::timestamptz + make_interval(secs => %s))"
)


@pytest.fixture
def t0(conn: psycopg.Connection[Any]) -> datetime:
    """The database's now() when the rows were arranged; every run_at is relative to it."""
    row = conn.execute("SELECT now()").fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


@pytest.fixture
def arranged(conn: psycopg.Connection[Any], t0: datetime) -> psycopg.Connection[Any]:
    """default: 2 ready (100s and 5s late), 1 scheduled in an hour; mail: 2 running, 1
    ready now; done: only finished jobs (no live ones)."""
    rows = [
        ("default", "queued", -100),
        ("default", "queued", -5),
        ("default", "queued", 3600),
        ("mail", "running", 0),
        ("mail", "running", 0),
        ("mail", "queued", 0),
        *[("done", state, -7200) for state in ("succeeded", "failed", "cancelled")],
    ]
    with conn.cursor() as cur:
        cur.executemany(INSERT, [(queue, state, t0, secs) for queue, state, secs in rows])
    return conn


def collect(collector: QueueGauges) -> dict[str, dict[str, float]]:
    registry = CollectorRegistry()
    registry.register(collector)
    found: dict[str, dict[str, float]] = {}
    for family in registry.collect():
        for sample in family.samples:
            found.setdefault(sample.name, {})[sample.labels.get("queue", "")] = sample.value
    return found


def test_the_statement_counts_live_jobs_per_queue_in_database_time(
    arranged: psycopg.Connection[Any], t0: datetime
) -> None:
    rows = store.fetch(arranged, store.select_queue_counts(now=t0 + timedelta(seconds=10)))

    assert rows == [("default", 2, 1, 0, 110.0, False, 0), ("mail", 1, 0, 2, 10.0, False, 0)]


def test_a_job_becomes_ready_when_injected_time_reaches_its_run_at(
    arranged: psycopg.Connection[Any], t0: datetime
) -> None:
    rows = store.fetch(arranged, store.select_queue_counts(now=t0 + timedelta(hours=2)))

    assert [r[:4] for r in rows] == [("default", 3, 0, 0), ("mail", 1, 0, 2)]


def test_the_collector_reports_every_queue_with_live_jobs_and_the_worked_ones(
    db_url: str, arranged: psycopg.Connection[Any]
) -> None:
    found = collect(QueueGauges(db_url, ["default", "idle"]))

    assert found["pgq_queue_ready_jobs"] == {"default": 2, "mail": 1, "idle": 0}
    assert found["pgq_queue_scheduled_jobs"] == {"default": 1, "mail": 0, "idle": 0}
    assert found["pgq_queue_running_jobs"] == {"default": 0, "mail": 2, "idle": 0}
    oldest = found["pgq_queue_oldest_ready_seconds"]
    assert oldest["default"] >= 100 and oldest["mail"] >= 0 and oldest["idle"] == 0
    assert found["pgq_database_up"] == {"": 1}
    assert found["pgq_queue_paused"] == {"default": 0, "mail": 0, "idle": 0}
    assert found["pgq_queue_waiting_jobs"] == {"default": 0, "mail": 0, "idle": 0}


def test_waiting_workflow_jobs_have_their_gauge(db_url: str, conn: psycopg.Connection[Any]) -> None:
    pgq.chain(pgq.JobSpec("t.a", queue="mail"), pgq.JobSpec("t.b", queue="mail")).enqueue(conn)

    found = collect(QueueGauges(db_url))

    assert found["pgq_queue_waiting_jobs"] == {"mail": 1}
    assert found["pgq_queue_ready_jobs"] == {"mail": 1}


def test_a_paused_queue_is_reported_even_without_jobs(
    db_url: str, arranged: psycopg.Connection[Any]
) -> None:
    limits.pause_queue(arranged, "mail")
    limits.pause_queue(arranged, "empty")

    found = collect(QueueGauges(db_url, ["default"]))

    assert found["pgq_queue_paused"] == {"default": 0, "mail": 1, "empty": 1}
    assert found["pgq_queue_ready_jobs"] == {"default": 2, "mail": 1, "empty": 0}


def test_a_query_past_the_timeout_gives_up_and_says_so(
    db_url: str,
    arranged: psycopg.Connection[Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    with psycopg.connect(db_url) as blocker:
        blocker.execute("LOCK TABLE pgq.jobs IN ACCESS EXCLUSIVE MODE")  # until rollback
        with caplog.at_level(logging.WARNING, logger="pgq.metrics"):
            found = collect(QueueGauges(db_url, ["default"], query_timeout=0.2))
        blocker.rollback()

    assert found == {"pgq_database_up": {"": 0}}
    assert any("statement timeout" in r.getMessage() for r in caplog.records)
    # The timeout was the transaction's own: the next scrape works.
    assert collect(QueueGauges(db_url))["pgq_database_up"] == {"": 1}


def test_the_collector_reports_orphaned_jobs_and_registered_workers(
    db_url: str, conn: psycopg.Connection[Any]
) -> None:
    register(conn, "w-live", queues=("mail",), tasks={"t": "mail"})
    register(conn, "w-dead", queues=("default",), tasks={"t": "default"})
    last_seen(conn, "w-dead", "1 hour")
    for queue in ("mail", "default", "default"):
        conn.execute(INSERT, (queue, "queued", datetime.now(), 0))

    registry = CollectorRegistry()
    registry.register(QueueGauges(db_url))
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in registry.collect()
        for s in family.samples
    }

    orphaned = {k[1]: v for k, v in samples.items() if k[0] == "pgq_orphaned_jobs"}
    assert orphaned == {(("queue", "default"), ("task", "t")): 2}
    assert samples[("pgq_workers_alive", ())] == 1
    assert samples[("pgq_workers_stale", ())] == 1


def test_limits_are_gauges_per_kind_and_key(db_url: str, conn: psycopg.Connection[Any]) -> None:
    conn.execute("INSERT INTO pgq.concurrency_keys (key, max_active, active) VALUES ('api', 2, 1)")
    conn.execute(
        "INSERT INTO pgq.jobs (queue, task, state, concurrency_key) VALUES "
        "('q', 't', 'blocked', 'api'), ('q', 't', 'running', 'api')"
    )
    conn.execute(
        "INSERT INTO pgq.rate_limits (key, max_starts, period, starts) "
        "VALUES ('stripe', 10, 1, ARRAY[now(), now()])"
    )

    found = collect_labelled(QueueGauges(db_url))

    assert found["pgq_limit_max"] == {("concurrency", "api"): 2, ("rate", "stripe"): 10}
    assert found["pgq_limit_in_use"] == {("concurrency", "api"): 1, ("rate", "stripe"): 2}
    assert found["pgq_limit_waiting_jobs"] == {("concurrency", "api"): 1, ("rate", "stripe"): 0}


def collect_labelled(collector: QueueGauges) -> dict[str, dict[tuple[str, str], float]]:
    registry = CollectorRegistry()
    registry.register(collector)
    found: dict[str, dict[tuple[str, str], float]] = {}
    for family in registry.collect():
        for sample in family.samples:
            if "kind" in sample.labels:
                key = (sample.labels["kind"], sample.labels["key"])
                found.setdefault(sample.name, {})[key] = sample.value
    return found
