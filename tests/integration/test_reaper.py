"""The reaper against a real PostgreSQL: lapsed leases, backoff, max_attempts, the lock.

Leases are backdated (or ``now`` is injected) instead of waited for.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest

from pgq import reaper
from pgq.reaper import REAP_LOCK_KEY, ReaperConfig, reap_once
from pgq.retry import DEFAULT_BACKOFF, Backoff

Conn = psycopg.Connection[Any]
EPSILON = 1e-3  # seconds; timestamps are stored to the microsecond


def db_now(conn: Conn) -> datetime:
    now: datetime = conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
    return now


def running_job(
    conn: Conn,
    *,
    lease_expires_at: datetime | None = None,
    attempts: int = 1,
    max_attempts: int = 20,
    worker_id: str | None = "worker-1",
    token: int = 1,
    cancel_requested: bool = False,
) -> int:
    """A job claimed by ``worker_id``; its lease lapsed a minute ago unless told otherwise."""
    lease = lease_expires_at or db_now(conn) - timedelta(minutes=1)
    row = conn.execute(
        """
        INSERT INTO pgq.jobs (queue, task, state, attempts, max_attempts, lease_token,
                              worker_id, started_at, lease_expires_at, cancel_requested)
        VALUES ('default', 'tests.task', 'running', %s, %s, %s, %s, now() - interval '10 min',
                %s, %s)
        RETURNING id
        """,
        (attempts, max_attempts, token, worker_id, lease, cancel_requested),
    ).fetchone()
    assert row is not None
    return int(row[0])


def job(conn: Conn, job_id: int) -> dict[str, Any]:
    cur = conn.execute("SELECT * FROM pgq.jobs WHERE id = %s", (job_id,))
    names = [d.name for d in cur.description or []]
    row = cur.fetchone()
    assert row is not None, f"job {job_id} is gone"
    return dict(zip(names, row, strict=True))


def test_a_lapsed_job_is_requeued_with_backoff_and_an_error_naming_its_worker(conn: Conn) -> None:
    now = db_now(conn)
    job_id = running_job(conn, attempts=3, token=7, worker_id="host-a:1234")

    result = reap_once(conn, now=now)

    row = job(conn, job_id)
    assert row["state"] == "queued"
    low, high = DEFAULT_BACKOFF.bounds(3)
    delay = (row["run_at"] - now).total_seconds()
    assert low - EPSILON <= delay <= high + EPSILON
    assert (row["attempts"], row["lease_token"]) == (3, 7)  # counted at claim, not here
    assert row["worker_id"] is None and row["lease_expires_at"] is None
    assert row["finished_at"] is None
    error = row["errors"][-1]
    assert error == {
        "attempt": 3,
        "at": error["at"],
        "kind": "lease_expired",
        "message": "lease expired while held by worker host-a:1234",
        "traceback": None,
        "worker_id": "host-a:1234",
    }
    assert datetime.fromisoformat(error["at"]) == now
    assert [(j.id, j.state, j.worker_id) for j in result.jobs] == [
        (job_id, "queued", "host-a:1234")
    ]
    assert (result.batches, result.locked_out) == (1, False)


def test_backoff_follows_the_default_policy_for_every_attempt(conn: Conn) -> None:
    now = db_now(conn)
    attempts = [1, 2, 5, 10, 12, 13, 30, 999]
    ids = {running_job(conn, attempts=n, max_attempts=1000): n for n in attempts}

    reap_once(conn, now=now)

    for job_id, n in ids.items():
        delay = (job(conn, job_id)["run_at"] - now).total_seconds()
        low, high = DEFAULT_BACKOFF.bounds(n)
        assert low - EPSILON <= delay <= high + EPSILON, (n, delay, low, high)
    # The cap holds even where factor**attempt overflows a float.
    assert (job(conn, max(ids))["run_at"] - now).total_seconds() <= DEFAULT_BACKOFF.cap


def test_the_backoff_comes_from_the_config(conn: Conn) -> None:
    now = db_now(conn)
    job_id = running_job(conn, attempts=4)
    config = ReaperConfig(backoff=Backoff(base=10, factor=3, cap=100, jitter=0))

    reap_once(conn, config, now=now)

    assert (job(conn, job_id)["run_at"] - now).total_seconds() == pytest.approx(100)


def test_a_job_at_max_attempts_fails_with_finished_at(conn: Conn) -> None:
    now = db_now(conn)
    job_id = running_job(conn, attempts=3, max_attempts=3)
    run_at = job(conn, job_id)["run_at"]

    result = reap_once(conn, now=now)

    row = job(conn, job_id)
    assert (row["state"], row["finished_at"], row["run_at"]) == ("failed", now, run_at)
    assert row["errors"][-1]["kind"] == "lease_expired"
    assert result.count("failed") == 1


def test_a_lapsed_job_whose_cancel_was_requested_is_cancelled(conn: Conn) -> None:
    now = db_now(conn)
    job_id = running_job(conn, cancel_requested=True)

    reap_once(conn, now=now)

    row = job(conn, job_id)
    assert (row["state"], row["finished_at"], row["cancel_requested"]) == ("cancelled", now, False)


def test_jobs_whose_lease_has_not_lapsed_are_untouched(conn: Conn) -> None:
    now = db_now(conn)
    live = running_job(conn, lease_expires_at=now + timedelta(seconds=30))
    exact = running_job(conn, lease_expires_at=now)  # lapses strictly after its expiry
    lapsed = running_job(conn)
    # Not running, whatever its stale lease column says.
    queued = conn.execute(
        "INSERT INTO pgq.jobs (queue, task, state, lease_expires_at) VALUES "
        "('default', 'tests.task', 'queued', now() - interval '1 hour') RETURNING id"
    ).fetchone()[0]  # type: ignore[index]
    before = {i: job(conn, i) for i in (live, exact, queued)}

    result = reap_once(conn, now=now)

    assert [j.id for j in result.jobs] == [lapsed]
    assert {i: job(conn, i) for i in (live, exact, queued)} == before


def test_injected_time_decides_what_has_lapsed(conn: Conn) -> None:
    now = db_now(conn)
    job_id = running_job(conn, lease_expires_at=now + timedelta(minutes=5))

    assert reap_once(conn, now=now).jobs == []
    assert [j.id for j in reap_once(conn, now=now + timedelta(minutes=6)).jobs] == [job_id]


def test_errors_accumulate_one_per_lapsed_attempt(conn: Conn) -> None:
    job_id = running_job(conn, attempts=1, max_attempts=3)
    for attempt in (2, 3):
        reap_once(conn)
        # Claimed again by another worker, which dies too.
        conn.execute(
            "UPDATE pgq.jobs SET state = 'running', attempts = %s, lease_token = lease_token + 1,"
            " worker_id = %s, lease_expires_at = now() - interval '1 s' WHERE id = %s",
            (attempt, f"worker-{attempt}", job_id),
        )
    reap_once(conn)

    row = job(conn, job_id)
    assert row["state"] == "failed"
    assert [(e["attempt"], e["worker_id"]) for e in row["errors"]] == [
        (1, "worker-1"),
        (2, "worker-2"),
        (3, "worker-3"),
    ]


def test_batches_run_until_one_comes_back_short(conn: Conn) -> None:
    ids = [running_job(conn) for _ in range(25)]

    result = reap_once(conn, ReaperConfig(batch_size=10))

    assert result.batches == 3  # 10 + 10 + 5
    assert sorted(j.id for j in result.jobs) == ids
    remaining = conn.execute("SELECT count(*) FROM pgq.jobs WHERE state = 'running'").fetchone()
    assert remaining == (0,)


def test_an_exact_multiple_of_the_batch_size_needs_one_empty_batch(conn: Conn) -> None:
    for _ in range(20):
        running_job(conn)

    result = reap_once(conn, ReaperConfig(batch_size=10))

    assert (len(result.jobs), result.batches) == (20, 3)


def test_a_job_without_a_recorded_worker_still_gets_a_readable_error(conn: Conn) -> None:
    job_id = running_job(conn, worker_id=None)

    reap_once(conn)

    error = job(conn, job_id)["errors"][-1]
    assert error["message"] == "lease expired while held by worker (unknown)"
    assert error["worker_id"] is None


def test_a_pass_does_nothing_while_another_process_holds_the_reaper_lock(
    conn: Conn, db_url: str
) -> None:
    job_id = running_job(conn)
    with psycopg.connect(db_url) as other:
        other.execute("SELECT pg_advisory_xact_lock(%s)", (REAP_LOCK_KEY,))

        result = reap_once(conn)

        assert (result.locked_out, result.jobs, result.batches) == (True, [], 0)
        assert job(conn, job_id)["state"] == "running"
    # The other transaction ended (the context manager committed): the lock went with it.
    assert [j.id for j in reap_once(conn).jobs] == [job_id]


def test_the_lock_is_released_with_each_batch(conn: Conn, db_url: str) -> None:
    running_job(conn)
    reap_once(conn)
    with psycopg.connect(db_url) as other:
        taken = other.execute("SELECT pg_try_advisory_xact_lock(%s)", (REAP_LOCK_KEY,))
        assert taken.fetchone() == (True,)


def test_two_reapers_at_once_reap_each_job_exactly_once(conn: Conn, db_url: str) -> None:
    ids = [running_job(conn) for _ in range(300)]
    barrier = threading.Barrier(2)
    results: list[reaper.ReapResult] = []

    def reap() -> None:
        with psycopg.connect(db_url, autocommit=True) as own:
            barrier.wait()
            results.append(reap_once(own, ReaperConfig(batch_size=20)))

    threads = [threading.Thread(target=reap) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    reaped = [j.id for result in results for j in result.jobs]
    assert sorted(reaped) == ids  # every job once, none twice
    counts = conn.execute("SELECT count(*) FROM pgq.jobs WHERE jsonb_array_length(errors) = 1")
    assert counts.fetchone() == (300,)


def test_reap_once_refuses_a_connection_inside_a_transaction(db_url: str) -> None:
    with psycopg.connect(db_url) as inside:
        inside.execute("SELECT 1")
        with pytest.raises(ValueError, match="no transaction open"):
            reap_once(inside)


def test_a_non_autocommit_connection_with_no_open_transaction_works(
    conn: Conn, db_url: str
) -> None:
    job_id = running_job(conn)
    with psycopg.connect(db_url) as plain:
        assert [j.id for j in reap_once(plain).jobs] == [job_id]
    assert job(conn, job_id)["state"] == "queued"  # committed, not left in a savepoint
