"""NOTIFY: a worker LISTENing on channel ``pgq`` hears of a due job at COMMIT, never before.

No test here waits for "nothing to happen". PostgreSQL delivers notifications in commit
order, so each check sends a marker notification from another connection and reads up to
it: whatever the enqueue sent is, by then, already in front of the marker.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from enqueue_sessions import KINDS, Listener, Tx, open_tx, prepare_orders, traced

import pgq
from pgq import JobSpec
from pgq.enqueue import COPY_MIN_JOBS, NOTIFY_INTERVAL_DEFAULT, NOTIFY_LIMITER


@pytest.fixture(params=KINDS)
def tx(request: pytest.FixtureRequest, db_url: str, conn: psycopg.Connection[Any]) -> Iterator[Tx]:
    prepare_orders(conn)
    with open_tx(request.param, db_url) as opened:
        yield opened


@pytest.fixture
def one_tx(db_url: str, conn: psycopg.Connection[Any]) -> Iterator[Tx]:
    """For what the SQL decides alone: the session kind makes no difference there."""
    prepare_orders(conn)
    with open_tx("psycopg", db_url) as opened:
        yield opened


def test_the_fence_itself_works(listener: Listener) -> None:
    listener.sender.execute("NOTIFY pgq, 'hello'")
    assert listener.heard() == ["hello"]
    assert listener.heard() == []


def test_notified_with_the_queue_name_at_commit_and_not_before(tx: Tx, listener: Listener) -> None:
    tx.add_order()
    tx.enqueue("t", queue="mail")
    assert listener.heard() == []
    tx.commit()
    assert listener.heard() == ["mail"]


def test_no_notification_for_a_rollback(tx: Tx, listener: Listener) -> None:
    tx.enqueue("t", queue="mail")
    tx.rollback()
    assert listener.heard() == []


def test_no_notification_for_a_rolled_back_savepoint(tx: Tx, listener: Listener) -> None:
    tx.add_order()
    with tx.savepoint():
        tx.enqueue("t", queue="inner")
    tx.enqueue("t", queue="outer")
    tx.commit()
    assert listener.heard() == ["outer"]


def test_a_job_scheduled_for_later_does_not_notify(one_tx: Tx, listener: Listener) -> None:
    one_tx.enqueue("t", queue="later", delay=60)
    one_tx.enqueue("t", queue="later", run_at=datetime.now(UTC) + timedelta(hours=1))
    one_tx.commit()
    assert listener.heard() == []


def test_a_job_due_in_the_past_notifies(one_tx: Tx, listener: Listener) -> None:
    one_tx.enqueue("t", queue="overdue", run_at=datetime(2001, 1, 1, tzinfo=UTC))
    one_tx.enqueue("t", queue="zero", delay=0)
    one_tx.commit()
    assert sorted(listener.heard()) == ["overdue", "zero"]


def test_one_notification_per_queue_per_transaction(one_tx: Tx, listener: Listener) -> None:
    for _ in range(5):
        one_tx.enqueue("t", queue="busy")
    one_tx.enqueue("t", queue="quiet")
    one_tx.commit()
    assert sorted(listener.heard()) == ["busy", "quiet"]


def test_a_skipped_unique_job_does_not_notify(one_tx: Tx, listener: Listener) -> None:
    one_tx.enqueue("t", queue="uniq", unique_key="k")
    one_tx.commit()
    assert listener.heard() == ["uniq"]
    assert one_tx.enqueue("t", queue="uniq", unique_key="k") is None
    one_tx.commit()
    assert listener.heard() == []


def test_enqueue_many_notifies_each_due_queue_once(tx: Tx, listener: Listener) -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    jobs = [
        *(JobSpec("t", {"i": i}, queue="alpha") for i in range(50)),
        *(JobSpec("t", {"i": i}, queue="beta") for i in range(3)),
        JobSpec("t", queue="gamma", delay=30),  # only scheduled jobs: no notification
        JobSpec("t", queue="delta", run_at=later),
        JobSpec("t", queue="beta", run_at=later),
    ]
    tx.add_order()
    tx.enqueue_many(jobs)
    assert listener.heard() == []
    tx.commit()
    assert sorted(listener.heard()) == ["alpha", "beta"]


def test_enqueue_many_rolled_back_sends_nothing(one_tx: Tx, listener: Listener) -> None:
    one_tx.enqueue_many([JobSpec("t", queue="alpha"), JobSpec("t", queue="beta")])
    one_tx.rollback()
    assert listener.heard() == []


def copied(tx: Tx, jobs: list[JobSpec]) -> None:
    """enqueue_many through its COPY path, checked on the wire."""
    with traced(tx) as sent:
        tx.enqueue_many(jobs)
    assert "CopyDone" in sent, sent


@pytest.mark.parametrize("copy", [True, False], ids=["copy", "insert"])
def test_a_large_batch_notifies_each_due_queue_once_at_commit(
    tx: Tx, listener: Listener, monkeypatch: pytest.MonkeyPatch, copy: bool
) -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    past = datetime(2001, 1, 1, tzinfo=UTC)
    jobs = [
        *(JobSpec("t", {"i": i}, queue="alpha") for i in range(COPY_MIN_JOBS)),
        *(JobSpec("t", queue="beta", delay=30) for _ in range(3)),  # only later: none
        JobSpec("t", queue="gamma", run_at=later),  # only later: none
        JobSpec("t", queue="delta", run_at=later),
        JobSpec("t", queue="delta", run_at=past),  # overdue
        JobSpec("t", queue="epsilon", delay=0.0000004),  # rounds to no delay at all
        JobSpec("t", queue="zeta", run_at=later),
        JobSpec("t", queue="zeta"),
    ]
    tx.add_order()
    if not copy:  # the same batch through the INSERT, for the same notifications
        monkeypatch.setattr(importlib.import_module("pgq.enqueue"), "COPY_MIN_JOBS", len(jobs) + 1)
    with traced(tx) as sent:
        tx.enqueue_many(jobs)
    assert ("CopyDone" in sent) == copy
    assert listener.heard() == []
    tx.commit()
    assert sorted(listener.heard()) == ["alpha", "delta", "epsilon", "zeta"]


def test_a_copied_batch_rolled_back_sends_nothing(tx: Tx, listener: Listener) -> None:
    copied(tx, [JobSpec("t", queue="alpha")] * COPY_MIN_JOBS)
    tx.rollback()
    assert listener.heard() == []
    tx.add_order()
    with tx.savepoint():
        copied(tx, [JobSpec("t", queue="inner")] * COPY_MIN_JOBS)
    copied(tx, [JobSpec("t", queue="outer")] * COPY_MIN_JOBS)
    tx.commit()
    assert listener.heard() == ["outer"]


def test_the_statement_reports_whether_it_notified(db_url: str, listener: Listener) -> None:
    # The second column of job_insert tells the caller (and benchmarks) a NOTIFY was queued.
    from pgq import store

    with psycopg.connect(db_url) as direct:
        due = store.insert_job(
            queue="q",
            task="t",
            args="{}",
            priority=0,
            run_at=None,
            delay=0.0,
            max_attempts=1,
            unique_key=None,
        )
        later = store.insert_job(
            queue="q",
            task="t",
            args="{}",
            priority=0,
            run_at=None,
            delay=5.0,
            max_attempts=1,
            unique_key=None,
        )
        [(_, notified_due)] = store.fetch(direct, due)
        [(_, notified_later)] = store.fetch(direct, later)
        assert notified_due is not None and notified_later is None
        direct.rollback()
    assert listener.heard() == []


def test_back_to_back_enqueues_on_one_queue_notify_once(db_url: str, listener: Listener) -> None:
    # The NOTIFY lock serialises commits; a second NOTIFY right after the first for the same
    # queue wakes nobody who is not already awake (pgq.enqueue.NotifyLimiter).
    limiter = NOTIFY_LIMITER
    limiter.interval = 3600.0  # "right after", however slow this machine is today
    try:
        with psycopg.connect(db_url) as first, psycopg.connect(db_url) as second:
            pgq.enqueue(first, "t.a", queue="mails")
            first.commit()
            pgq.enqueue(second, "t.b", queue="mails")
            pgq.enqueue(second, "t.c", queue="billing")
            second.commit()
        assert listener.heard() == ["mails", "billing"]
    finally:
        limiter.interval = NOTIFY_INTERVAL_DEFAULT


def test_every_job_of_a_muted_notification_is_still_stored(
    db_url: str, conn: psycopg.Connection[Any]
) -> None:
    with psycopg.connect(db_url) as session:
        ids = [pgq.enqueue(session, "t.a", queue="mails") for _ in range(3)]
        session.commit()
    rows = conn.execute("SELECT id FROM pgq.jobs WHERE queue = 'mails' ORDER BY id").fetchall()
    assert [row[0] for row in rows] == ids
