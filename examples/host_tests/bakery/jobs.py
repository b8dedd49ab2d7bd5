"""The bakery's tasks. Each may run more than once (pgq runs a job at least once), so each
checks whether its work is done."""

from __future__ import annotations

import functools
import os

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session

import pgq
from bakery.models import Order


class MailServerDown(Exception):
    pass


# The mail "server": addresses it refuses, so the tests can make a send fail.
REFUSED: set[str] = set()
SENT: list[tuple[str, str]] = []


def engine() -> Engine:
    return _engine(os.environ["BAKERY_DATABASE_URL"])


@functools.cache
def _engine(url: str) -> Engine:
    return create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))


@pgq.task(name="bakery.send_receipt", queue="emails", max_attempts=3)
def send_receipt(order_id: int) -> None:
    with Session(engine()) as session, session.begin():
        order = session.get(Order, order_id, with_for_update=True)
        if order is None or order.receipt_sent:
            return
        if order.email in REFUSED:
            raise MailServerDown(f"refused {order.email}")
        SENT.append((order.email, f"receipt for {order.cakes} cakes"))
        order.receipt_sent = True


@pgq.task(name="bakery.ask_for_review", queue="emails")
def ask_for_review(order_id: int) -> None:
    with Session(engine()) as session:
        order = session.get(Order, order_id)
        if order is not None:
            SENT.append((order.email, "how were the cakes?"))
