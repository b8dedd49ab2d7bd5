"""Rate limits per key against a real PostgreSQL: the option, enqueue blocked, the rated
claim that admits and claims in one statement, the window rule under racing claims, the
worker that sleeps until the next slot, and retries admitted again.

Starts are the database's `started_at` of each attempt (the rated claim sets it to the
admission time); over any window (t - period, t] they never exceed the limit.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
from test_claim import claim, run_burst, wait_for

import pgq
from pgq import admin, limits, store
from pgq.errors import TaskRegistrationError
from pgq.registry import Registry

Conn = psycopg.Connection[Any]


def rated_claim(conn: Conn, limit: int = 100, tasks: tuple[str, ...] = ("rate.t",)) -> list[int]:
    statement = store.claim_rated_jobs(
        queues=["default"], tasks=list(tasks), leases=[30.0] * len(tasks),
        rates=[(5, 1.0)] * len(tasks), limit=limit, worker_id="test",
    )  # fmt: skip
    return [row[0] for row in store.fetch(conn, statement)]


def most_starts_in_a_window(starts: list[datetime], period: float) -> int:
    """The most starts any window (t - period, t] holds, t running over the starts."""
    window = timedelta(seconds=period)
    return max(sum(1 for s in starts if t - window < s <= t) for t in starts)


def starts(conn: Conn) -> list[datetime]:
    rows = conn.execute("SELECT started_at FROM pgq.jobs WHERE started_at IS NOT NULL")
    return sorted(row[0] for row in rows.fetchall())


@pytest.fixture
def registry() -> Registry:
    reg = Registry()

    @pgq.task(name="rate.t", registry=reg, rate_limit="5/s")
    def t(n: int = 0) -> None:
        pass

    return reg


@pytest.mark.parametrize(
    ("text", "expected"),
    [("10/s", (10, 1.0)), ("600/m", (600, 60.0)), ("5/10s", (5, 10.0)), (" 3 / 2h ", (3, 7200.0)),
     ("1/day", (1, 86400.0))],
)  # fmt: skip
def test_rate_limit_texts(text: str, expected: tuple[int, float]) -> None:
    assert limits.check_rate("t", text, None, None) == expected


@pytest.mark.parametrize(
    ("rate", "key", "concurrency", "message"),
    [
        ("10", None, None, "must look like"),
        ("ten/s", None, None, "must look like"),
        ("0/s", None, None, "1 to"),
        ("1/2d", None, None, "at most a day"),
        (None, "k", None, "needs a rate_limit"),
        ("1/s", None, 2, "not both"),
    ],
)
def test_bad_rate_options_are_refused_at_definition(
    rate: Any, key: Any, concurrency: Any, message: str
) -> None:
    with pytest.raises(TaskRegistrationError, match=message):
        pgq.task(
            name="rate.bad", registry=Registry(), rate_limit=rate, rate_key=key,
            concurrency_limit=concurrency,
        )(lambda: None)  # fmt: skip


def test_a_rate_limited_job_is_enqueued_blocked_and_its_key_gets_a_row(
    conn: Conn, registry: Registry
) -> None:
    task = registry.get("rate.t")
    assert task is not None
    task.enqueue(conn)
    pgq.enqueue_many(conn, [task.spec(n=i) for i in range(3)])
    rows = conn.execute("SELECT state::text, rate_key FROM pgq.jobs").fetchall()
    assert rows == [("blocked", "rate.t")] * 4
    keys = conn.execute("SELECT key, max_starts, period, starts FROM pgq.rate_limits")
    assert keys.fetchall() == [("rate.t", 5, 1.0, [])]


def test_the_rated_claim_admits_the_limit_and_no_more_until_the_window_moves(
    conn: Conn, registry: Registry
) -> None:
    task = registry.get("rate.t")
    assert task is not None
    pgq.enqueue_many(conn, [task.spec(n=i) for i in range(12)])

    first = rated_claim(conn)
    assert len(first) == 5 and first == sorted(first)  # oldest first
    assert rated_claim(conn) == []
    assert claim(conn, 100, tasks=("rate.t",)) == []  # the plain claim never sees them
    ((seconds,),) = store.fetch(conn, store.next_rate_slot(queues=["default"], tasks=["rate.t"]))
    assert 0 < seconds <= 1.0

    second = wait_for(lambda: rated_claim(conn))
    assert len(second) == 5
    assert most_starts_in_a_window(starts(conn), 1.0) == 5


def test_racing_rated_claims_admit_the_limit_once(
    db_url: str, conn: Conn, registry: Registry
) -> None:
    task = registry.get("rate.t")
    assert task is not None
    for _ in range(10):
        conn.execute("TRUNCATE pgq.jobs, pgq.rate_limits")
        pgq.enqueue_many(conn, [task.spec(n=i) for i in range(40)])
        barrier = threading.Barrier(6)
        got: list[int] = []

        def one_claim(barrier: threading.Barrier, got: list[int]) -> None:
            with psycopg.connect(db_url, autocommit=True) as own:
                barrier.wait()
                got.extend(rated_claim(own))

        threads = [threading.Thread(target=one_claim, args=(barrier, got)) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert len(got) == len(set(got)) <= 5
        assert most_starts_in_a_window(starts(conn), 1.0) <= 5


def test_a_worker_drains_at_the_rate_and_never_faster(
    db_url: str, conn: Conn, registry: Registry
) -> None:
    task = registry.get("rate.t")
    assert task is not None
    pgq.enqueue_many(conn, [task.spec(n=i) for i in range(17)])

    stats = run_burst(db_url, registry)

    assert stats.succeeded == 17
    seen = starts(conn)
    assert most_starts_in_a_window(seen, 1.0) == 5
    assert seen[-1] - seen[0] >= timedelta(seconds=3)  # 17 starts at 5/s need 3 windows


def test_a_retry_waits_to_be_admitted_again(db_url: str, conn: Conn) -> None:
    reg = Registry()
    attempts: Counter[int] = Counter()

    @pgq.task(name="rate.flaky", registry=reg, rate_limit="3/s", rate_key="shared",
              pass_context=True)  # fmt: skip
    def flaky(ctx: pgq.JobContext) -> None:
        attempts[ctx.id] += 1
        if ctx.attempt == 1:
            raise pgq.Retry(delay=0)

    pgq.enqueue_many(conn, [flaky.spec() for _ in range(3)])
    run_burst(db_url, reg)

    assert sorted(attempts.values()) == [2, 2, 2]
    assert most_starts_in_a_window(starts(conn), 1.0) <= 3
    rows = conn.execute("SELECT DISTINCT state::text FROM pgq.jobs").fetchall()
    assert rows == [("succeeded",)]


def test_an_operator_retry_sends_a_rate_limited_job_back_blocked(
    conn: Conn, registry: Registry
) -> None:
    task = registry.get("rate.t")
    assert task is not None
    job_id = task.configure(max_attempts=1).enqueue(conn)
    assert rated_claim(conn) == [job_id]
    conn.execute(
        "UPDATE pgq.jobs SET state = 'failed', finished_at = now() WHERE id = %s", [job_id]
    )

    assert admin.retry_jobs(conn, [job_id]).retried == [job_id]

    state = conn.execute("SELECT state::text FROM pgq.jobs WHERE id = %s", [job_id]).fetchone()
    assert state == ("blocked",)
    assert claim(conn, 10, tasks=("rate.t",)) == []


def test_a_worker_syncs_the_limit_of_a_key_it_knows(db_url: str, conn: Conn) -> None:
    conn.execute("INSERT INTO pgq.rate_limits (key, max_starts, period) VALUES ('rate.t', 1, 60)")
    reg = Registry()

    @pgq.task(name="rate.t", registry=reg, rate_limit="5/s")
    def t() -> None: ...

    pgq.enqueue_many(conn, [t.spec() for _ in range(5)])
    run_burst(db_url, reg)  # with the old limit (1 a minute) this would take 4 minutes
    row = conn.execute("SELECT max_starts, period FROM pgq.rate_limits").fetchone()
    assert row == (5, 1.0)
