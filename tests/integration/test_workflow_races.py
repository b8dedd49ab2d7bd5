"""Races of the release: two parents finishing at the same instant in two transactions,
a failure racing a success, a stale attempt's finish. Each test makes the second writer
wait for the first one's row lock on the child, then lets the first commit, so the
interleaving is the one that matters every time (not by luck)."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import pytest

import pgq
from pgq import store

Conn = psycopg.Connection[Any]
WAIT_TIMEOUT = 30.0


def claim(conn: Conn, job_id: int) -> int:
    """Make ``job_id`` running, as a claim would; return its lease token."""
    row = conn.execute(
        "UPDATE pgq.jobs SET state = 'running', attempts = attempts + 1, "
        "lease_token = lease_token + 1, lease_expires_at = now() + interval '1 minute' "
        "WHERE id = %s RETURNING lease_token",
        (job_id,),
    ).fetchone()
    assert row is not None
    return int(row[0])


def finish(conn: Conn, job_id: int, token: int, outcome: str) -> list[store.Row]:
    statement = store.finish_and_release_jobs(
        ids=[job_id], tokens=[token], outcomes=[outcome], delays=[0.0], errors=[None]
    )
    return store.fetch(conn, statement)


def wait_until_blocked(conn: Conn) -> None:
    deadline = time.monotonic() + WAIT_TIMEOUT
    query = (
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    while conn.execute(query).fetchone() == (0,):
        assert time.monotonic() < deadline, "the second finish never waited for the lock"
        time.sleep(0.01)


def child(conn: Conn, job_id: int) -> tuple[Any, ...]:
    row = conn.execute(
        "SELECT state::text, parents_pending FROM pgq.jobs WHERE id = %s", (job_id,)
    ).fetchone()
    assert row is not None
    return tuple(row)


def race(db_url: str, conn: Conn, first: tuple[int, int, str], second: tuple[int, int, str]):
    """``first`` finishes in an open transaction; ``second`` starts and blocks on the
    child's row lock; then ``first`` commits and ``second`` goes on."""
    box: dict[str, Any] = {}
    with psycopg.connect(db_url) as holder, psycopg.connect(db_url, autocommit=True) as other:
        finish(holder, *first)  # holds the child's row lock until commit

        def run_second() -> None:
            try:
                box["rows"] = finish(other, *second)
            except Exception as exc:  # reported by the test below
                box["error"] = exc

        thread = threading.Thread(target=run_second)
        thread.start()
        wait_until_blocked(conn)
        holder.commit()
        thread.join(WAIT_TIMEOUT)
        assert not thread.is_alive()
    if "error" in box:
        raise box["error"]
    return box["rows"]


@pytest.fixture
def pair(conn: Conn) -> tuple[int, int, int]:
    flow = (
        pgq.group([pgq.JobSpec("race.p"), pgq.JobSpec("race.p")])
        .then(pgq.JobSpec("race.child"))
        .enqueue(conn)
    )
    return flow.job_ids[0], flow.job_ids[1], flow.last_id


def test_the_last_two_parents_finishing_at_once_release_the_child_exactly_once(
    db_url: str, conn: Conn, pair: tuple[int, int, int]
) -> None:
    p1, p2, c = pair
    t1, t2 = claim(conn, p1), claim(conn, p2)

    race(db_url, conn, (p1, t1, "succeeded"), (p2, t2, "succeeded"))

    assert child(conn, c) == ("queued", 0)


def test_a_failure_racing_a_success_cancels_the_child(
    db_url: str, conn: Conn, pair: tuple[int, int, int]
) -> None:
    p1, p2, c = pair
    t1, t2 = claim(conn, p1), claim(conn, p2)

    race(db_url, conn, (p1, t1, "succeeded"), (p2, t2, "failed"))

    assert child(conn, c) == ("cancelled", None)


def test_a_success_after_the_failure_leaves_the_cancelled_child_alone(
    db_url: str, conn: Conn, pair: tuple[int, int, int]
) -> None:
    p1, p2, c = pair
    t1, t2 = claim(conn, p1), claim(conn, p2)

    race(db_url, conn, (p1, t1, "failed"), (p2, t2, "succeeded"))

    assert child(conn, c) == ("cancelled", None)


def test_a_stale_attempts_finish_releases_nothing(conn: Conn, pair: tuple[int, int, int]) -> None:
    p1, p2, c = pair
    stale = claim(conn, p1)
    claim(conn, p1)  # re-claimed after the lease lapsed: the first token is stale
    t2 = claim(conn, p2)

    assert finish(conn, p1, stale, "succeeded") == []
    finish(conn, p2, t2, "succeeded")

    assert child(conn, c) == ("waiting", 1)


def test_a_duplicate_outcome_counts_once(conn: Conn, pair: tuple[int, int, int]) -> None:
    p1, _p2, c = pair
    token = claim(conn, p1)

    finish(conn, p1, token, "succeeded")
    assert finish(conn, p1, token, "succeeded") == []

    assert child(conn, c) == ("waiting", 1)
