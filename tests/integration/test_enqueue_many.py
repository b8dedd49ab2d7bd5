"""enqueue_many: thousands of jobs in one statement and one round trip, validated first."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from enqueue_sessions import KINDS, ORDERS_TABLE, Tx, count, open_tx, prepare_orders, traced

import pgq
from pgq import JobSpec

BATCH = 10_000


@pytest.fixture(params=KINDS)
def tx(request: pytest.FixtureRequest, db_url: str, conn: psycopg.Connection[Any]) -> Iterator[Tx]:
    prepare_orders(conn)
    with open_tx(request.param, db_url) as opened:
        yield opened


def args_by_id(conn: psycopg.Connection[Any]) -> dict[int, int]:
    rows = conn.execute("SELECT id, (args->>'i')::int FROM pgq.jobs").fetchall()
    return dict(rows)


def test_ten_thousand_jobs_in_two_round_trips_ids_in_input_order(
    tx: Tx, conn: psycopg.Connection[Any]
) -> None:
    tx.add_order()  # the transaction is open, so the trace holds only enqueue_many
    # Shuffle priorities and queues so no column happens to sort like the input.
    jobs = [
        JobSpec("bulk.task", {"i": i}, queue=f"q{i % 7}", priority=(i * 7919) % 200 - 100)
        for i in range(BATCH)
    ]
    with traced(tx) as sent:
        ids = tx.enqueue_many(jobs)
    # Two round trips whatever the batch size: the ids' statement, then one COPY.
    assert sent.count("Sync") == 1 and sent.count("Execute") == 1, sent
    assert sent.count("Query") == 1 and sent.count("CopyDone") == 1, sent
    assert len(ids) == BATCH and all(isinstance(job_id, int) for job_id in ids)
    assert ids == sorted(ids)  # input order is id order, as with the INSERT

    assert count(conn) == 0  # not committed on our behalf
    tx.commit()
    by_id = args_by_id(conn)
    assert [by_id[job_id] for job_id in ids] == list(range(BATCH))
    rows = conn.execute("SELECT queue, priority, (args->>'i')::int FROM pgq.jobs").fetchall()
    assert all(q == f"q{i % 7}" and p == (i * 7919) % 200 - 100 for q, p, i in rows)


def test_a_batch_with_a_unique_key_is_one_insert_in_one_round_trip(
    tx: Tx, conn: psycopg.Connection[Any]
) -> None:
    tx.add_order()
    jobs = [JobSpec("bulk.task", {"i": i}, queue=f"q{i % 7}") for i in range(BATCH)]
    jobs[-1] = JobSpec("bulk.task", {"i": BATCH - 1}, queue="q0", unique_key="one")
    with traced(tx) as sent:
        ids = tx.enqueue_many(jobs)
    assert sent.count("Sync") == 1, sent  # one round trip …
    assert sent.count("Execute") == 1 and "Query" not in sent  # … running one statement
    tx.commit()
    by_id = args_by_id(conn)
    assert [by_id[job_id] for job_id in ids] == list(range(BATCH))


def test_a_bad_job_in_the_middle_inserts_nothing_and_keeps_the_transaction(
    tx: Tx, conn: psycopg.Connection[Any]
) -> None:
    jobs = [JobSpec("t", {"i": i}) for i in range(BATCH)]
    jobs[5000] = JobSpec("t", {"i": 5000, "ratio": math.nan})
    tx.add_order()
    with traced(tx) as sent, pytest.raises(pgq.ArgsError) as info:
        tx.enqueue_many(jobs)
    assert sent == []  # nothing reached the server
    assert str(info.value).startswith("jobs[5000]: args['ratio'] is nan")

    assert tx.enqueue_many(jobs[:3]) is not None  # the transaction is still usable
    tx.commit()
    assert count(conn) == 3
    assert count(conn, ORDERS_TABLE) == 1


@pytest.mark.parametrize(
    ("bad", "error", "words"),
    [
        (JobSpec("t", queue="no spaces"), pgq.QueueNameError, "jobs[2]: queue name"),
        (JobSpec("t", priority=99_999), pgq.OptionError, "jobs[2]: priority 99999"),
        (JobSpec("", {}), pgq.TaskNameError, "jobs[2]: task name"),
        (JobSpec("t", delay=-1), pgq.OptionError, "jobs[2]: delay"),
        (JobSpec("t", run_at=datetime(2030, 1, 1)), pgq.OptionError, "jobs[2]: run_at is naive"),
        ({"task": "t"}, pgq.ValidationError, "jobs[2] is a dict, not a pgq.JobSpec"),
    ],
)
def test_every_job_is_validated_and_the_error_names_its_position(
    db_url: str, conn: psycopg.Connection[Any], bad: Any, error: type[Exception], words: str
) -> None:
    with open_tx("psycopg", db_url) as tx:
        with pytest.raises(error) as info:
            tx.enqueue_many([JobSpec("t"), JobSpec("t"), bad, JobSpec("t")])
        assert words in str(info.value).replace("a naive", "naive")
        assert len(tx.enqueue_many([JobSpec("t")])) == 1
        tx.commit()
    assert count(conn) == 1


def test_mixed_queues_and_schedules(tx: Tx, conn: psycopg.Connection[Any]) -> None:
    at = datetime(2032, 2, 3, 4, 5, 6, tzinfo=UTC)
    ids = tx.enqueue_many(
        [
            JobSpec("a", {"i": 0}, queue="fast", priority=10),
            JobSpec("b", {"i": 1}, queue="slow", delay=timedelta(minutes=10)),
            JobSpec("c", {"i": 2}, queue="fast", run_at=at, max_attempts=1),
            JobSpec("d", {"i": 3}),
        ]
    )
    tx.commit()
    rows = conn.execute(
        "SELECT id, task, queue, priority, max_attempts, run_at - created_at, run_at"
        " FROM pgq.jobs ORDER BY id"
    ).fetchall()
    assert [row[0] for row in rows] == ids
    assert [row[1:5] for row in rows] == [
        ("a", "fast", 10, 20),
        ("b", "slow", 0, 20),
        ("c", "fast", 0, 1),
        ("d", "default", 0, 20),
    ]
    assert rows[0][5] == timedelta(0) and rows[3][5] == timedelta(0)
    assert rows[1][5] == timedelta(minutes=10)
    assert rows[2][6] == at


def test_unique_keys_inside_a_batch_and_against_live_jobs(
    tx: Tx, conn: psycopg.Connection[Any]
) -> None:
    live = tx.enqueue("t", {"i": -1}, unique_key="live")
    tx.commit()
    ids = tx.enqueue_many(
        [
            JobSpec("t", {"i": 0}, unique_key="a"),
            JobSpec("t", {"i": 1}, unique_key="live"),  # held by a queued job: skipped
            JobSpec("t", {"i": 2}, unique_key="a"),  # taken earlier in this batch: skipped
            JobSpec("t", {"i": 3}),
            JobSpec("t", {"i": 4}, unique_key="b"),
        ]
    )
    assert tx.execute("SELECT 1") == [(1,)]
    tx.commit()
    by_id = args_by_id(conn)
    assert [by_id[job_id] for job_id in ids] == [0, 3, 4]
    assert by_id[live] == -1 and len(by_id) == 4


def test_an_empty_batch_inserts_nothing(tx: Tx, conn: psycopg.Connection[Any]) -> None:
    assert tx.enqueue_many([]) == []
    tx.commit()
    assert count(conn) == 0


def test_any_iterable_of_specs_is_accepted(db_url: str, conn: psycopg.Connection[Any]) -> None:
    with open_tx("psycopg", db_url) as tx:
        ids = tx.enqueue_many(JobSpec("t", {"i": i}) for i in range(5))
        tx.commit()
    assert [args_by_id(conn)[job_id] for job_id in ids] == [0, 1, 2, 3, 4]


def test_a_rolled_back_batch_leaves_nothing(tx: Tx, conn: psycopg.Connection[Any]) -> None:
    tx.enqueue_many([JobSpec("t", {"i": i}) for i in range(100)])
    tx.rollback()
    assert count(conn) == 0
