"""Transactional enqueue, for every session kind.

A job exists exactly when its transaction commits; enqueue never commits on the caller's behalf.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from enqueue_sessions import ASYNCPG_KIND, KINDS, ORDERS_TABLE, Tx, count, open_tx, prepare_orders
from psycopg.rows import dict_row

import pgq


@pytest.fixture
def orders(conn: psycopg.Connection[Any]) -> None:
    prepare_orders(conn)


@pytest.fixture(params=(*KINDS, ASYNCPG_KIND))
def tx(request: pytest.FixtureRequest, db_url: str, orders: None) -> Iterator[Tx]:
    with open_tx(request.param, db_url) as opened:
        yield opened


def jobs(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT * FROM pgq.jobs ORDER BY id").fetchall()


def backend_state(conn: psycopg.Connection[Any], pid: int) -> str | None:
    """The backend's state, or None once it is gone (a pool may close it after COMMIT)."""
    row = conn.execute("SELECT state FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone()
    return None if row is None else str(row[0])


def test_commit_leaves_exactly_one_row_with_every_given_value(
    tx: Tx, conn: psycopg.Connection[Any]
) -> None:
    run_at = datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    tx.add_order()
    job_id = tx.enqueue(
        "billing.charge",
        {"order": 7, "items": [1, "two", {"three": 3.5}], "note": "héllo ✓"},
        queue="billing:eu",
        priority=-5,
        run_at=run_at,
        max_attempts=3,
        unique_key="charge-7",
    )
    assert isinstance(job_id, int)
    tx.commit()

    [job] = jobs(conn)
    assert job["id"] == job_id
    assert (job["queue"], job["task"], job["priority"], job["max_attempts"]) == (
        "billing:eu",
        "billing.charge",
        -5,
        3,
    )
    assert job["args"] == {"order": 7, "items": [1, "two", {"three": 3.5}], "note": "héllo ✓"}
    assert job["run_at"] == run_at
    assert job["unique_key"] == "charge-7"
    assert (job["state"], job["attempts"], job["lease_token"]) == ("queued", 0, 0)
    assert count(conn, ORDERS_TABLE) == 1


def test_defaults_fill_the_row(tx: Tx, conn: psycopg.Connection[Any]) -> None:
    tx.enqueue("plain.task")
    tx.commit()
    [job] = jobs(conn)
    assert (job["queue"], job["priority"], job["max_attempts"], job["args"]) == (
        "default",
        0,
        20,
        {},
    )
    assert job["unique_key"] is None
    assert job["run_at"] == job["created_at"]  # due now, by the database's clock


def test_delay_is_added_to_the_database_clock(tx: Tx, conn: psycopg.Connection[Any]) -> None:
    tx.enqueue("later.task", delay=90)
    tx.enqueue("later.task", delay=timedelta(minutes=5, microseconds=500))
    tx.commit()
    gaps = [job["run_at"] - job["created_at"] for job in jobs(conn)]
    assert gaps == [timedelta(seconds=90), timedelta(minutes=5, microseconds=500)]


def test_rollback_leaves_no_row(tx: Tx, conn: psycopg.Connection[Any]) -> None:
    tx.add_order()
    assert isinstance(tx.enqueue("t", {"a": 1}), int)
    tx.rollback()
    assert count(conn) == 0
    assert count(conn, ORDERS_TABLE) == 0


def test_rolled_back_savepoint_leaves_no_job_but_the_outer_commit_keeps_the_business_row(
    tx: Tx, conn: psycopg.Connection[Any]
) -> None:
    tx.add_order("kept")
    with tx.savepoint():
        tx.add_order("discarded")
        assert isinstance(tx.enqueue("t", {"in": "savepoint"}), int)
    after = tx.enqueue("t", {"in": "outer"})
    tx.commit()
    assert [job["args"] for job in jobs(conn)] == [{"in": "outer"}]
    assert jobs(conn)[0]["id"] == after
    notes = conn.execute(f"SELECT note FROM {ORDERS_TABLE}").fetchall()
    assert notes == [("kept",)]


def test_enqueue_never_commits_and_nobody_sees_the_job_before_commit(
    tx: Tx, conn: psycopg.Connection[Any]
) -> None:
    pid = tx.backend_pid()
    job_id = tx.enqueue("t")
    # The caller's transaction is still open: its backend is idle *in transaction*, and
    # another connection sees neither the job nor (for good measure) a lock-free snapshot.
    assert backend_state(conn, pid) == "idle in transaction"
    assert count(conn) == 0
    tx.enqueue("t")
    assert count(conn) == 0
    tx.commit()
    assert backend_state(conn, pid) in ("idle", None)
    assert [job["id"] for job in jobs(conn)] == [job_id, job_id + 1]


def test_each_commit_is_its_own_job(tx: Tx, conn: psycopg.Connection[Any]) -> None:
    first = tx.enqueue("t", {"n": 1})
    tx.commit()
    second = tx.enqueue("t", {"n": 2})
    tx.rollback()
    third = tx.enqueue("t", {"n": 3})
    tx.commit()
    assert first < second < third
    assert [job["args"]["n"] for job in jobs(conn)] == [1, 3]


def test_a_task_object_can_be_passed_by_value(tx: Tx, conn: psycopg.Connection[Any]) -> None:
    registry = pgq.registry.Registry()
    task = pgq.task(name="obj.task", queue="objq", priority=4, registry=registry)(lambda x: None)
    tx.enqueue(task, {"x": 1}, max_attempts=2)
    tx.commit()
    [job] = jobs(conn)
    assert (job["task"], job["queue"], job["priority"], job["max_attempts"]) == (
        "obj.task",
        "objq",
        4,
        2,
    )


def test_an_autocommit_psycopg_connection_commits_each_enqueue_at_once(
    db_url: str, conn: psycopg.Connection[Any]
) -> None:
    # Documented behaviour: with autocommit there is no transaction to join.
    with psycopg.connect(db_url, autocommit=True) as auto:
        pgq.enqueue(auto, "t")
        assert count(conn) == 1
        with auto.transaction():
            pgq.enqueue(auto, "t")
            assert count(conn) == 1
        assert count(conn) == 2


def test_a_large_enqueue_many_commits_and_rolls_back_with_the_transaction(
    tx: Tx, conn: psycopg.Connection[Any]
) -> None:
    """Large enough for psycopg sessions' COPY path; asyncpg's takes the INSERT."""
    jobs = [pgq.JobSpec("bulk.task", {"n": n}) for n in range(150)]
    kept = tx.enqueue_many(jobs)
    tx.commit()
    dropped = tx.enqueue_many(jobs)
    tx.rollback()

    assert len(kept) == len(dropped) == 150
    assert count(conn) == 150
    rows = conn.execute("SELECT id, args FROM pgq.jobs ORDER BY id").fetchall()
    assert [(i, {"n": n}) for n, i in enumerate(kept)] == [tuple(r) for r in rows]
