"""Enqueueing on a psycopg connection in pipeline mode: the ids come back at once (the
statement's result is synced), and the jobs still commit or roll back with the caller's
transaction."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg

import pgq
from pgq import JobSpec

IDS_AND_TASKS = "SELECT id, task FROM pgq.jobs ORDER BY id"


def jobs(conn: psycopg.Connection[Any]) -> list[tuple[int, str]]:
    return [(int(id_), task) for id_, task in conn.execute(IDS_AND_TASKS).fetchall()]


def test_enqueue_and_enqueue_many_return_their_ids_in_a_pipeline(
    db_url: str, conn: psycopg.Connection[Any]
) -> None:
    with psycopg.connect(db_url) as mine:
        with mine.pipeline():
            one = pgq.enqueue(mine, "t.one")
            many = pgq.enqueue_many(mine, [JobSpec("t.many", {"i": i}) for i in range(3)])
            again = pgq.enqueue(mine, "t.unique", unique_key="k")
            taken = pgq.enqueue(mine, "t.unique", unique_key="k")
        mine.commit()

    assert isinstance(one, int) and taken is None
    assert jobs(conn) == [(one, "t.one"), *[(i, "t.many") for i in many], (again, "t.unique")]


def test_a_pipeline_rollback_takes_the_jobs_back(
    db_url: str, conn: psycopg.Connection[Any]
) -> None:
    with psycopg.connect(db_url) as mine:
        with mine.pipeline():
            assert pgq.enqueue(mine, "t.one") is not None
        mine.rollback()

    assert jobs(conn) == []


def test_an_async_pipeline_returns_the_ids_too(db_url: str, conn: psycopg.Connection[Any]) -> None:
    async def enqueue() -> tuple[Any, Any]:
        async with await psycopg.AsyncConnection.connect(db_url) as mine:
            async with mine.pipeline():
                one = await pgq.enqueue(mine, "t.one")
                many = await pgq.enqueue_many(mine, [JobSpec("t.many") for _ in range(2)])
            await mine.commit()
        return one, many

    one, many = asyncio.run(enqueue())

    assert jobs(conn) == [(one, "t.one"), *[(i, "t.many") for i in many]]
