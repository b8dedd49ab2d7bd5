"""Paused queues: pause / resume in the database, and workers that leave a paused queue alone.

Real PostgreSQL and real (in-process) workers; the worker's claims are counted in the
database's own statistics-free way: what ran, and what is still queued.
"""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest
from enqueue_sessions import Listener
from test_claim import run_burst, wait_for, worker_in_thread

import pgq
from pgq import limits
from pgq.errors import OptionError, QueueNameError
from pgq.registry import Registry

Conn = psycopg.Connection[Any]


@pytest.fixture
def ran() -> list[tuple[str, int]]:
    return []


@pytest.fixture
def registry(ran: list[tuple[str, int]]) -> Registry:
    reg = Registry()
    for queue in ("a", "b"):

        @pgq.task(name=f"pause.{queue}", queue=queue, registry=reg, pass_context=True)
        def record(ctx: pgq.JobContext) -> None:
            ran.append((ctx.job.queue, ctx.id))

    return reg


def states(conn: Conn) -> dict[str, list[str]]:
    rows = conn.execute(
        "SELECT queue, array_agg(state::text ORDER BY id) FROM pgq.jobs GROUP BY queue"
    ).fetchall()
    return dict(rows)


def test_pause_and_resume_are_rows_with_since_and_why(conn: Conn) -> None:
    first = limits.pause_queue(conn, "emails", reason="provider down")
    again = limits.pause_queue(conn, "emails")  # no reason: the old one stays
    assert (again.paused_at, again.reason) == (first.paused_at, "provider down")
    assert limits.pause_queue(conn, "emails", "still down").reason == "still down"
    assert [p.queue for p in limits.paused_queues(conn)] == ["emails"]

    lifted = limits.resume_queue(conn, "emails")
    assert lifted is not None and lifted.paused_at == first.paused_at
    assert limits.resume_queue(conn, "emails") is None
    assert limits.paused_queues(conn) == []


def test_pause_checks_its_input_before_sending_anything(conn: Conn) -> None:
    with pytest.raises(QueueNameError):
        limits.pause_queue(conn, "no spaces")
    with pytest.raises(OptionError, match="at most 500"):
        limits.pause_queue(conn, "emails", reason="x" * 501)
    assert limits.paused_queues(conn) == []


def test_pause_and_resume_notify_workers_with_a_payload_no_queue_can_have(db_url: str) -> None:
    heard = Listener(db_url)
    try:
        with psycopg.connect(db_url, autocommit=True) as conn:
            limits.pause_queue(conn, "emails")
            limits.resume_queue(conn, "emails")
            limits.resume_queue(conn, "emails")  # not paused: nothing to tell
        assert heard.heard() == ["!pause", "!pause"]
    finally:
        heard.close()


def test_a_pause_in_an_open_transaction_takes_effect_at_commit(db_url: str, conn: Conn) -> None:
    with psycopg.connect(db_url) as tx:
        limits.pause_queue(tx, "emails")
        assert limits.paused_queues(conn) == []
        tx.commit()
    assert [p.queue for p in limits.paused_queues(conn)] == ["emails"]


def test_a_worker_claims_nothing_from_a_paused_queue(
    db_url: str, conn: Conn, registry: Registry, ran: list[tuple[str, int]]
) -> None:
    limits.pause_queue(conn, "a")
    for _ in range(3):
        pgq.enqueue(conn, "pause.a", queue="a")
        pgq.enqueue(conn, "pause.b", queue="b")

    stats = run_burst(db_url, registry)

    assert stats.claimed == 3
    assert {queue for queue, _ in ran} == {"b"}
    assert states(conn) == {"a": ["queued"] * 3, "b": ["succeeded"] * 3}

    limits.resume_queue(conn, "a")
    run_burst(db_url, registry)
    assert states(conn)["a"] == ["succeeded"] * 3


def test_a_running_worker_stops_claiming_at_a_pause_and_starts_again_at_resume(
    db_url: str, conn: Conn, registry: Registry, ran: list[tuple[str, int]]
) -> None:
    # A long poll interval: only the NOTIFY can make the pause and the resume seen in time.
    with worker_in_thread(db_url, registry, poll_interval=3600) as worker:
        first = pgq.enqueue(conn, "pause.a", queue="a")
        wait_for(lambda: ("a", first) in ran)

        limits.pause_queue(conn, "a")
        wait_for(lambda: "a" in worker._paused)
        held = [pgq.enqueue(conn, "pause.a", queue="a") for _ in range(3)]
        other = pgq.enqueue(conn, "pause.b", queue="b")
        wait_for(lambda: ("b", other) in ran)  # the worker claims: only not from "a"
        assert not any(("a", job_id) in ran for job_id in held)

        limits.resume_queue(conn, "a")
        wait_for(lambda: all(("a", job_id) in ran for job_id in held))


def test_a_pause_outlives_the_worker(
    db_url: str, conn: Conn, registry: Registry, ran: list[tuple[str, int]]
) -> None:
    limits.pause_queue(conn, "a")
    pgq.enqueue(conn, "pause.a", queue="a")
    run_burst(db_url, registry)
    run_burst(db_url, registry)  # a new worker reads the pause from the table
    assert ran == []
    assert states(conn) == {"a": ["queued"]}


def test_a_worker_whose_queues_are_all_paused_waits_without_claiming(
    db_url: str, conn: Conn, registry: Registry
) -> None:
    limits.pause_queue(conn, "a")
    limits.pause_queue(conn, "b")
    job_id = pgq.enqueue(conn, "pause.a", queue="a")
    with worker_in_thread(db_url, registry, poll_interval=0.05) as worker:
        wait_for(lambda: worker._paused == {"a", "b"})
        asyncio.run(asyncio.sleep(0.5))  # ten polls: each reads the pauses, none claims
        assert worker.stats.claimed == 0
    row = conn.execute("SELECT state::text, attempts FROM pgq.jobs WHERE id = %s", [job_id])
    assert row.fetchone() == ("queued", 0)
