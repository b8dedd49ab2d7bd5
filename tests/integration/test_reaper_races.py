"""The reaper racing a worker, with two connections stepped by hand in every order.

The worker's side uses the worker's own statements (finish, heartbeat, claim), so these
tests check the two sides' fences against each other. Three orders, each for a worker
that completes the job, extends its lease, or gives it up and has it re-claimed:

1. the worker's write is in flight (row locked, not committed) when the reaper runs;
2. the reaper has read the job (its statement's snapshot says "running, lapsed") when the
   worker's write commits, and only then reaches the row;
3. the reaper has written (row locked, not committed) when the worker writes.

Order 2 happens inside one statement, so the test pauses the reaper's statement at the
row: on the reaper's connection a test-only ``<`` for timestamptz shadows the built-in one
(``search_path`` puts its schema before ``pg_catalog``) and, the first time it compares
the marked lease, waits on an advisory lock the test holds. Every plan PostgreSQL might
pick compares a row before it locks it, so the pause always falls between read and write.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from pgq import store
from pgq.reaper import ReapResult, reap_once
from pgq.retry import DEFAULT_BACKOFF

Conn = psycopg.Connection[Any]
MARKED_LEASE = datetime(2001, 2, 3, 4, 5, 6, tzinfo=UTC)  # lapsed long ago; easy to spot
GATE_KEY = 424242
WORKER_ID = "worker-1"
TASK = "tests.task"

PAUSE_DDL = f"""
CREATE SCHEMA pgq_test_pause;
CREATE FUNCTION pgq_test_pause.lt(a timestamptz, b timestamptz) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF a = '{MARKED_LEASE.isoformat()}'::timestamptz
       AND coalesce(current_setting('pgq_test.paused', true), '') = '' THEN
        PERFORM set_config('pgq_test.paused', 'yes', true);
        PERFORM pg_advisory_xact_lock({GATE_KEY});
    END IF;
    RETURN pg_catalog.timestamptz_lt(a, b);
END $$;
CREATE OPERATOR pgq_test_pause.< (
    LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = pgq_test_pause.lt
);
"""


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


def running_job(conn: Conn, lease_expires_at: datetime | None = None) -> tuple[int, int]:
    """A job claimed by WORKER_ID whose lease lapsed; returns ``(id, lease_token)``."""
    row = conn.execute(
        """
        INSERT INTO pgq.jobs (queue, task, state, attempts, lease_token, worker_id,
                              started_at, lease_expires_at)
        VALUES ('default', %s, 'running', 1, 1, %s, now() - interval '5 min',
                coalesce(%s, now() - interval '1 min'))
        RETURNING id, lease_token
        """,
        (TASK, WORKER_ID, lease_expires_at),
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def job(conn: Conn, job_id: int) -> dict[str, Any]:
    cur = conn.execute(
        "SELECT state::text, lease_token, worker_id, lease_expires_at > now() AS live, errors"
        " FROM pgq.jobs WHERE id = %s",
        (job_id,),
    )
    names = [d.name for d in cur.description or []]
    row = cur.fetchone()
    assert row is not None
    return dict(zip(names, row, strict=True))


# --- the worker's side, with the worker's own statements ------------------------------------


def complete(conn: Conn, job_id: int, token: int) -> list[Any]:
    return store.fetch(
        conn,
        store.finish_jobs(
            ids=[job_id], tokens=[token], outcomes=["succeeded"], delays=[0.0], errors=[None]
        ),
    )


def extend(conn: Conn, job_id: int, token: int) -> list[Any]:
    return store.fetch(conn, store.extend_leases(ids=[job_id], tokens=[token], leases=[30.0]))


def reclaim(conn: Conn, job_id: int, token: int) -> list[Any]:
    """The worker gives the job back (a retry due now) and another worker claims it."""
    given_back = store.fetch(
        conn,
        store.finish_jobs(
            ids=[job_id], tokens=[token], outcomes=["retry"], delays=[0.0], errors=[None]
        ),
    )
    claimed = store.fetch(
        conn,
        store.claim_jobs(
            queues=["default"], tasks=[TASK], leases=[30.0], limit=1, worker_id="worker-2"
        ),
    )
    assert [row[0] for row in claimed] == [job_id]
    return given_back


WORKER_WRITES = {"complete": complete, "extend": extend, "reclaim": reclaim}


def assert_worker_won(conn: Conn, job_id: int, write: str) -> None:
    row = job(conn, job_id)
    assert row["errors"] == []  # the reaper never touched it
    if write == "complete":
        assert row["state"] == "succeeded"
    elif write == "extend":
        assert (row["state"], row["lease_token"], row["live"]) == ("running", 1, True)
    else:
        assert (row["state"], row["lease_token"], row["worker_id"], row["live"]) == (
            "running",
            2,
            "worker-2",
            True,
        )


@pytest.fixture
def connect(db_url: str) -> Iterator[Callable[..., Conn]]:
    """Open extra connections (closed afterwards); a statement that waits over 10 s fails."""
    opened: list[Conn] = []

    def open_(autocommit: bool = True) -> Conn:
        new = psycopg.connect(db_url, autocommit=autocommit, options="-c statement_timeout=10s")
        opened.append(new)
        return new

    yield open_
    for each in opened:
        each.close()


# --- 1. the worker's write is in flight when the reaper runs ---------------------------------


@pytest.mark.parametrize("write", WORKER_WRITES)
def test_reaper_skips_a_job_the_worker_is_writing_and_leaves_it_after_commit(
    conn: Conn, connect: Callable[..., Conn], write: str
) -> None:
    control, _ = running_job(conn)
    job_id, token = running_job(conn)
    worker = connect(autocommit=False)
    WORKER_WRITES[write](worker, job_id, token)  # row locked, not committed

    result = reap_once(connect())  # SKIP LOCKED: never waits (statement_timeout would fail it)

    assert [j.id for j in result.jobs] == [control]
    worker.commit()
    assert reap_once(conn).jobs == []
    assert_worker_won(conn, job_id, write)


# --- 2. the reaper read the job, the worker commits, the reaper reaches the row -------------


@pytest.fixture
def pause(conn: Conn) -> Iterator[None]:
    conn.execute(PAUSE_DDL)
    try:
        yield
    finally:
        conn.execute("DROP SCHEMA pgq_test_pause CASCADE")


@pytest.mark.parametrize("write", WORKER_WRITES)
def test_reaper_leaves_a_job_the_worker_wrote_after_the_reaper_read_it(
    conn: Conn, connect: Callable[..., Conn], pause: None, write: str
) -> None:
    control, _ = running_job(conn)
    job_id, token = running_job(conn, lease_expires_at=MARKED_LEASE)
    gate = connect(autocommit=False)
    gate.execute("SELECT pg_advisory_xact_lock(%s)", (GATE_KEY,))
    reaper_conn = connect()
    reaper_conn.execute("SET search_path = pgq_test_pause, pg_catalog")
    reaper_pid = reaper_conn.info.backend_pid
    results: list[ReapResult] = []
    thread = threading.Thread(target=lambda: results.append(reap_once(reaper_conn)))
    thread.start()
    try:
        # The reaper's statement has its snapshot and is paused at our job, before its lock.
        wait_for(lambda: _waits_on_gate(conn, reaper_pid), "the reaper to reach the job")
        worker = connect()
        assert WORKER_WRITES[write](worker, job_id, token) != []  # not locked by the reaper
    finally:
        gate.commit()  # let the reaper go on
        thread.join(30)
    assert not thread.is_alive()

    assert [j.id for j in results[0].jobs] == [control]
    assert_worker_won(conn, job_id, write)


def _waits_on_gate(conn: Conn, pid: int) -> bool:
    row = conn.execute(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        " AND objid = %s AND pid = %s",
        (GATE_KEY, pid),
    ).fetchone()
    return row == (1,)


# --- 3. the reaper wrote first; the worker's late write changes nothing ---------------------


@pytest.mark.parametrize("write", ["complete", "extend"])
def test_a_worker_write_after_the_reaper_took_the_job_changes_nothing(
    conn: Conn, connect: Callable[..., Conn], write: str
) -> None:
    job_id, token = running_job(conn)
    reaper_conn = connect(autocommit=False)
    worker = connect()
    worker_pid = worker.info.backend_pid
    applied: list[list[Any]] = []
    thread = threading.Thread(
        target=lambda: applied.append(WORKER_WRITES[write](worker, job_id, token))
    )
    reaped = store.fetch(reaper_conn, _reap_statement())  # row locked, not committed
    assert [row[0] for row in reaped] == [job_id]
    thread.start()
    try:
        wait_for(lambda: _waits_on_a_row(conn, worker_pid), "the worker to wait for the row")
    finally:
        reaper_conn.commit()
        thread.join(30)
    assert not thread.is_alive()

    assert applied == [[]]  # fenced out: the worker sees its job is no longer its own
    row = job(conn, job_id)
    assert (row["state"], row["live"]) == ("queued", None)
    assert [e["kind"] for e in row["errors"]] == ["lease_expired"]


def _reap_statement() -> store.Statement:
    return store.reap_expired_jobs(
        limit=100,
        backoff_base=DEFAULT_BACKOFF.base,
        backoff_factor=DEFAULT_BACKOFF.factor,
        backoff_cap=DEFAULT_BACKOFF.cap,
        backoff_jitter=DEFAULT_BACKOFF.jitter,
    )


def _waits_on_a_row(conn: Conn, pid: int) -> bool:
    row = conn.execute(
        "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)
    ).fetchone()
    return row == ("Lock",)


def test_a_reaped_job_is_claimed_again_only_after_its_backoff(conn: Conn) -> None:
    job_id, _ = running_job(conn)
    now = conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
    reap_once(conn, now=now)

    def claim(at: datetime) -> list[Any]:
        statement = store.claim_jobs(
            queues=["default"], tasks=[TASK], leases=[30.0], limit=1, worker_id="w", now=at
        )
        return store.fetch(conn, statement)

    assert claim(now) == []
    high = DEFAULT_BACKOFF.bounds(1)[1]
    assert [row[0] for row in claim(now + timedelta(seconds=high + 0.01))] == [job_id]
