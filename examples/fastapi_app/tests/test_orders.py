"""orderapp's own tests: the API through httpx's ASGI transport, the confirmation job
through pgq's real worker (pgq.testing.run_jobs_async), the jobs table through
assert_enqueued. Each test runs on one event loop of its own, and disposes the app's
engine before that loop ends (asyncpg connections belong to the loop that opened them)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from orderapp.db import engine
from orderapp.jobs import confirm_order
from orderapp.main import app

from pgq.testing import assert_enqueued, assert_not_enqueued, enqueued_jobs, run_jobs_async

Scenario = Callable[[httpx.AsyncClient], Awaitable[Any]]


def run(scenario: Scenario) -> Any:
    async def main() -> Any:
        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
                return await scenario(client)
        finally:
            await engine().dispose()

    return asyncio.run(main())


def test_an_order_commits_with_its_job(pgq_database_url: str) -> None:
    async def scenario(client: httpx.AsyncClient) -> Any:
        return await client.post("/orders", json={"item": "cake", "cents": 1999})

    reply = run(scenario)

    assert reply.status_code == 201, reply.text
    job = assert_enqueued(pgq_database_url, confirm_order, order_id=reply.json()["order_id"])
    assert (job.id, job.queue) == (reply.json()["job_id"], "orders")


def test_a_rolled_back_order_leaves_no_job(pgq_database_url: str) -> None:
    async def scenario(client: httpx.AsyncClient) -> Any:
        body = {"item": "cake", "cents": 1999, "fail_after_enqueue": True}
        return await client.post("/orders", json=body)

    reply = run(scenario)

    assert reply.status_code == 409
    assert_not_enqueued(
        pgq_database_url, confirm_order, order_id=reply.json()["detail"]["order_id"]
    )
    assert enqueued_jobs(pgq_database_url, state=None) == []


def test_the_job_confirms_the_order_once(pgq_database_url: str) -> None:
    async def scenario(client: httpx.AsyncClient) -> Any:
        placed = (await client.post("/orders", json={"item": "pie", "cents": 500})).json()
        runs = await run_jobs_async(pgq_database_url)
        again = await run_jobs_async(pgq_database_url)
        order = (await client.get(f"/orders/{placed['order_id']}")).json()
        return placed, runs, again, order

    placed, runs, again, order = run(scenario)

    assert [(r.job_id, r.outcome, r.job.state) for r in runs] == [
        (placed["job_id"], "succeeded", "succeeded")
    ]
    assert again == []
    assert order["confirmed"] == 1
