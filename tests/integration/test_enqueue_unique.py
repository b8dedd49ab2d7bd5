"""Unique keys: at most one queued or running job per key, and a taken key is not an error.

A duplicate returns None instead of raising, so the caller's transaction stays usable; the
partial unique index makes that true under concurrency too, which the thread tests check
with real transactions racing on their own connections.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest
from enqueue_sessions import (
    ASYNCPG_KIND,
    KINDS,
    ORDERS_TABLE,
    WAIT_TIMEOUT,
    Tx,
    count,
    open_tx,
    prepare_orders,
    wait_for,
)

THREADS = 20


@pytest.fixture
def orders(conn: psycopg.Connection[Any]) -> None:
    prepare_orders(conn)


@pytest.fixture(params=(*KINDS, ASYNCPG_KIND))
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def tx(kind: str, db_url: str, orders: None) -> Iterator[Tx]:
    with open_tx(kind, db_url) as opened:
        yield opened


def keyed(conn: psycopg.Connection[Any], key: str) -> list[tuple[int, str]]:
    return conn.execute(
        "SELECT id, state::text FROM pgq.jobs WHERE unique_key = %s ORDER BY id", [key]
    ).fetchall()


def test_a_live_key_returns_none_and_the_transaction_stays_usable(
    tx: Tx, conn: psycopg.Connection[Any]
) -> None:
    first = tx.enqueue("t", unique_key="invoice-1")
    tx.commit()

    tx.add_order()
    assert tx.enqueue("t", {"again": True}, unique_key="invoice-1") is None
    assert tx.execute("SELECT 1") == [(1,)]  # no error was raised inside the transaction
    other = tx.enqueue("t", unique_key="invoice-2")
    tx.commit()

    assert keyed(conn, "invoice-1") == [(first, "queued")]
    assert keyed(conn, "invoice-2") == [(other, "queued")]
    assert count(conn, ORDERS_TABLE) == 1


def test_the_same_key_twice_in_one_transaction(tx: Tx, conn: psycopg.Connection[Any]) -> None:
    first = tx.enqueue("t", unique_key="k")
    assert tx.enqueue("t", unique_key="k") is None
    tx.commit()
    assert keyed(conn, "k") == [(first, "queued")]


def test_a_rolled_back_holder_frees_the_key(tx: Tx, conn: psycopg.Connection[Any]) -> None:
    assert tx.enqueue("t", unique_key="k") is not None
    tx.rollback()
    again = tx.enqueue("t", unique_key="k")
    tx.commit()
    assert keyed(conn, "k") == [(again, "queued")]


@pytest.mark.parametrize(
    ("state", "blocks"),
    [
        ("queued", True),
        ("running", True),
        ("succeeded", False),
        ("failed", False),
        ("cancelled", False),
    ],
)
def test_only_queued_and_running_jobs_hold_a_key(
    db_url: str, conn: psycopg.Connection[Any], state: str, blocks: bool
) -> None:
    with open_tx("psycopg", db_url) as tx:
        old = tx.enqueue("t", unique_key="k")
        tx.commit()
        conn.execute(
            "UPDATE pgq.jobs SET state = %s::pgq.job_state,"
            " finished_at = CASE WHEN %s IN ('succeeded', 'failed', 'cancelled') THEN now() END"
            " WHERE id = %s",
            [state, state, old],
        )
        new = tx.enqueue("t", unique_key="k")
        tx.commit()
    if blocks:
        assert new is None
        assert keyed(conn, "k") == [(old, state)]
    else:
        assert keyed(conn, "k") == [(old, state), (new, "queued")]


def _enqueue_at_once(kind: str, db_url: str, barrier: threading.Barrier, i: int) -> int | None:
    with open_tx(kind, db_url) as tx:
        tx.add_order(f"order {i}")  # each racer is inside its own business transaction
        barrier.wait()
        job_id = tx.enqueue("t", {"racer": i}, unique_key="race")
        tx.commit()
        return job_id  # type: ignore[no-any-return]


def test_twenty_threads_racing_for_one_key_make_exactly_one_job_and_no_error(
    kind: str, db_url: str, orders: None, conn: psycopg.Connection[Any]
) -> None:
    barrier = threading.Barrier(THREADS, timeout=WAIT_TIMEOUT)
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        futures = [pool.submit(_enqueue_at_once, kind, db_url, barrier, i) for i in range(THREADS)]
        results = [future.result(timeout=WAIT_TIMEOUT * 3) for future in futures]

    winners = [result for result in results if result is not None]
    assert len(winners) == 1 and results.count(None) == THREADS - 1
    assert keyed(conn, "race") == [(winners[0], "queued")]
    assert count(conn, ORDERS_TABLE) == THREADS  # every business transaction committed


def _blocked_enqueue(kind: str, db_url: str, pids: queue.Queue[int]) -> int | None:
    with open_tx(kind, db_url) as tx:
        pids.put(tx.backend_pid())
        job_id = tx.enqueue("t", {"second": True}, unique_key="held")
        tx.commit()
        return job_id  # type: ignore[no-any-return]


@pytest.mark.parametrize("holder_commits", [True, False])
def test_a_racer_waits_for_an_uncommitted_holder_then_yields_or_takes_the_key(
    kind: str, db_url: str, conn: psycopg.Connection[Any], holder_commits: bool
) -> None:
    pids: queue.Queue[int] = queue.Queue()
    with open_tx("psycopg", db_url) as holder, ThreadPoolExecutor(max_workers=1) as pool:
        first = holder.enqueue("t", unique_key="held")
        racer = pool.submit(_blocked_enqueue, kind, db_url, pids)
        pid = pids.get(timeout=WAIT_TIMEOUT)
        # The racer's INSERT must wait on the holder's row lock: the key is taken unless
        # the holder rolls back, and only its COMMIT or ROLLBACK can decide.
        wait_for(
            lambda: (
                conn.execute(
                    "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s", [pid]
                ).fetchone()
                == (True,)
            ),
            "the second enqueue to wait for the first transaction",
        )
        if holder_commits:
            holder.commit()
        else:
            holder.rollback()
        second = racer.result(timeout=WAIT_TIMEOUT)

    if holder_commits:
        assert second is None
        assert keyed(conn, "held") == [(first, "queued")]
    else:
        assert second is not None
        assert keyed(conn, "held") == [(second, "queued")]
