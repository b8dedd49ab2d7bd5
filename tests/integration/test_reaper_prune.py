"""Retention: prune_once deletes only finished jobs past their state's time, in batches."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest

from pgq import store
from pgq.reaper import PRUNE_LOCK_KEY, ReaperConfig, prune_once

Conn = psycopg.Connection[Any]
DAY = timedelta(days=1)
SECOND = timedelta(seconds=1)


def db_now(conn: Conn) -> datetime:
    now: datetime = conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
    return now


def add_jobs(conn: Conn, state: str, finished_at: datetime | None, count: int = 1) -> list[int]:
    rows = conn.execute(
        "INSERT INTO pgq.jobs (queue, task, state, finished_at)"
        " SELECT 'default', 'tests.task', %s, %s FROM generate_series(1, %s) RETURNING id",
        (state, finished_at, count),
    ).fetchall()
    return [int(row[0]) for row in rows]


def remaining(conn: Conn) -> list[int]:
    return [int(row[0]) for row in conn.execute("SELECT id FROM pgq.jobs ORDER BY id")]


def test_each_state_is_kept_for_its_default_retention(conn: Conn) -> None:
    now = db_now(conn)
    kept, doomed = [], []
    for state, days in (("succeeded", 1), ("cancelled", 7), ("failed", 30)):
        kept += add_jobs(conn, state, now - days * DAY + SECOND)
        doomed += add_jobs(conn, state, now - days * DAY - SECOND)

    result = prune_once(conn, now=now)

    assert remaining(conn) == sorted(kept)
    assert dict(result.deleted) == {"succeeded": 1, "cancelled": 1, "failed": 1}
    assert (result.total, result.complete, result.locked_out) == (3, True, False)


def test_queued_and_running_jobs_are_never_pruned(conn: Conn) -> None:
    now = db_now(conn)
    ancient = now - 1000 * DAY  # a finished_at no live job should have, and still kept
    live = add_jobs(conn, "queued", ancient) + add_jobs(conn, "running", ancient)

    prune_once(conn, ReaperConfig(succeeded_retention=0, failed_retention=0), now=now)
    for state in ("queued", "running"):  # even when asked to, the statement refuses
        statement = store.prune_finished_jobs(state=state, retention=0, limit=10, now=now)
        assert store.fetch(conn, statement) == [(0,)]

    assert remaining(conn) == live


def test_batches_are_bounded_and_counted(conn: Conn) -> None:
    now = db_now(conn)
    add_jobs(conn, "succeeded", now - 2 * DAY, count=25)
    add_jobs(conn, "failed", now - 40 * DAY, count=20)
    batches: list[tuple[str, int]] = []

    result = prune_once(
        conn,
        ReaperConfig(prune_batch_size=10),
        now=now,
        on_batch=lambda state, n: batches.append((state, n)),
    )

    assert batches == [
        ("succeeded", 10),
        ("succeeded", 10),
        ("succeeded", 5),  # short: succeeded is done
        ("cancelled", 0),
        ("failed", 10),
        ("failed", 10),
        ("failed", 0),  # an exact multiple needs one empty batch to know it is done
    ]
    assert (result.batches, result.total) == (7, 45)
    assert remaining(conn) == []


def test_max_batches_stops_early_and_the_next_call_carries_on(conn: Conn) -> None:
    now = db_now(conn)
    add_jobs(conn, "succeeded", now - 2 * DAY, count=25)
    config = ReaperConfig(prune_batch_size=10)

    first = prune_once(conn, config, now=now, max_batches=2)
    assert (first.total, first.batches, first.complete) == (20, 2, False)

    # Short batches do not count: a budget smaller than the number of states still ends.
    second = prune_once(conn, config, now=now, max_batches=1)
    assert (second.total, second.batches, second.complete) == (5, 3, True)
    assert remaining(conn) == []


def test_custom_retention_and_keep_forever(conn: Conn) -> None:
    now = db_now(conn)
    two_hours_old = add_jobs(conn, "succeeded", now - 2 * timedelta(hours=1))
    failed = add_jobs(conn, "failed", now - 5000 * DAY)
    config = ReaperConfig(succeeded_retention=3600, failed_retention=None)

    result = prune_once(conn, config, now=now)

    assert (dict(result.deleted), remaining(conn)) == (
        {"succeeded": 1, "cancelled": 0, "failed": 0},
        failed,
    )
    assert two_hours_old[0] not in remaining(conn)


def test_a_pass_does_nothing_while_another_process_holds_the_prune_lock(
    conn: Conn, db_url: str
) -> None:
    now = db_now(conn)
    add_jobs(conn, "succeeded", now - 2 * DAY)
    with psycopg.connect(db_url) as other:
        other.execute("SELECT pg_advisory_xact_lock(%s)", (PRUNE_LOCK_KEY,))

        result = prune_once(conn, now=now)

        assert (result.locked_out, result.complete, result.total) == (True, False, 0)
    assert prune_once(conn, now=now).total == 1


def test_a_row_being_retried_meanwhile_is_skipped_and_never_deleted(
    conn: Conn, db_url: str
) -> None:
    """An operator retries an old failed job while the pruner runs: the job survives."""
    now = db_now(conn)
    (job_id,) = add_jobs(conn, "failed", now - 40 * DAY)
    with psycopg.connect(db_url) as operator:
        operator.execute(
            "UPDATE pgq.jobs SET state = 'queued', finished_at = NULL, run_at = now()"
            " WHERE id = %s",
            (job_id,),
        )
        assert prune_once(conn, now=now).total == 0  # locked: skipped, not waited for
    assert prune_once(conn, now=now).total == 0
    assert remaining(conn) == [job_id]


def test_prune_refuses_a_connection_inside_a_transaction(db_url: str) -> None:
    with psycopg.connect(db_url) as inside:
        inside.execute("SELECT 1")
        with pytest.raises(ValueError, match="no transaction open"):
            prune_once(inside)


def test_the_prune_statement_uses_the_finished_index(conn: Conn) -> None:
    """On a table of mostly live rows, pruning must not scan the whole table."""
    conn.execute(
        "INSERT INTO pgq.jobs (queue, task, state) SELECT 'default', 't', 'queued'"
        " FROM generate_series(1, 5000)"
    )
    add_jobs(conn, "succeeded", db_now(conn) - 2 * DAY, count=5)
    conn.execute("ANALYZE pgq.jobs")
    statement = store.prune_finished_jobs(state="succeeded", retention=86400, limit=1000)
    plan = "\n".join(
        row[0] for row in conn.execute(b"EXPLAIN " + statement.query, statement.params)
    )
    assert "Seq Scan" not in plan, plan
