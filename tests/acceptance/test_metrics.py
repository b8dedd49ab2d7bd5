"""`pgq work --metrics-port`: Prometheus metrics scraped over HTTP from a real worker.

The worker runs ``apps/observe_tasks.py``: one task per outcome, and a long task that
keeps a job running while the test scrapes. Counters are checked exactly per queue and
task, the histograms by their counts, and the queue gauges against the database.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from observe import (
    APP,
    create_events_table,
    events_of,
    free_port,
    scrape,
    series,
    states,
    value,
)
from worker_procs import APPS, PGQ, WorkerProcess, run_pgq, wait_for, worker_env

import pgq


@pytest.fixture
def events(conn: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    create_events_table(conn)
    return conn


@pytest.fixture
def start(
    start_worker: Callable[..., WorkerProcess], events: psycopg.Connection[Any]
) -> Callable[..., WorkerProcess]:
    """Start `pgq work --app observe_tasks ARGS...` (the fixture's --app is only a default)."""

    def run(*args: str) -> WorkerProcess:
        worker = start_worker("--app", APP, *args)
        worker.wait_started()
        return worker

    return run


def test_counters_histograms_and_gauges_after_real_jobs(
    start: Callable[..., WorkerProcess], conn: psycopg.Connection[Any]
) -> None:
    oks = [pgq.enqueue(conn, "obs.ok") for _ in range(3)]
    flaky = pgq.enqueue(conn, "obs.flaky")
    broken = pgq.enqueue(conn, "obs.broken", queue="mail", max_attempts=2)
    failing = pgq.enqueue(conn, "obs.fail", queue="mail")
    snoozing = pgq.enqueue(conn, "obs.snooze")
    for _ in range(2):
        pgq.enqueue(conn, "obs.ok", delay=3600)  # scheduled, not run while the test looks
    for _ in range(4):
        pgq.enqueue(conn, "nobody.runs", queue="other")  # ready in a queue nobody works
    finite = [*oks, flaky, broken, failing, snoozing]
    expected_states = ["succeeded"] * 4 + ["failed", "failed", "succeeded"]
    port = free_port()

    worker = start(
        "--metrics-port", str(port), "-q", "default", "-q", "mail", "-q", "slow", "--lease", "3"
    )
    wait_for(lambda: states(conn, finite) == expected_states, what="every job finished")
    waiting = pgq.enqueue(conn, "obs.wait_sync", queue="slow")
    wait_for(lambda: events_of(conn, waiting) == ["started"], what="the long job started")
    samples = scrape(port)

    counted = {
        ("default", "obs.ok"): {"started": 3, "succeeded": 3},
        ("default", "obs.flaky"): {"started": 2, "retried": 1, "succeeded": 1},
        ("mail", "obs.broken"): {"started": 2, "retried": 1, "failed": 1},
        ("mail", "obs.fail"): {"started": 1, "failed": 1},
        ("default", "obs.snooze"): {"started": 2, "snoozed": 1, "succeeded": 1},
        ("slow", "obs.wait_sync"): {"started": 1},
    }
    kinds = ["started", "succeeded", "retried", "failed", "snoozed", "cancelled", "released"]
    for (queue, task), counts in counted.items():
        labels = {"queue": queue, "task": task}
        got = {kind: value(samples, f"pgq_jobs_{kind}_total", **labels) for kind in kinds}
        assert got == {kind: float(counts.get(kind, 0)) for kind in kinds}, (queue, task)
        finished = sum(counts.get(k, 0) for k in kinds if k != "started")
        assert value(samples, "pgq_job_duration_seconds_count", **labels) == finished
        assert value(samples, "pgq_queue_lag_seconds_count", **labels) == counts["started"]
        assert value(samples, "pgq_lease_lost_total", **labels) == 0
    # One series per (queue, task) that ran here: nothing for queues or tasks that did not.
    assert {dict(labels)["task"] for labels in series(samples, "pgq_jobs_started_total")} == {
        task for _, task in counted
    }

    gauges = {
        name: {dict(labels)["queue"]: v for labels, v in series(samples, name).items()}
        for name in ("pgq_queue_ready_jobs", "pgq_queue_scheduled_jobs", "pgq_queue_running_jobs")
    }
    assert gauges == {
        "pgq_queue_ready_jobs": {"default": 0, "mail": 0, "slow": 0, "other": 4},
        "pgq_queue_scheduled_jobs": {"default": 2, "mail": 0, "slow": 0, "other": 0},
        "pgq_queue_running_jobs": {"default": 0, "mail": 0, "slow": 1, "other": 0},
    }
    assert gauges == gauges_from_the_view(conn, ["default", "mail", "slow"])
    assert value(samples, "pgq_database_up") == 1
    assert value(samples, "pgq_queue_oldest_ready_seconds", queue="other") > 0  # type: ignore[operator]
    assert worker.proc.poll() is None


def test_a_lost_lease_is_counted_once_and_nothing_is_written(
    start: Callable[..., WorkerProcess], conn: psycopg.Connection[Any]
) -> None:
    port = free_port()
    worker = start("--metrics-port", str(port), "-q", "slow", "--lease", "3", "--no-reaper")
    waiting = pgq.enqueue(conn, "obs.wait_sync", queue="slow")
    wait_for(lambda: events_of(conn, waiting) == ["started"], what="the long job started")

    # Another holder took the job: the worker's token no longer matches.
    conn.execute("UPDATE pgq.jobs SET lease_token = lease_token + 1 WHERE id = %s", (waiting,))
    # The heartbeat notices and the task stops; the job is not ours, so nothing is written.
    wait_for(lambda: "ended after its lease was lost" in worker.log(), what="the task's end")

    samples = scrape(port)
    labels = {"queue": "slow", "task": "obs.wait_sync"}
    assert value(samples, "pgq_lease_lost_total", **labels) == 1
    assert value(samples, "pgq_jobs_released_total", **labels) == 0
    assert value(samples, "pgq_job_duration_seconds_count", **labels) == 0
    assert events_of(conn, waiting) == ["started", "stopped: lease_lost"]


def test_without_prometheus_client_metrics_port_is_a_one_line_error(
    db_url: str, tmp_path: Path
) -> None:
    # A package of that name that cannot be imported, ahead of the real one on the path.
    shadow = tmp_path / "shadow" / "prometheus_client"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('not installed')\n")
    env = {**worker_env(db_url), "PYTHONPATH": os.pathsep.join([str(shadow.parent), str(APPS)])}
    command = [str(PGQ), "work", "--app", APP, "--metrics-port", str(free_port()), "--burst"]

    result = subprocess.run(
        command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )

    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "pgq: error: --metrics-port needs prometheus_client: pip install 'pgq-jobs[metrics]'"
    )
    assert "Traceback" not in result.stderr


def test_a_port_in_use_is_a_one_line_error(db_url: str, tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]

        result = run_pgq(["work", "--app", APP, "--metrics-port", str(port)], db_url, tmp_path)

    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"pgq: error: cannot serve metrics on 0.0.0.0:{port}: Address already in use; "
        "choose another --metrics-port"
    )
    assert "Traceback" not in result.stderr


def gauges_from_the_view(
    conn: psycopg.Connection[Any], worked: list[str]
) -> dict[str, dict[str, float]]:
    """The same gauges from pgq.queue_stats: every queue it lists, plus the worked ones."""
    rows = conn.execute("SELECT queue, ready, scheduled, running FROM pgq.queue_stats").fetchall()
    by_queue = {queue: (0, 0, 0) for queue in worked}
    by_queue.update({row[0]: row[1:] for row in rows})
    names = ["pgq_queue_ready_jobs", "pgq_queue_scheduled_jobs", "pgq_queue_running_jobs"]
    return {
        name: {queue: float(counts[i]) for queue, counts in by_queue.items()}
        for i, name in enumerate(names)
    }
