"""The bakery's own tests of its task code, with pgq.testing: what an order enqueues, and
what its jobs do when a real pgq worker runs them."""

from __future__ import annotations

import pytest
from bakery import jobs
from bakery.jobs import ask_for_review, send_receipt
from bakery.models import Order
from bakery.orders import place_order
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from pgq.testing import assert_enqueued, assert_not_enqueued, enqueued_jobs, run_jobs


def test_an_order_enqueues_its_receipt_in_the_same_transaction(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        order = place_order(session, "ada@example.com", cakes=2)

        # Seen inside the transaction, before anything is committed.
        job = assert_enqueued(session, send_receipt, order_id=order.id)
        assert job.queue == "emails"
        review = assert_enqueued(session, "bakery.ask_for_review", order_id=order.id)
        assert review.run_at > job.run_at


def test_a_rolled_back_order_leaves_no_job(engine: Engine) -> None:
    with Session(engine) as session:
        with pytest.raises(ValueError), session.begin():
            place_order(session, "ada@example.com", cakes=1)
            place_order(session, "bob@example.com", cakes=0)  # refused: all rolls back

        assert_not_enqueued(session, send_receipt)
        assert enqueued_jobs(session, state=None) == []


def test_the_receipt_job_sends_the_receipt_once(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        order_id = place_order(session, "ada@example.com", cakes=3).id

    runs = run_jobs(engine)

    # Only the receipt was due; the review request waits three days.
    assert [(run.task, run.outcome) for run in runs] == [("bakery.send_receipt", "succeeded")]
    assert jobs.SENT == [("ada@example.com", "receipt for 3 cakes")]
    with Session(engine) as session:
        assert session.scalars(select(Order.receipt_sent)).one() is True
        assert_enqueued(session, ask_for_review, order_id=order_id)


def test_a_refused_mail_is_retried_then_fails(engine: Engine) -> None:
    jobs.REFUSED.add("eve@example.com")
    with Session(engine) as session, session.begin():
        place_order(session, "eve@example.com", cakes=1)

    (run,) = run_jobs(engine)

    assert run.outcome == "retried"  # max_attempts=3: waits for its backoff now
    assert isinstance(run.exception, jobs.MailServerDown)
    assert run.error is not None and run.error["kind"] == "bakery.jobs.MailServerDown"
    assert run.job.state == "queued" and jobs.SENT == []


def test_scheduled_jobs_run_when_included(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        place_order(session, "ada@example.com", cakes=1)

    runs = run_jobs(engine, include_scheduled=True)

    assert sorted(run.task for run in runs) == ["bakery.ask_for_review", "bakery.send_receipt"]
    assert ("ada@example.com", "how were the cakes?") in jobs.SENT
