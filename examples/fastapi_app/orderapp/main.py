"""The HTTP API: place an order and enqueue its confirmation in one transaction.

    uvicorn orderapp.main:app

POST /orders commits the order and its job together. With ``"fail_after_enqueue": true``
the handler raises after enqueueing, so the transaction rolls back: neither the order nor
its job ever existed, and no worker sees the job. The pgq dashboard is mounted at /pgq
when pgq's ``web`` extra is installed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field
from sqlalchemy import func, select

from orderapp.db import database_url, engine, sessions
from orderapp.jobs import confirm_order
from orderapp.models import Confirmation, Order

try:
    import pgq.web as pgq_web
except ImportError:  # pgq.MissingExtraError: installed without pgq-jobs[web]
    pgq_web = None


class NewOrder(BaseModel):
    item: str = Field(min_length=1, max_length=200)
    cents: int = Field(gt=0)
    fail_after_enqueue: bool = False  # for the demo: roll back after the enqueue


class Placed(BaseModel):
    order_id: int
    job_id: int


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    yield
    await engine().dispose()


app = FastAPI(title="orderapp", lifespan=lifespan)
if pgq_web is not None:
    # Read-only and open: put your own auth= in front of it before it leaves localhost.
    app.mount("/pgq", pgq_web.create_app(database_url()))


@app.post("/orders", status_code=201)
async def place_order(new: NewOrder) -> Placed:
    async with sessions()() as session, session.begin():
        order = Order(item=new.item, cents=new.cents)
        session.add(order)
        await session.flush()  # the order's id, for the job's arguments
        job_id = await confirm_order.enqueue(session, order_id=order.id)
        if new.fail_after_enqueue:
            # Raising inside session.begin() rolls back the order and its job together.
            raise HTTPException(409, {"rolled_back": True, "order_id": order.id, "job_id": job_id})
    return Placed(order_id=order.id, job_id=job_id)


@app.get("/orders/{order_id}")
async def get_order(order_id: int) -> dict[str, object]:
    async with sessions()() as session:
        order = await session.get(Order, order_id)
        if order is None:
            raise HTTPException(404, f"no order {order_id}")
        confirmed = await session.scalar(
            select(func.count()).where(Confirmation.order_id == order_id)
        )
    return {"id": order.id, "item": order.item, "cents": order.cents, "confirmed": confirmed}


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}
