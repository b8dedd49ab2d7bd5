"""Placing an order: the row and its jobs commit together, or not at all."""

from __future__ import annotations

from sqlalchemy.orm import Session

from bakery.jobs import ask_for_review, send_receipt
from bakery.models import Order

REVIEW_DELAY = 3 * 24 * 3600  # seconds


def place_order(session: Session, email: str, cakes: int) -> Order:
    """Add an order and enqueue its receipt and, three days later, a review request, in
    the caller's transaction."""
    if cakes < 1:
        raise ValueError("an order needs at least one cake")
    order = Order(email=email, cakes=cakes)
    session.add(order)
    session.flush()  # the order's id, for the jobs' arguments
    send_receipt.enqueue(session, order_id=order.id)
    ask_for_review.configure(delay=REVIEW_DELAY).enqueue(session, order_id=order.id)
    return order
