"""`pgq reap` and `pgq prune` end to end: the installed script in a subprocess for the real
runs, the typer app in-process for the argument errors (a subprocess costs a second)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from pgq.cli import _register_commands, app

Conn = psycopg.Connection[Any]
PGQ = str(Path(sys.executable).parent / "pgq")
SECRET = "s3cret-pw"

_register_commands()


def pgq(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PGQ_DATABASE_URL", "DATABASE_URL")}
    done = subprocess.run([PGQ, *args], capture_output=True, text=True, timeout=60, env=env)
    assert "Traceback" not in done.stderr, done.stderr
    return done


def assert_one_line_error(code: int, stderr: str, *needles: str) -> None:
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pgq: error: "), stderr
    for needle in needles:
        assert needle in lines[0]


def with_password(url: str) -> str:
    # Trust authentication ignores the password; it is there to prove it never shows.
    return url.replace("postgresql://postgres@", f"postgresql://postgres:{SECRET}@", 1)


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def lapsed_job(conn: Conn, attempts: int = 1, max_attempts: int = 20) -> int:
    row = conn.execute(
        "INSERT INTO pgq.jobs (queue, task, state, attempts, max_attempts, lease_token,"
        " worker_id, lease_expires_at) VALUES ('default', 'tests.task', 'running', %s, %s, 1,"
        " 'dead-worker', now() - interval '1 min') RETURNING id",
        (attempts, max_attempts),
    ).fetchone()
    assert row is not None
    return int(row[0])


def finished_jobs(conn: Conn, state: str, age: str, count: int) -> None:
    conn.execute(
        "INSERT INTO pgq.jobs (queue, task, state, finished_at) SELECT 'default', 't', %s,"
        " now() - %s::interval FROM generate_series(1, %s)",
        (state, age, count),
    )


def test_reap_once_json(conn: Conn, db_url: str) -> None:
    retried = lapsed_job(conn)
    failed = lapsed_job(conn, attempts=3, max_attempts=3)

    done = pgq("reap", "--once", "--json", "--database-url", db_url)

    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert {k: out[k] for k in ("reaped", "requeued", "failed", "cancelled", "locked_out")} == {
        "reaped": 2,
        "requeued": 1,
        "failed": 1,
        "cancelled": 0,
        "locked_out": False,
    }
    assert [(j["id"], j["state"], j["worker_id"]) for j in out["jobs"]] == [
        (retried, "queued", "dead-worker"),
        (failed, "failed", "dead-worker"),
    ]


def test_reap_once_prints_a_summary(conn: Conn, db_url: str) -> None:
    lapsed_job(conn)

    done = pgq("reap", "--once", "--database-url", with_password(db_url))

    assert done.returncode == 0, done.stderr
    assert done.stdout == "reaped 1 jobs: 1 requeued, 0 failed, 0 cancelled\n"
    assert SECRET not in done.stderr + done.stdout


def test_prune_json_counts_rows_and_batches(conn: Conn, db_url: str) -> None:
    finished_jobs(conn, "succeeded", "2 hours", 5)
    finished_jobs(conn, "succeeded", "10 minutes", 1)
    finished_jobs(conn, "failed", "40 days", 2)

    done = pgq(
        "prune", "--succeeded-after", "1h", "--failed-after", "never", "--batch-size", "2",
        "--json", "--database-url", db_url,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "deleted": {"succeeded": 5, "cancelled": 0, "failed": 0},
        "total": 5,
        "batches": 4,  # succeeded 2 + 2 + 1, cancelled 0; failed is kept forever
        "locked_out": False,
        "complete": True,
    }
    left = conn.execute("SELECT state::text, count(*) FROM pgq.jobs GROUP BY 1 ORDER BY 1")
    assert left.fetchall() == [("failed", 2), ("succeeded", 1)]


def test_prune_with_the_defaults_prints_totals(conn: Conn, db_url: str) -> None:
    finished_jobs(conn, "succeeded", "25 hours", 3)
    finished_jobs(conn, "cancelled", "8 days", 1)
    finished_jobs(conn, "failed", "29 days", 1)

    done = pgq("prune", "--database-url", db_url)

    assert done.returncode == 0, done.stderr
    assert done.stdout == (
        "deleted 4 finished jobs (3 succeeded, 1 cancelled, 0 failed) in 3 batches\n"
    )


@pytest.mark.parametrize("command", [["reap", "--once"], ["prune"], ["reap"]])
def test_both_refuse_to_run_without_the_schema(empty_db_url: str, command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--database-url", empty_db_url])
    assert_one_line_error(result.exit_code, result.stderr, "pgq migrate")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["prune", "--failed-after", "3x"], "--failed-after: '3x' is not a duration"),
        (["prune", "--succeeded-after", "-1d"], "--succeeded-after"),
        (["reap", "--interval", "0"], "--interval must be more than 0"),
        (["reap", "--interval", "never"], "--interval: 'never' is not a duration"),
    ],
)
def test_bad_durations_are_one_line_errors(db_url: str, args: list[str], needle: str) -> None:
    result = CliRunner().invoke(app, [*args, "--database-url", db_url])
    assert_one_line_error(result.exit_code, result.stderr, needle)


def test_unreachable_database_is_a_one_line_error() -> None:
    url = f"postgresql://postgres:{SECRET}@127.0.0.1:1/nothing"
    result = CliRunner().invoke(app, ["reap", "--once", "--database-url", url])
    assert_one_line_error(result.exit_code, result.stderr, "cannot connect")
    assert SECRET not in result.stderr


def test_reap_loop_reaps_logs_and_exits_0_on_sigterm(conn: Conn, db_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PGQ_DATABASE_URL", "DATABASE_URL")}
    args = [PGQ, "reap", "--interval", "0.1", "--json", "--database-url", with_password(db_url)]
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        job_id = lapsed_job(conn)
        wait_for(
            lambda: (
                conn.execute("SELECT state FROM pgq.jobs WHERE id = %s", (job_id,)).fetchone()
                == ("queued",)
            ),
            "`pgq reap` to reap the job",
        )
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()

    assert proc.returncode == 0, err
    assert "Traceback" not in err and SECRET not in err + out
    assert f"job {job_id} " in err and "dead-worker" in err  # the log line
    passes = [json.loads(line) for line in out.splitlines()]
    assert [j["id"] for p in passes for j in p["reap"]["jobs"]] == [job_id]
