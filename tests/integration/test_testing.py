"""pgq.testing against the real database: run_jobs runs due jobs through the real worker
and reports each attempt; enqueued_jobs / assert_enqueued read the real table, inside the
caller's transaction too; the sessions run_jobs refuses (an open transaction) say why.

(The pytest plugin's fixtures are tested from an installed package: test_host_tests.py.)
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.orm import Session

import pgq
from pgq import testing
from pgq.errors import SchemaError, SessionTypeError, TaskRegistrationError
from pgq.registry import Registry
from pgq.retry import Backoff

TASKS = Registry()
ran: list[tuple[str, dict[str, Any]]] = []


@pgq.task(name="t.send_receipt", queue="emails", registry=TASKS)
def send_receipt(order_id: int, cents: int = 0) -> None:
    ran.append(("send_receipt", {"order_id": order_id, "cents": cents}))


class PaymentDeclined(Exception):
    pass


@pgq.task(
    name="t.charge",
    queue="payments",
    max_attempts=2,
    registry=TASKS,
    backoff=Backoff(base=0.0, factor=1.0, cap=0.0, jitter=0.0),
)
def charge(order_id: int) -> None:
    ran.append(("charge", {"order_id": order_id}))
    raise PaymentDeclined(f"card declined for order {order_id}")


@pgq.task(name="t.give_up", registry=TASKS)
def give_up() -> None:
    raise pgq.Fail("not worth it")


@pgq.task(name="t.later", registry=TASKS)
async def later(n: int) -> None:
    ran.append(("later", {"n": n}))


@pgq.task(name="t.totals", registry=TASKS, pass_context=True)
def totals(ctx: pgq.JobContext, order_id: int) -> dict[str, int]:
    ctx.transaction().execute("SELECT 1")  # the task's own transaction works here too
    return {"order_id": order_id, "total": 42}


@pytest.fixture(autouse=True)
def _forget_runs() -> None:
    ran.clear()


@pytest.fixture
def engine(sa_url: str) -> Iterator[Engine]:
    made = create_engine(sa_url)
    yield made
    made.dispose()


def test_run_jobs_runs_due_jobs_and_reports_each_attempt(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        first = send_receipt.enqueue(session, order_id=1, cents=1999)
        second = send_receipt.enqueue(session, order_id=2)

    runs = testing.run_jobs(engine, registry=TASKS)

    assert [(r.job_id, r.task, r.queue, r.attempt, r.outcome) for r in runs] == [
        (first, "t.send_receipt", "emails", 1, "succeeded"),
        (second, "t.send_receipt", "emails", 1, "succeeded"),
    ]
    assert [r.job.state for r in runs] == ["succeeded", "succeeded"]
    assert runs[0].args == {"order_id": 1, "cents": 1999} and runs[0].error is None
    assert ran == [
        ("send_receipt", {"order_id": 1, "cents": 1999}),
        ("send_receipt", {"order_id": 2, "cents": 0}),
    ]
    assert testing.run_jobs(engine, registry=TASKS) == []  # nothing left to do


def test_a_runs_job_carries_the_tasks_result(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        job_id = totals.enqueue(session, order_id=5)

    (run,) = testing.run_jobs(engine, registry=TASKS)

    assert (run.job_id, run.outcome) == (job_id, "succeeded")
    assert run.job.result == {"order_id": 5, "total": 42}
    with Session(engine) as session:
        assert pgq.result(session, job_id) == run.job.result


def test_a_retry_due_at_once_runs_again_until_its_last_attempt(
    engine: Engine, conn: psycopg.Connection[Any]
) -> None:
    job_id = charge.enqueue(conn, order_id=7)

    runs = testing.run_jobs(conn, registry=TASKS)

    # max_attempts=2 and no backoff: both attempts run within one call.
    assert [(r.attempt, r.outcome) for r in runs] == [(1, "retried"), (2, "failed")]
    assert all(r.job_id == job_id and r.job.state == "failed" for r in runs)
    assert isinstance(runs[0].exception, PaymentDeclined)
    assert runs[1].error is not None
    assert runs[1].error["kind"] == f"{__name__}.PaymentDeclined"
    assert runs[1].error["message"] == "card declined for order 7"
    assert runs[1].error["attempt"] == 2


def test_fail_is_reported_with_its_reason(db_url: str, conn: psycopg.Connection[Any]) -> None:
    pgq.enqueue(conn, "t.give_up")

    (run,) = testing.run_jobs(db_url, registry=TASKS)

    assert (run.outcome, run.job.state) == ("failed", "failed")
    assert run.error is not None and (run.error["kind"], run.error["message"]) == (
        "Fail",
        "not worth it",
    )
    assert isinstance(run.exception, pgq.Fail)


def test_scheduled_jobs_wait_unless_included(db_url: str, conn: psycopg.Connection[Any]) -> None:
    later_id = pgq.enqueue(conn, later, {"n": 1}, delay=3600)
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    pgq.enqueue(conn, send_receipt, {"order_id": 3}, run_at=tomorrow)

    assert testing.run_jobs(db_url, registry=TASKS) == []
    runs = testing.run_jobs(db_url, registry=TASKS, include_scheduled=True)

    assert sorted(r.task for r in runs) == ["t.later", "t.send_receipt"]
    assert {r.outcome for r in runs} == {"succeeded"}
    assert ("later", {"n": 1}) in ran
    assert later_id in {r.job_id for r in runs}


def test_only_the_given_queues_run(db_url: str, conn: psycopg.Connection[Any]) -> None:
    pgq.enqueue(conn, send_receipt, {"order_id": 4})
    pgq.enqueue(conn, later, {"n": 2})

    runs = testing.run_jobs(db_url, registry=TASKS, queues=["default"])

    assert [r.task for r in runs] == ["t.later"]
    assert testing.enqueued_jobs(conn, send_receipt)[0].args == {"order_id": 4}


def test_unregistered_tasks_stay_queued(db_url: str, conn: psycopg.Connection[Any]) -> None:
    job_id = pgq.enqueue(conn, "elsewhere.task", {}, queue="emails")

    assert testing.run_jobs(db_url, registry=TASKS) == []
    assert [job.id for job in testing.enqueued_jobs(conn, "elsewhere.task")] == [job_id]


def test_run_jobs_refuses_a_session_with_uncommitted_jobs(engine: Engine, db_url: str) -> None:
    with Session(engine) as session, session.begin():
        send_receipt.enqueue(session, order_id=5)
        with pytest.raises(testing.OpenTransactionError, match="Commit first"):
            testing.run_jobs(session, registry=TASKS)
    with psycopg.connect(db_url) as mine:  # not autocommit: the enqueue opens a transaction
        pgq.enqueue(mine, send_receipt, {"order_id": 6})
        with pytest.raises(testing.OpenTransactionError, match="psycopg connection"):
            testing.run_jobs(mine, registry=TASKS)
        mine.commit()
        # Committed: that one and the session's job both run.
        assert len(testing.run_jobs(mine, registry=TASKS)) == 2


def test_run_jobs_takes_an_async_engine(sa_url: str, conn: psycopg.Connection[Any]) -> None:
    pgq.enqueue(conn, send_receipt, {"order_id": 8})
    engine = create_async_engine(sa_url.replace("+psycopg", "+asyncpg"))
    try:
        (run,) = testing.run_jobs(engine, registry=TASKS)
    finally:
        engine.sync_engine.dispose()
    assert run.outcome == "succeeded"


async def _run_inside_a_loop(db_url: str) -> list[testing.JobRun]:
    return await testing.run_jobs_async(db_url, registry=TASKS)


def test_run_jobs_async_runs_on_the_callers_loop(
    db_url: str, conn: psycopg.Connection[Any]
) -> None:
    import asyncio

    pgq.enqueue(conn, later, {"n": 3})

    (run,) = asyncio.run(_run_inside_a_loop(db_url))

    assert (run.task, run.outcome) == ("t.later", "succeeded")


def test_run_jobs_errors_say_what_to_do(empty_db_url: str, db_url: str) -> None:
    with pytest.raises(SchemaError, match="pgq migrate"):
        testing.run_jobs(empty_db_url, registry=TASKS)
    with pytest.raises(TaskRegistrationError, match="no task is registered"):
        testing.run_jobs(db_url, registry=Registry())
    with pytest.raises(SessionTypeError, match="database URL"):
        testing.run_jobs(object(), registry=TASKS)


def test_assert_enqueued_sees_the_callers_own_transaction(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        job_id = send_receipt.enqueue(session, order_id=9, cents=500)

        job = testing.assert_enqueued(session, send_receipt, order_id=9)
        assert (job.id, job.args, job.queue, job.state) == (
            job_id,
            {"order_id": 9, "cents": 500},
            "emails",
            "queued",
        )
        testing.assert_enqueued(session, "t.send_receipt", order_id=9, cents=500)
        testing.assert_not_enqueued(session, send_receipt, order_id=10)
        session.rollback()
    # Rolled back with the transaction: nobody else ever saw it.
    with Session(engine) as session:
        testing.assert_not_enqueued(session, send_receipt)


def test_assert_enqueued_lists_what_is_there_when_it_fails(
    conn: psycopg.Connection[Any],
) -> None:
    pgq.enqueue(conn, send_receipt, {"order_id": 11})

    with pytest.raises(AssertionError) as failed:
        testing.assert_enqueued(conn, send_receipt, order_id=12)

    message = str(failed.value)
    assert "no queued job of task 't.send_receipt' with args containing {\"order_id\": 12}" in (
        message
    )
    assert 'args {"order_id": 11}' in message
    with pytest.raises(AssertionError, match="none of that task is queued"):
        testing.assert_enqueued(conn, later, n=1)
    with pytest.raises(AssertionError, match="found job 1"):
        testing.assert_not_enqueued(conn, send_receipt, order_id=11)


def test_enqueued_jobs_filters_by_state_queue_and_args(
    db_url: str, conn: psycopg.Connection[Any]
) -> None:
    pgq.enqueue(conn, send_receipt, {"order_id": 13, "cents": 1})
    pgq.enqueue(conn, send_receipt, {"order_id": 14, "cents": 1}, queue="other")
    testing.run_jobs(db_url, registry=TASKS, queues=["emails"])

    assert testing.enqueued_jobs(conn, send_receipt, args={"order_id": 13}) == []
    done = testing.enqueued_jobs(db_url, send_receipt, args={"cents": 1}, state="succeeded")
    assert [job.args["order_id"] for job in done] == [13]
    queued = testing.enqueued_jobs(conn, args={"cents": 1}, queue="other")
    assert [job.args["order_id"] for job in queued] == [14]
    assert len(testing.enqueued_jobs(conn, state=None)) == 2


async def _enqueued_through_asyncpg(url: str) -> list[Any]:
    from sqlalchemy.ext.asyncio import AsyncSession

    engine = create_async_engine(url.replace("+psycopg", "+asyncpg"))
    try:
        async with AsyncSession(engine) as session, session.begin():
            await send_receipt.enqueue(session, order_id=15)
            found: list[Any] = await testing.enqueued_jobs(session, send_receipt)
            with pytest.raises(SessionTypeError, match=r"await pgq\.testing\.enqueued_jobs"):
                testing.assert_enqueued(session, send_receipt)
            return found
    finally:
        await engine.dispose()


def test_enqueued_jobs_on_an_async_session_is_awaited(sa_url: str) -> None:
    import asyncio

    (job,) = asyncio.run(_enqueued_through_asyncpg(sa_url))

    assert (job.task, job.args, job.errors) == ("t.send_receipt", {"order_id": 15}, [])


def test_clear_jobs_empties_the_table_and_restarts_ids(
    db_url: str, conn: psycopg.Connection[Any]
) -> None:
    pgq.enqueue(conn, send_receipt, {"order_id": 16})

    testing.clear_jobs(db_url)

    assert testing.enqueued_jobs(conn, state=None) == []
    assert pgq.enqueue(conn, send_receipt, {"order_id": 17}) == 1
