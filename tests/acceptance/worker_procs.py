"""Helpers for the acceptance tests: `pgq work` subprocesses and bounded waits."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

APPS = Path(__file__).parent / "apps"
PGQ = Path(sys.executable).with_name("pgq")
WAIT_TIMEOUT = 30.0  # seconds a bounded wait may take before the test fails
APP = "acceptance_tasks"


def wait_for(
    condition: Callable[[], Any], timeout: float = WAIT_TIMEOUT, what: str = "condition"
) -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not met within {timeout}s")
        time.sleep(0.02)


def worker_env(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGQ_")}
    env.pop("DATABASE_URL", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(APPS), env.get("PYTHONPATH")]))
    env["PGQ_DATABASE_URL"] = url  # the ledger's own connections use it
    env["COLUMNS"] = "200"  # typer's help and errors are laid out for this width
    return env


def run_pgq(
    args: list[str],
    url: str,
    cwd: Path,
    timeout: float = 60,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``pgq <args>`` to completion (for commands that exit by themselves); ``env``
    adds to (or overrides) :func:`worker_env`."""
    return subprocess.run(
        [str(PGQ), *args],
        env={**worker_env(url), **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass
class WorkerProcess:
    """A `pgq work` subprocess and its log file."""

    proc: subprocess.Popen[bytes]
    log_path: Path
    args: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_started(self) -> None:
        wait_for(
            lambda: "started:" in self.log() or self.proc.poll() is not None,
            what=f"worker {self.pid} startup",
        )
        assert self.proc.poll() is None, f"the worker exited early:\n{self.log()}"

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait_exit(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"worker {self.pid} still running after {timeout}s:\n{self.log()}")

    def cpu_seconds(self) -> float:
        """User + system CPU time the process has used so far (all its threads)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rpartition(")")[2].split()
        utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
        return (utime + stime) / os.sysconf("SC_CLK_TCK")

    def wait_logged(self, text: str, timeout: float = WAIT_TIMEOUT) -> None:
        """Wait until ``text`` appears in the log; fail at once if the process exits first."""
        wait_for(
            lambda: text in self.log() or self.proc.poll() is not None,
            timeout,
            f"{text!r} in the log of {self.pid}",
        )
        assert text in self.log(), f"process {self.pid} exited first:\n{self.log()}"

    def worker_id(self) -> str:
        """The id a started worker writes into ``worker_id`` (from its "started" line)."""
        self.wait_logged(" started: ")
        line = next(ln for ln in self.log().splitlines() if " started: " in ln)
        return line.split("worker ", 1)[1].split(" started: ", 1)[0]

    def is_stopped(self) -> bool:
        """True while the process is stopped by a signal (SIGSTOP): state T in proc(5)."""
        state = Path(f"/proc/{self.pid}/stat").read_text().rpartition(")")[2].split()[0]
        return state == "T"


def create_attempt_ledger(conn: psycopg.Connection[Any]) -> None:
    """Empty ``attempt_ledger`` and ``gates`` tables for the tasks in apps/reaper_tasks.py."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS attempt_ledger "
        "(job_id bigint, attempt int, pid int, at timestamptz)"
    )
    conn.execute("CREATE TABLE IF NOT EXISTS gates (job_id bigint PRIMARY KEY)")
    conn.execute("TRUNCATE attempt_ledger, gates")


def db_now(conn: psycopg.Connection[Any]) -> datetime:
    row = conn.execute("SELECT now()").fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


def scalar(conn: psycopg.Connection[Any], query: str, params: Any = None) -> Any:
    row = conn.execute(query, params).fetchone()  # type: ignore[arg-type]
    assert row is not None
    return row[0]


def job(conn: psycopg.Connection[Any], job_id: int) -> dict[str, Any]:
    cur = conn.execute("SELECT * FROM pgq.jobs WHERE id = %s", (job_id,))
    names = [c.name for c in cur.description or []]
    values = cur.fetchone()
    assert values is not None
    return dict(zip(names, values, strict=True))
