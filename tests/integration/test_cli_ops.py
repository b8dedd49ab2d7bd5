"""The operator commands end to end: stats, jobs, show, retry, cancel, enqueue.

Most cases run the typer app in-process (CliRunner; a subprocess costs a second or two of
imports each), and a few run the real ``pgq`` entry point in a subprocess, so the installed
script, the exit codes and the stderr lines are proven for real too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from pgq import migrate
from pgq.cli import _register_commands, app

Conn = psycopg.Connection[Any]
PGQ = str(Path(sys.executable).parent / "pgq")
STATES = ("queued", "running", "succeeded", "failed", "cancelled")

_register_commands()


@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def one_error_line(self) -> str:
        lines = self.err.strip().splitlines()
        assert len(lines) == 1, f"expected one line on stderr, got: {self.err!r}"
        return lines[0]


def pgq(url: str, *args: str) -> Run:
    """Run the CLI in-process against ``url``."""
    result = CliRunner().invoke(app, [*args, "--database-url", url])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception  # a traceback is a bug: show it
    return Run(result.exit_code, result.stdout, result.stderr)


def pgq_process(*args: str) -> Run:
    """Run the installed ``pgq`` script in a subprocess."""
    env = {k: v for k, v in os.environ.items() if k not in ("PGQ_DATABASE_URL", "DATABASE_URL")}
    done = subprocess.run([PGQ, *args], capture_output=True, text=True, timeout=60, env=env)
    assert "Traceback" not in done.stderr, done.stderr
    return Run(done.returncode, done.stdout, done.stderr)


def add_job(
    conn: Conn,
    state: str = "queued",
    *,
    queue: str = "default",
    task: str = "tests.task",
    attempts: int = 1,
    errors: list[dict[str, Any]] | None = None,
) -> int:
    row = conn.execute(
        """
        INSERT INTO pgq.jobs (queue, task, state, attempts, max_attempts, errors, finished_at,
                              worker_id, lease_token, started_at, lease_expires_at)
        VALUES (%(queue)s, %(task)s, %(state)s::text::pgq.job_state, %(attempts)s, 3, %(errors)s,
                CASE WHEN %(state)s::text IN ('succeeded', 'failed', 'cancelled') THEN now() END,
                CASE WHEN %(state)s::text = 'running' THEN 'w-1' END,
                CASE WHEN %(state)s::text = 'running' THEN 1 ELSE 0 END,
                CASE WHEN %(state)s::text = 'running' THEN now() END,
                CASE WHEN %(state)s::text = 'running' THEN now() + interval '30 seconds' END)
        RETURNING id
        """,
        {
            "queue": queue,
            "task": task,
            "state": state,
            "attempts": attempts,
            "errors": json.dumps(errors or []),
        },
    ).fetchone()
    assert row is not None
    return int(row[0])


def state_of(conn: Conn, job_id: int) -> tuple[str, bool]:
    row = conn.execute(
        "SELECT state::text, cancel_requested FROM pgq.jobs WHERE id = %s", (job_id,)
    ).fetchone()
    assert row is not None
    return row[0], row[1]


# --- stats ----------------------------------------------------------------------------------


def test_stats_prints_the_view_as_json_and_as_a_table(db_url: str, conn: Conn) -> None:
    add_job(conn, "queued", queue="mail")
    add_job(conn, "failed", queue="reports")

    as_json = pgq(db_url, "stats", "--json")
    table = pgq(db_url, "stats")

    assert as_json.code == 0
    assert [(q["queue"], q["ready"], q["failed"]) for q in as_json.json()] == [
        ("mail", 1, 0),
        ("reports", 0, 1),
    ]
    assert set(as_json.json()[0]) == {
        "queue",
        "ready",
        "scheduled",
        "running",
        "failed",
        "succeeded_last_hour",
        "oldest_ready_seconds",
        "per_minute_last_5m",
        "paused",
        "waiting",
        "orphaned",
    }
    assert table.code == 0
    assert "ready" in table.out and "mail" in table.out and "reports" in table.out


def test_stats_of_an_empty_table(db_url: str) -> None:
    assert pgq(db_url, "stats", "--json").json() == []
    assert "no queues" in pgq(db_url, "stats").out


def test_stats_through_the_installed_script(db_url: str, conn: Conn) -> None:
    add_job(conn, "queued", queue="mail")
    run = pgq_process("stats", "--json", "--database-url", db_url)
    assert (run.code, [q["queue"] for q in run.json()]) == (0, ["mail"])


# --- jobs -----------------------------------------------------------------------------------


def test_jobs_filters_by_state_queue_task_and_limit(db_url: str, conn: Conn) -> None:
    a = add_job(conn, "failed", queue="a", task="t1")
    b = add_job(conn, "failed", queue="a", task="t2")
    c = add_job(conn, "queued", queue="b", task="t1")

    def ids(*args: str) -> list[int]:
        run = pgq(db_url, "jobs", "--json", *args)
        assert run.code == 0, run.err
        return [j["id"] for j in run.json()]

    assert ids() == [c, b, a]
    assert ids("--state", "failed") == [b, a]
    assert ids("--queue", "a", "--task", "t1") == [a]
    assert ids("--limit", "2") == [c, b]
    assert ids("--state", "running") == []


def test_jobs_table_prints_job_data_as_written(db_url: str, conn: Conn) -> None:
    job_id = add_job(conn, "failed", errors=[{"message": "bad [red]input[/red]"}])
    run = pgq(db_url, "jobs")
    assert run.code == 0
    assert str(job_id) in run.out and "bad [red]input[/red]" in run.out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--state", "done"], "state 'done' is not one of"),
        (["--queue", "a b"], "queue name 'a b'"),
        (["--limit", "0"], "limit must be between 1 and 10000"),
    ],
)
def test_jobs_rejects_bad_filters_in_one_line(db_url: str, args: list[str], message: str) -> None:
    run = pgq(db_url, "jobs", *args)
    assert run.code == 2
    assert run.one_error_line().startswith("pgq: error: ") and message in run.err


# --- show -----------------------------------------------------------------------------------


def test_show_prints_the_job_with_its_error_history(db_url: str, conn: Conn) -> None:
    errors = [
        {"attempt": 1, "at": "2026-01-01T00:00:00+00:00", "kind": "exception", "message": "m1"},
        {
            "attempt": 2,
            "at": "2026-01-01T00:01:00+00:00",
            "kind": "timeout",
            "message": "m2",
            "traceback": "Traceback (most recent call last):\n  boom",
            "worker_id": "host:1",
        },
    ]
    job_id = add_job(conn, "failed", attempts=2, errors=errors)

    as_json = pgq(db_url, "show", str(job_id), "--json")
    text = pgq(db_url, "show", str(job_id))

    assert as_json.code == 0
    shown = as_json.json()
    assert (shown["id"], shown["state"], shown["attempts"]) == (job_id, "failed", 2)
    assert shown["errors"] == errors and shown["args"] == {}
    assert text.code == 0
    assert "errors (2):" in text.out
    # Every time shown in one zone: this machine's, like the job's own fields.
    at = datetime.fromisoformat("2026-01-01T00:01:00+00:00").astimezone()
    local = at.strftime("%Y-%m-%d %H:%M:%S %Z")
    assert f"attempt 2 at {local} on worker host:1: timeout: m2" in text.out
    assert "  boom" in text.out
    created = datetime.fromisoformat(shown["created_at"]).astimezone()
    assert created.strftime("%Y-%m-%d %H:%M:%S %Z") in text.out


def test_show_prints_a_succeeded_jobs_result(db_url: str, conn: Conn) -> None:
    job_id = add_job(conn, "succeeded")
    conn.execute(
        "UPDATE pgq.jobs SET result = %s WHERE id = %s", ('{"thumbnails": 3, "ok": true}', job_id)
    )
    pending = add_job(conn, "queued")

    as_json = pgq(db_url, "show", str(job_id), "--json")
    text = pgq(db_url, "show", str(job_id))
    queued = pgq(db_url, "show", str(pending))

    assert as_json.json()["result"] == {"thumbnails": 3, "ok": True}
    (line,) = [line for line in text.out.splitlines() if line.startswith("result ")]
    assert line.split(None, 1)[1].strip() == '{"ok": true, "thumbnails": 3}'  # jsonb's order
    assert "result" not in queued.out  # no result line until the job succeeded
    assert pgq(db_url, "show", str(pending), "--json").json()["result"] is None


def test_show_with_a_bad_or_unknown_id(db_url: str) -> None:
    not_a_number = pgq(db_url, "show", "12x")
    unknown = pgq(db_url, "show", "4242")

    assert not_a_number.code == 2
    assert not_a_number.one_error_line() == "pgq: error: job id '12x' is not a number"
    assert unknown.code == 1
    assert unknown.one_error_line() == "pgq: error: job 4242: not found"


# --- retry ----------------------------------------------------------------------------------


@pytest.mark.parametrize("state", STATES)
def test_retry_in_every_state(db_url: str, conn: Conn, state: str) -> None:
    job_id = add_job(conn, state)

    run = pgq(db_url, "retry", str(job_id))

    if state in ("failed", "cancelled"):
        assert (run.code, run.out, run.err) == (0, f"retried 1 job: {job_id}\n", "")
        assert state_of(conn, job_id) == ("queued", False)
    else:
        assert run.code == 1
        assert run.one_error_line() == (
            f"pgq: job {job_id}: is {state}; only failed or cancelled jobs can be retried"
        )
        assert state_of(conn, job_id) == (state, False)


def test_retry_json_reports_what_was_retried_and_what_was_not(db_url: str, conn: Conn) -> None:
    failed = add_job(conn, "failed")
    running = add_job(conn, "running")

    run = pgq(db_url, "retry", str(failed), str(running), "99999", "--json")

    assert run.code == 1
    assert run.json() == {
        "retried": [failed],
        "skipped": [
            {"id": running, "reason": "is running; only failed or cancelled jobs can be retried"},
            {"id": 99999, "reason": "not found"},
        ],
        "resumed": 0,
        "kept_cancelled": 0,
    }


def test_retry_checks_every_id_before_acting(db_url: str, conn: Conn) -> None:
    failed = add_job(conn, "failed")
    run = pgq(db_url, "retry", str(failed), "seven")
    assert run.code == 2
    assert run.one_error_line() == "pgq: error: job id 'seven' is not a number"
    assert state_of(conn, failed) == ("failed", False)


def test_retry_failed_with_filters_in_batches_with_progress(db_url: str, conn: Conn) -> None:
    wanted = [add_job(conn, "failed", queue="mail", task="send") for _ in range(5)]
    other = add_job(conn, "failed", queue="mail", task="other")

    args = ("retry", "--failed", "--queue", "mail", "--task", "send", "--batch-size", "2")
    run = pgq(db_url, *args, "--json")

    assert run.code == 0
    assert run.json() == {
        "retried": 5,
        "skipped": 0,
        "batches": 3,
        "resumed": 0,
        "kept_cancelled": 0,
    }
    # Not a terminal: the bar's last state only, with its total.
    (bar,) = run.err.strip().splitlines()
    assert bar.startswith("retrying failed jobs") and "5/5" in bar, run.err
    assert {state_of(conn, i)[0] for i in wanted} == {"queued"}
    assert state_of(conn, other)[0] == "failed"
    assert pgq(db_url, "retry", "--failed").out == "retried 1 failed job\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give job ids, or --failed"),
        (["1", "--failed"], "give job ids, or --failed"),
        (["1", "--queue", "mail"], "--queue and --task select jobs for --failed"),
        (["--failed", "--batch-size", "0"], "batch size must be between 1 and 10000"),
    ],
)
def test_retry_usage_errors(db_url: str, args: list[str], message: str) -> None:
    run = pgq(db_url, "retry", *args)
    assert run.code == 2
    assert message in run.one_error_line()


# --- cancel ---------------------------------------------------------------------------------


@pytest.mark.parametrize("state", STATES)
def test_cancel_in_every_state(db_url: str, conn: Conn, state: str) -> None:
    job_id = add_job(conn, state)

    run = pgq(db_url, "cancel", str(job_id))

    if state == "queued":
        assert (run.code, run.out) == (0, f"cancelled 1 job: {job_id}\n")
        assert state_of(conn, job_id) == ("cancelled", False)
    elif state == "running":
        assert run.code == 0
        assert run.out == (
            f"asked the workers to stop 1 running job (at their next heartbeat): {job_id}\n"
        )
        assert state_of(conn, job_id) == ("running", True)
    else:
        assert run.code == 1
        assert run.one_error_line() == (
            f"pgq: job {job_id}: is {state}; "
            "only queued, blocked, waiting or running jobs can be cancelled"
        )
        assert state_of(conn, job_id) == (state, False)


def test_cancel_json(db_url: str, conn: Conn) -> None:
    queued, running, done = add_job(conn), add_job(conn, "running"), add_job(conn, "succeeded")

    run = pgq(db_url, "cancel", str(queued), str(running), str(done), "--json")

    assert run.code == 1
    assert run.json() == {
        "cancelled": [queued],
        "cancel_requested": [running],
        "skipped": [
            {
                "id": done,
                "reason": (
                    "is succeeded; only queued, blocked, waiting or running jobs can be cancelled"
                ),
            }
        ],
    }


def test_cancel_and_retry_through_the_installed_script(db_url: str, conn: Conn) -> None:
    queued, finished = add_job(conn), add_job(conn, "succeeded")

    cancel = pgq_process("cancel", str(queued), str(finished), "--database-url", db_url)
    retry = pgq_process("retry", str(queued), "--json", "--database-url", db_url)
    bad = pgq_process("cancel", "-3", "--database-url", db_url)

    assert (cancel.code, cancel.out) == (1, f"cancelled 1 job: {queued}\n")
    assert cancel.one_error_line().startswith(f"pgq: job {finished}: is succeeded")
    assert (retry.code, retry.json()) == (
        0,
        {"retried": [queued], "skipped": [], "resumed": 0, "kept_cancelled": 0},
    )
    assert bad.code == 2


# --- enqueue --------------------------------------------------------------------------------


def test_enqueue_with_every_option(db_url: str, conn: Conn) -> None:
    run = pgq(
        db_url,
        "enqueue",
        "shop.send_receipt",
        "--args",
        '{"order_id": 42, "note": "é"}',
        "--queue",
        "mail",
        "--delay",
        "60",
        "--priority",
        "5",
        "--max-attempts",
        "7",
        "--unique-key",
        "receipt-42",
        "--json",
    )

    assert run.code == 0, run.err
    job_id = run.json()["id"]
    assert run.json() == {
        "id": job_id,
        "task": "shop.send_receipt",
        "queue": "mail",
        "served": False,  # no worker is registered (and stderr says so)
    }
    row = conn.execute(
        "SELECT task, queue, args, priority, max_attempts, unique_key, state::text, "
        "run_at - created_at FROM pgq.jobs WHERE id = %s",
        (job_id,),
    ).fetchone()
    assert row is not None
    assert row[:7] == (
        "shop.send_receipt",
        "mail",
        {"order_id": 42, "note": "é"},
        5,
        7,
        "receipt-42",
        "queued",
    )
    assert row[7].total_seconds() == 60


def test_enqueue_defaults_and_a_held_unique_key(db_url: str, conn: Conn) -> None:
    first = pgq(db_url, "enqueue", "t.x", "--unique-key", "k")
    again = pgq(db_url, "enqueue", "t.x", "--unique-key", "k", "--json")

    assert first.code == 0
    assert first.out.startswith("enqueued job ") and "queue default" in first.out
    assert (again.code, again.json()["id"]) == (0, None)
    rows = conn.execute("SELECT queue, args, priority, max_attempts FROM pgq.jobs").fetchall()
    assert rows == [("default", {}, 0, 20)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--args", "{"], "--args is not valid JSON"),
        (["--args", '{"a": NaN}'], "--args is not valid JSON (NaN is not JSON)"),
        (["--args", "[1, 2]"], "--args must be a JSON object"),
        (["--args", '{"a": "\\u0000"}'], "NUL character"),
        (["--queue", "no/slash"], "queue name 'no/slash'"),
        (["--delay", "-1"], "delay must be between 0"),
        (["--max-attempts", "0"], "max_attempts must be between 1"),
    ],
)
def test_enqueue_rejects_bad_input_in_one_line(
    db_url: str, conn: Conn, args: list[str], message: str
) -> None:
    run = pgq(db_url, "enqueue", "t.x", *args)
    assert run.code == 2
    assert message in run.one_error_line()
    assert conn.execute("SELECT count(*) FROM pgq.jobs").fetchone() == (0,)


def test_enqueue_through_the_installed_script(db_url: str, conn: Conn) -> None:
    run = pgq_process("enqueue", "t.x", "--args", '{"n": 1}', "--database-url", db_url)
    assert run.code == 0, run.err
    assert conn.execute("SELECT task, args FROM pgq.jobs").fetchall() == [("t.x", {"n": 1})]


# --- refusing to run ----------------------------------------------------------------------

EVERY_COMMAND = [
    ["stats"],
    ["jobs"],
    ["show", "1"],
    ["retry", "1"],
    ["retry", "--failed"],
    ["cancel", "1"],
    ["enqueue", "t.x"],
    ["workers"],
    ["doctor"],
]


@pytest.mark.parametrize("command", EVERY_COMMAND, ids=lambda c: " ".join(c))
def test_every_command_refuses_a_database_without_the_schema(
    empty_db_url: str, command: list[str]
) -> None:
    run = pgq(empty_db_url, *command)
    assert run.code == 2
    assert run.one_error_line().startswith("pgq: error: the pgq schema is missing")
    assert "`pgq migrate`" in run.err


def test_commands_refuse_an_old_schema(empty_db_url: str) -> None:
    migrate.upgrade(empty_db_url, "pgq_0001")
    run = pgq_process("stats", "--database-url", empty_db_url)
    assert run.code == 2
    assert run.one_error_line() == (
        "pgq: error: the pgq schema is at version 1, this pgq needs "
        f"{migrate.SCHEMA_VERSION}; run `pgq migrate`"
    )


def test_an_unreachable_database_is_one_line_without_the_password() -> None:
    url = "postgresql://operator:s3cret@127.0.0.1:1/pgq"
    run = pgq_process("jobs", "--database-url", url)
    assert run.code == 2
    assert run.one_error_line().startswith("pgq: error: cannot connect to ")
    assert "s3cret" not in run.err + run.out
