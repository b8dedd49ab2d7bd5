"""`pgq workers`, the orphan counts of `pgq stats`, and `pgq enqueue`'s warning, end to end.

Workers are registered with the heartbeat's own upsert (worker_rows.register);
the CLI runs in-process (CliRunner), once through the installed script.
"""

from __future__ import annotations

from typing import Any

import psycopg
from test_cli_ops import pgq, pgq_process
from worker_rows import last_seen, register

from pgq.worker_registry import STALE_AFTER

Conn = psycopg.Connection[Any]
WARNING = "pgq: warning: no live worker serves task"


def test_enqueue_warns_when_no_worker_runs_at_all_and_still_enqueues(
    db_url: str, conn: Conn
) -> None:
    run = pgq(db_url, "enqueue", "t.x")
    assert run.code == 0
    assert run.out.startswith("enqueued job ")
    assert run.err.strip() == (
        f"{WARNING} t.x on queue default; the job waits until one does (no worker is "
        "running: start `pgq work --app ...` for it)"
    )
    assert conn.execute("SELECT task, queue FROM pgq.jobs").fetchall() == [("t.x", "default")]


def test_enqueue_names_the_queue_a_live_worker_serves_the_task_on(db_url: str, conn: Conn) -> None:
    register(conn, "w1", queues=("emails",), tasks={"t.x": "emails"})
    run = pgq(db_url, "enqueue", "t.x", "--json")
    assert (run.code, run.json()["served"]) == (0, False)
    assert "live workers run t.x on queue emails: pass --queue emails" in run.err


def test_enqueue_says_when_live_workers_do_not_register_the_task(db_url: str, conn: Conn) -> None:
    register(conn, "w1", queues=("default",), tasks={"t.other": "default"})
    run = pgq(db_url, "enqueue", "t.x")
    assert "no live worker registers t.x" in run.err


def test_enqueue_is_quiet_when_a_live_worker_serves_the_task_there(db_url: str, conn: Conn) -> None:
    register(conn, "w1", queues=("emails",), tasks={"t.x": "emails"})
    run = pgq(db_url, "enqueue", "t.x", "--queue", "emails", "--json")
    assert (run.code, run.err, run.json()["served"]) == (0, "", True)


def test_enqueue_warns_when_the_only_worker_is_dead(db_url: str, conn: Conn) -> None:
    register(conn, "w1", queues=("default",), tasks={"t.x": "default"})
    last_seen(conn, "w1", f"{STALE_AFTER + 1} seconds")
    run = pgq(db_url, "enqueue", "t.x")
    assert run.code == 0
    assert WARNING in run.err and "no worker is running" in run.err


def test_workers_lists_every_registered_worker_and_the_orphans(db_url: str, conn: Conn) -> None:
    register(conn, "w-live", queues=("emails", "default"), tasks={"t.a": "emails"}, running=2)
    register(conn, "w-dead", queues=("reports",), tasks={"t.r": "reports"})
    last_seen(conn, "w-dead", f"{STALE_AFTER + 10} seconds")
    conn.execute("INSERT INTO pgq.jobs (queue, task) VALUES ('reports', 't.r')")

    as_json = pgq(db_url, "workers", "--json")
    table = pgq(db_url, "workers")

    assert as_json.code == 0
    listed = {w["id"]: w for w in as_json.json()["workers"]}
    assert set(listed) == {"w-live", "w-dead"}
    assert (listed["w-live"]["alive"], listed["w-live"]["running"]) == (True, 2)
    assert listed["w-live"]["queues"] == ["emails", "default"]
    assert listed["w-live"]["tasks"] == ["t.a"]
    assert listed["w-dead"]["alive"] is False
    assert [(o["queue"], o["task"], o["queued"]) for o in as_json.json()["orphaned"]] == [
        ("reports", "t.r", 1)
    ]
    assert table.code == 0
    assert "w-live" in table.out and "w-dead" in table.out and "NO" in table.out
    assert "orphaned: 1 queued job(s) of task t.r on queue reports" in table.out


def test_workers_without_any(db_url: str) -> None:
    assert pgq(db_url, "workers", "--json").json() == {"workers": [], "orphaned": []}
    assert "no registered workers" in pgq(db_url, "workers").out


def test_stats_counts_orphaned_jobs_per_queue(db_url: str, conn: Conn) -> None:
    register(conn, "w1", queues=("emails",), tasks={"t.a": "emails"})
    for queue, task in [("emails", "t.a"), ("emails", "t.b"), ("default", "t.a")] * 2:
        conn.execute("INSERT INTO pgq.jobs (queue, task) VALUES (%s, %s)", (queue, task))

    as_json = pgq(db_url, "stats", "--json")
    table = pgq(db_url, "stats")

    assert {q["queue"]: q["orphaned"] for q in as_json.json()} == {"default": 2, "emails": 2}
    assert "orphaned: 2 jobs of task t.a on queue default" in table.out
    assert "orphaned: 2 jobs of task t.b on queue emails" in table.out


def test_workers_through_the_installed_script(db_url: str, conn: Conn) -> None:
    register(conn, "w1")
    run = pgq_process("workers", "--json", "--database-url", db_url)
    assert (run.code, [w["id"] for w in run.json()["workers"]]) == (0, ["w1"])


def test_enqueue_by_a_role_that_cannot_read_the_registry_still_enqueues(
    db_url: str, conn: Conn
) -> None:
    role = "pgq_producer_only"
    conn.execute(f"DROP ROLE IF EXISTS {role}")
    conn.execute(f"CREATE ROLE {role} LOGIN")
    try:
        conn.execute(f"GRANT USAGE ON SCHEMA pgq TO {role}")
        conn.execute(f"GRANT SELECT, INSERT ON pgq.jobs TO {role}")
        conn.execute(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA pgq TO {role}")
        url = db_url.replace("postgres@", f"{role}@", 1)
        run = pgq(url, "enqueue", "t.x", "--json")
        assert (run.code, run.json()["served"]) == (0, None), run.err
        assert "cannot check for a worker serving it" in run.err
        assert conn.execute("SELECT task FROM pgq.jobs").fetchall() == [("t.x",)]
    finally:
        conn.execute(f"DROP OWNED BY {role}")
        conn.execute(f"DROP ROLE {role}")
