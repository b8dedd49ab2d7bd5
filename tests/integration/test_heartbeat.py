"""The heartbeat's schedule follows the shortest lease held, from the moment of the claim.

A heartbeat that went to sleep idle (a third of the worker's 30 s lease) must not sleep on
when a job with a short lease is claimed: the next beat comes within a third of that
lease, so the reaper never sees it lapse.
"""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg

import pgq
from pgq import store
from pgq.db import ReconnectingConnection
from pgq.heartbeat import Heartbeat, HeartbeatResult, Held
from pgq.runner import ClaimedJob

TASK = "heartbeat.work"
SHORT_LEASE = 1.5  # seconds; the heartbeat's idle interval is 10 s


def claim(conn: psycopg.Connection[Any], lease: float) -> ClaimedJob:
    rows = store.fetch(
        conn,
        store.claim_jobs(
            queues=["default"], tasks=[TASK], leases=[lease], limit=1, worker_id="hb-test"
        ),
    )
    assert len(rows) == 1
    return ClaimedJob.from_row(rows[0])


def lease_left(conn: psycopg.Connection[Any], job_id: int) -> float:
    row = conn.execute(
        "SELECT extract(epoch FROM lease_expires_at - now())::float8 FROM pgq.jobs WHERE id = %s",
        (job_id,),
    ).fetchone()
    assert row is not None
    return float(row[0])


def test_a_short_lease_claimed_while_idle_is_renewed_in_time(
    db_url: str, conn: psycopg.Connection[Any]
) -> None:
    pgq.enqueue(conn, TASK)
    held: list[Held] = []
    results: list[HeartbeatResult] = []

    async def main() -> list[float]:
        writer = ReconnectingConnection(db_url, "writer")
        heartbeat = Heartbeat(writer.execute, lambda: held, results.append, 30.0)
        beating = asyncio.create_task(heartbeat.run())
        await asyncio.sleep(0.2)  # asleep for the idle interval, 10 s
        job = claim(conn, SHORT_LEASE)
        held.append(Held(job, SHORT_LEASE))
        heartbeat.claimed(SHORT_LEASE)
        left = []
        for _ in range(6):  # 3 s: twice the lease
            await asyncio.sleep(0.5)
            left.append(lease_left(conn, job.id))
        beating.cancel()
        await writer.close()
        return left

    left = asyncio.run(main())

    assert min(left) > 0, f"the lease lapsed: seconds left {left}"
    assert len(results) >= 4, "a beat every 0.5 s, not one per 10 s"
    assert all(r.extended == 1 and r.lost == [] for r in results)


def test_the_interval_is_a_third_of_the_shortest_lease_held(
    db_url: str, conn: psycopg.Connection[Any]
) -> None:
    pgq.enqueue(conn, TASK)
    job = claim(conn, 30.0)
    held = [Held(job, 30.0)]
    heartbeat = Heartbeat(lambda s: asyncio.sleep(0, []), lambda: held, lambda r: None, 30.0)
    assert heartbeat.interval() == 10.0
    held.append(Held(job, 3.0))
    assert heartbeat.interval() == 1.0
    held.clear()
    assert heartbeat.interval() == 10.0, "idle: a third of the worker's lease"
