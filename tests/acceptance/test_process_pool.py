"""`pgq work --pool process` as a real process: sync tasks run in child processes that a
timeout stops, that are replaced after N jobs or past a memory limit, whose death counts
an attempt, and that go away with the worker.

The tasks (``apps/pool_tasks.py``) note in ``pool_events`` which process ran which
attempt; the tests read that and the job rows, and look at processes through /proc.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pool_events import create_pool_events, descendants, events, open_gate, pid_alive
from worker_procs import WorkerProcess, job, run_pgq, wait_for

import pgq

APP = "pool_tasks"


@pytest.fixture
def pool(
    start_worker: Callable[..., WorkerProcess], conn: psycopg.Connection[Any]
) -> Callable[..., WorkerProcess]:
    """Start `pgq work --app pool_tasks --pool process ARGS...` and wait until it runs."""
    create_pool_events(conn)

    def start(*args: str) -> WorkerProcess:
        worker = start_worker("--app", APP, "--pool", "process", "--lease", "3", *args)
        worker.wait_started()
        assert "sync tasks in child processes" in worker.log()
        return worker

    return start


def wait_state(conn: psycopg.Connection[Any], job_id: int, state: str) -> dict[str, Any]:
    wait_for(lambda: job(conn, job_id)["state"] == state, what=f"job {job_id} {state}")
    return job(conn, job_id)


def test_a_cpu_bound_task_past_its_timeout_is_killed_and_retried(
    pool: Callable[..., WorkerProcess], conn: psycopg.Connection[Any]
) -> None:
    worker = pool("--concurrency", "1")
    # pool.spin: timeout=1, max_attempts=2, spins forever without looking at its context.
    job_id = pgq.enqueue(conn, "pool.spin", max_attempts=2)

    row = wait_state(conn, job_id, "failed")

    [(first, first_pid, _), (second, second_pid, _)] = events(conn, job_id)
    assert (first, second) == (1, 2)
    assert first_pid != second_pid, "each attempt ran in a new child"
    assert first_pid != worker.pid and second_pid != worker.pid
    for pid in (first_pid, second_pid):
        wait_for(lambda pid=pid: not pid_alive(pid), what=f"child {pid} gone")
    assert row["attempts"] == 2
    assert [e["kind"] for e in row["errors"]] == ["timeout", "timeout"]
    assert f"child process (pid {first_pid}) was stopped" in row["errors"][0]["message"]
    # The worker goes on, with a new child.
    after = pgq.enqueue(conn, "pool.pid")
    wait_state(conn, after, "succeeded")
    assert worker.proc.poll() is None


def test_a_child_deaf_to_sigterm_is_killed_and_its_timeout_recorded(
    pool: Callable[..., WorkerProcess], conn: psycopg.Connection[Any]
) -> None:
    worker = pool("--concurrency", "1")
    job_id = pgq.enqueue(conn, "pool.deaf_to_sigterm", max_attempts=1)

    row = wait_state(conn, job_id, "failed")

    [(_, child, _)] = events(conn, job_id)
    assert not pid_alive(child)
    assert [e["kind"] for e in row["errors"]] == ["timeout"]
    assert f"child {child} did not exit within 5s of SIGTERM (job {job_id}): SIGKILL" in (
        worker.log()
    )


def test_a_sigterm_the_worker_did_not_send_is_ignored_by_its_child(
    pool: Callable[..., WorkerProcess], conn: psycopg.Connection[Any]
) -> None:
    worker = pool("--concurrency", "1")
    job_id = pgq.enqueue(conn, "pool.until_gate")
    [(_, child, _)] = wait_for(lambda: events(conn, job_id), what="the job started")

    os.kill(child, signal.SIGTERM)  # as a process manager signalling the whole group

    worker.wait_logged(f"worker (pid {worker.pid}) stops running jobs itself")
    open_gate(conn, job_id)
    row = wait_state(conn, job_id, "succeeded")
    assert row["attempts"] == 1
    assert [e for _, _, e in events(conn, job_id)][-1] == "returning"
    assert pid_alive(child), "the same child goes on"


def test_a_leaking_task_is_recycled_after_n_jobs(
    pool: Callable[..., WorkerProcess], conn: psycopg.Connection[Any]
) -> None:
    pool("--concurrency", "1", "--max-jobs-per-child", "3")
    ids = [pgq.enqueue(conn, "pool.leak") for _ in range(7)]

    for job_id in ids:
        wait_state(conn, job_id, "succeeded")

    pids = [events(conn, job_id)[0][1] for job_id in ids]
    assert pids[0] == pids[1] == pids[2]
    assert pids[3] == pids[4] == pids[5]
    assert len({pids[0], pids[3], pids[6]}) == 3, f"a new child every 3 jobs: {pids}"
    for pid in pids[:6]:
        wait_for(lambda pid=pid: not pid_alive(pid), what=f"retired child {pid} gone")


def test_a_child_over_the_memory_limit_is_replaced_after_its_job(
    pool: Callable[..., WorkerProcess], conn: psycopg.Connection[Any]
) -> None:
    # pool.leak keeps 30 MB per job: a child passes 100 MB on its third or fourth job
    # (an interpreter with pgq and psycopg imported is some 40 MB), never on its first.
    worker = pool("--concurrency", "1", "--max-child-memory", "100")
    ids = [pgq.enqueue(conn, "pool.leak") for _ in range(6)]

    for job_id in ids:
        wait_state(conn, job_id, "succeeded")

    pids = [events(conn, job_id)[0][1] for job_id in ids]
    runs = [pids.count(pid) for pid in dict.fromkeys(pids)]
    assert len(runs) >= 2, f"the child was replaced: {pids}"
    assert all(2 <= n <= 4 for n in runs[:-1]), f"replaced once over 100 MB: {pids}"
    assert "--max-child-memory 100" in worker.log()


def test_kill_9_of_a_child_mid_job_counts_the_attempt_and_the_job_is_retried(
    pool: Callable[..., WorkerProcess], conn: psycopg.Connection[Any]
) -> None:
    worker = pool("--concurrency", "2")
    # pool.die_once: attempt 1 waits forever, attempt 2 returns.
    job_id = pgq.enqueue(conn, "pool.die_once")
    [(_, child, _)] = wait_for(lambda: events(conn, job_id), what="attempt 1 started")
    assert child != worker.pid

    os.kill(child, signal.SIGKILL)

    row = wait_state(conn, job_id, "succeeded")
    assert row["attempts"] == 2
    [error] = row["errors"]
    assert (error["attempt"], error["kind"]) == (1, "child_died")
    assert f"pid {child}" in error["message"] and "SIGKILL" in error["message"]
    [(one, first, _), (two, second, _)] = events(conn, job_id)
    assert (one, two) == (1, 2)
    assert first == child and second != child
    after = pgq.enqueue(conn, "pool.pid")
    wait_state(conn, after, "succeeded")
    assert worker.proc.poll() is None


def test_sigterm_shuts_the_worker_and_its_children_down_cleanly(
    pool: Callable[..., WorkerProcess], conn: psycopg.Connection[Any]
) -> None:
    worker = pool("--concurrency", "3", "--grace", "2")
    polite = pgq.enqueue(conn, "pool.until_stop")  # returns once ctx.should_stop()
    deaf = pgq.enqueue(conn, "pool.forever")  # ignores everything
    wait_for(lambda: events(conn, polite) and events(conn, deaf), what="both jobs started")
    children = descendants(worker.pid)
    [(_, deaf_child, _)] = events(conn, deaf)

    worker.signal(signal.SIGTERM)

    assert worker.wait_exit(30) == 0
    assert events(conn, polite)[-1][2] == "stopped: shutdown", "the child saw the shutdown"
    assert job(conn, polite)["state"] == "succeeded"
    row = job(conn, deaf)
    # Stopped after the grace and given back, not counted: like a thread pool's release.
    assert (row["state"], row["attempts"], row["errors"]) == ("queued", 0, [])
    assert deaf_child in children
    # Every child was gone before the worker exited; the fork server (and multiprocessing's
    # resource tracker) end when their pipe from the worker closes.
    assert not pid_alive(deaf_child)
    for pid in children:
        wait_for(lambda pid=pid: not pid_alive(pid), what=f"process {pid} gone")
    assert "stopped: " in worker.log()


def test_kill_9_of_the_worker_takes_its_children_with_it(
    pool: Callable[..., WorkerProcess], conn: psycopg.Connection[Any]
) -> None:
    worker = pool("--concurrency", "1")
    job_id = pgq.enqueue(conn, "pool.forever")
    [(_, child, _)] = wait_for(lambda: events(conn, job_id), what="the job started")

    worker.signal(signal.SIGKILL)
    worker.wait_exit(10)

    # Left running, the child would run its attempt beside the next one once the lease
    # lapses and the reaper gives the job to another worker.
    wait_for(lambda: not pid_alive(child), what=f"child {child} gone with its worker")


def test_async_tasks_stay_on_the_loop(
    pool: Callable[..., WorkerProcess], conn: psycopg.Connection[Any], ledger: Any
) -> None:
    worker = pool()
    job_id = pgq.enqueue(conn, "acc.record_async")
    wait_state(conn, job_id, "succeeded")
    [(pid,)] = conn.execute("SELECT pid FROM ledger WHERE job_id = %s", (job_id,)).fetchall()
    assert pid == worker.pid


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--pool", "fork"], "--pool 'fork' is not one of thread, process"),
        (["--max-jobs-per-child", "3"], "--max-jobs-per-child applies to child processes"),
        (["--max-child-memory", "100"], "--max-child-memory applies to child processes"),
    ],
)
def test_pool_options_that_cannot_work_are_refused(
    db_url: str, tmp_path: Path, args: list[str], said: str
) -> None:
    result = run_pgq(["work", "--app", APP, "--burst", *args], db_url, tmp_path)
    assert result.returncode == 2
    assert said in result.stderr
