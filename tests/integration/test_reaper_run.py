"""reaper.run(): the loop `pgq work` and `pgq reap` use; it survives losing its connection."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from pgq import devdb, reaper
from pgq.reaper import PruneResult, ReaperConfig, ReapResult

Conn = psycopg.Connection[Any]
FAST = ReaperConfig(interval=0.05, prune_interval=None)


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def lapsed_job(conn: Conn) -> int:
    row = conn.execute(
        "INSERT INTO pgq.jobs (queue, task, state, attempts, lease_token, worker_id,"
        " lease_expires_at) VALUES ('default', 'tests.task', 'running', 1, 1, 'dead-worker',"
        " now() - interval '1 min') RETURNING id"
    ).fetchone()
    assert row is not None
    return int(row[0])


def state(conn: Conn, job_id: int) -> str:
    row = conn.execute("SELECT state::text FROM pgq.jobs WHERE id = %s", (job_id,)).fetchone()
    assert row is not None
    return str(row[0])


def reaper_pid(conn: Conn) -> int | None:
    row = conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE application_name = %s"
        " AND datname = current_database()",
        (reaper.APPLICATION_NAME,),
    ).fetchone()
    return None if row is None else int(row[0])


@pytest.fixture
def start() -> Iterator[Callable[..., threading.Event]]:
    """Start reaper.run in a thread; the test's end stops it and checks that it returned."""
    running: list[tuple[threading.Thread, threading.Event]] = []

    def start_(url: str, config: ReaperConfig = FAST, **kwargs: Any) -> threading.Event:
        stop = threading.Event()
        thread = threading.Thread(target=reaper.run, args=(url, config, stop), kwargs=kwargs)
        thread.start()
        running.append((thread, stop))
        return stop

    yield start_
    for thread, stop in running:
        stop.set()
        thread.join(10)
        assert not thread.is_alive(), "run() did not return after stop was set"


def test_run_survives_pg_terminate_backend_and_keeps_reaping(
    conn: Conn, db_url: str, start: Callable[..., threading.Event], caplog: Any
) -> None:
    caplog.set_level(logging.INFO, logger="pgq.reaper")
    start(db_url)
    first = lapsed_job(conn)
    wait_for(lambda: state(conn, first) == "queued", "the first job to be reaped")
    old_pid = reaper_pid(conn)
    assert old_pid is not None

    conn.execute("SELECT pg_terminate_backend(%s)", (old_pid,))
    wait_for(lambda: reaper_pid(conn) not in (None, old_pid), "the reaper to reconnect")
    second = lapsed_job(conn)
    wait_for(lambda: state(conn, second) == "queued", "a job lapsed after the reconnect")

    messages = [r.getMessage() for r in caplog.records if r.name == "pgq.reaper"]
    assert any("reconnecting in" in m for m in messages), messages
    assert any("connected again" in m for m in messages), messages
    assert any(f"job {second} " in m and "dead-worker" in m for m in messages), messages


def test_run_keeps_trying_while_the_database_is_down_and_stops_when_told(
    start: Callable[..., threading.Event], caplog: Any
) -> None:
    caplog.set_level(logging.INFO, logger="pgq.reaper")
    url = f"postgresql://pgq:s3cret-pw@127.0.0.1:{devdb.free_port()}/nothing"
    start(url)

    def failures() -> list[str]:
        return [r.getMessage() for r in caplog.records if "reconnecting in" in r.getMessage()]

    wait_for(lambda: len(failures()) >= 2, "two failed connection attempts")
    assert all("s3cret-pw" not in m for m in failures()), failures()
    # The fixture then sets stop and checks run() returns while it waits to retry.


def test_run_prunes_a_backlog_a_few_batches_per_pass_between_reaps(
    conn: Conn, db_url: str, start: Callable[..., threading.Event]
) -> None:
    conn.execute(
        "INSERT INTO pgq.jobs (queue, task, state, finished_at) SELECT 'default', 't',"
        " 'succeeded', now() - interval '2 days' FROM generate_series(1, 7)"
    )
    passes: list[tuple[ReapResult, PruneResult | None]] = []
    config = ReaperConfig(
        interval=0.05, prune_interval=3600, prune_batch_size=2, prune_max_batches=2
    )
    start(db_url, config, on_pass=lambda r, p: passes.append((r, p)))

    wait_for(lambda: conn.execute("SELECT count(*) FROM pgq.jobs").fetchone() == (0,), "pruning")
    wait_for(lambda: any(p is not None and p.complete for _, p in passes), "a complete prune")
    prunes = [p for _, p in passes if p is not None]
    # 7 rows in batches of 2, at most 2 full batches per pass, a reap pass in between; once
    # complete, the next prune waits prune_interval (an hour here).
    assert [(p.total, p.complete) for p in prunes] == [(4, False), (3, True)]
