"""Real `pgq work` processes for the acceptance tests, and the ledger their tasks write.

Workers run the task module in ``apps/`` (``--app acceptance_tasks``) against the test
database. Their output goes to a file, so a chatty worker never blocks on a full pipe;
every process a test starts is killed at teardown if it is still running.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from worker_procs import APP, PGQ, WorkerProcess, create_attempt_ledger, worker_env


@pytest.fixture
def start_worker(db_url: str, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start `pgq work --app acceptance_tasks ARGS...` on the test database (or ``url``);
    ``env`` adds to (or overrides) worker_env's variables."""
    started: list[WorkerProcess] = []

    def start(*args: str, url: str = db_url, env: dict[str, str] | None = None) -> WorkerProcess:
        log_path = tmp_path / f"worker-{len(started)}.log"
        command = [str(PGQ), "work", "--app", APP, "--database-url", url, *args]
        with log_path.open("wb") as out:
            proc = subprocess.Popen(
                command,
                env={**worker_env(url), **(env or {})},
                cwd=tmp_path,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        worker = WorkerProcess(proc, log_path, command)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if worker.proc.poll() is None:
            worker.proc.send_signal(signal.SIGKILL)
            worker.proc.wait(10)


@pytest.fixture
def ledger(conn: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    """An empty ``ledger(job_id, pid, at)`` table; returns the connection to read it."""
    conn.execute("CREATE TABLE IF NOT EXISTS ledger (job_id bigint, pid int, at timestamptz)")
    conn.execute("TRUNCATE ledger")
    return conn


@pytest.fixture
def attempt_ledger(conn: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    """Empty ``attempt_ledger(job_id, attempt, pid, at)`` and ``gates(job_id)`` tables for
    the tasks in ``apps/reaper_tasks.py``; returns the connection to read them."""
    create_attempt_ledger(conn)
    return conn


@pytest.fixture
def start_reaper(db_url: str, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start `pgq reap --interval INTERVAL` (the reaper alone) on the test database."""
    started: list[WorkerProcess] = []

    def start(interval: str = "0.5", url: str = db_url) -> WorkerProcess:
        log_path = tmp_path / f"reaper-{len(started)}.log"
        command = [str(PGQ), "reap", "--interval", interval, "--database-url", url]
        with log_path.open("wb") as out:
            proc = subprocess.Popen(
                command, env=worker_env(url), cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT
            )
        reaper = WorkerProcess(proc, log_path, command)
        started.append(reaper)
        reaper.wait_logged("reaping ")
        return reaper

    yield start
    for reaper in started:
        if reaper.proc.poll() is None:
            reaper.proc.send_signal(signal.SIGKILL)
            reaper.proc.wait(10)
