"""The shop's background jobs, and place_order, which enqueues them with the order.

Run them with ``pgq work --app shop.jobs`` (the worker imports this module, which registers
the tasks). Every task may run more than once (pgq executes a job at least once), so each
one checks whether its work is already done.
"""

from __future__ import annotations

import os
import random
import tempfile
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func
from sqlalchemy.orm import Session

import pgq
from shop.models import Order, User, engine

# Where "sent" mail and warehouse messages go: files, so the example needs no mail server.
OUTBOX_DIR_DEFAULT = Path(tempfile.gettempdir()) / "shop-outbox"
REVIEW_REQUEST_DELAY = timedelta(days=3)
# The warehouse API in this example times out on about one call in three, so that running
# the worker shows retries with backoff.
WAREHOUSE_FAILURE_RATE = 0.35


def outbox() -> Path:
    path = Path(os.environ.get("SHOP_OUTBOX") or OUTBOX_DIR_DEFAULT)
    path.mkdir(parents=True, exist_ok=True)
    return path


@pgq.task(name="shop.send_receipt", queue="emails", max_attempts=10)
def send_receipt(order_id: int) -> None:
    """Email the receipt of an order, once."""
    with Session(engine()) as session, session.begin():
        order = session.get(Order, order_id, with_for_update=True)
        if order is None:
            raise pgq.Fail(f"order {order_id} does not exist")
        if order.receipt_sent_at is not None:
            return  # a previous attempt sent it
        receipt = f"To: {order.user.email}\nOrder #{order.id}: {order.total_cents / 100:.2f} EUR\n"
        (outbox() / f"receipt-{order.id}.txt").write_text(receipt)
        order.receipt_sent_at = func.now()


@pgq.task(
    name="shop.notify_warehouse",
    queue="fulfilment",
    max_attempts=3,
    backoff=pgq.Backoff(base=0.5, cap=10.0),
)
def notify_warehouse(order_id: int) -> None:
    """Tell the warehouse to ship an order. Its API is flaky: an exception means "retry"."""
    if random.random() < WAREHOUSE_FAILURE_RATE:
        raise ConnectionError("warehouse API timed out")
    with (outbox() / "warehouse.log").open("a") as log:
        log.write(f"ship order {order_id}\n")


@pgq.task(name="shop.ask_for_review", queue="emails", priority=-10)
def ask_for_review(order_id: int) -> None:
    """A few days after the order, ask the customer for a review (low priority)."""
    (outbox() / f"review-request-{order_id}.txt").write_text(f"How was order #{order_id}?\n")


@pgq.task(name="shop.announce_sale", queue="emails")
def announce_sale(starts_in_seconds: int) -> None:
    """Tell everyone a sale has started (enqueued with a delay, so it runs later)."""
    (outbox() / "sale.txt").write_text(f"The sale is on (announced {starts_in_seconds}s ahead)\n")


def place_order(session: Session, user: User, total_cents: int) -> Order:
    """Insert an order and enqueue its jobs in the caller's transaction; commit is theirs.

    If the transaction rolls back, neither the order nor any of its jobs ever existed.
    """
    order = Order(user=user, total_cents=total_cents)
    session.add(order)
    session.flush()  # assigns order.id, inside the same transaction
    send_receipt.enqueue(session, order_id=order.id)
    # unique_key: one live warehouse notification per order, however often this is called.
    notify_warehouse.configure(unique_key=f"warehouse:{order.id}").enqueue(
        session, order_id=order.id
    )
    ask_for_review.configure(delay=REVIEW_REQUEST_DELAY).enqueue(session, order_id=order.id)
    return order
