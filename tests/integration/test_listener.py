"""The worker's listener on its own: it wakes the worker for its queues' notifications only,
once after every (re)connect, and comes back after its backend is terminated."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import psycopg

from pgq.listener import Listener

WAIT = 10.0  # seconds any single expectation may take
QUIET = 0.5  # seconds a notification for another queue is given to (wrongly) wake it
LISTENER_PID = (
    "SELECT pid FROM pg_stat_activity "
    "WHERE datname = current_database() AND application_name = 'pgq listener'"
)


async def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def listener_pid(conn: psycopg.Connection[Any]) -> int | None:
    row = conn.execute(LISTENER_PID).fetchone()
    return None if row is None else int(row[0])


def test_wakes_for_its_queues_only_and_again_after_reconnecting(db_url: str) -> None:
    async def scenario() -> None:
        woken: list[float] = []
        listener = Listener(db_url, {"mine", "also.mine"}, lambda: woken.append(time.monotonic()))
        task = asyncio.create_task(listener.run())
        try:
            with psycopg.connect(db_url, autocommit=True) as conn:
                await until(lambda: len(woken) == 1, "the wake-up after LISTEN")

                conn.execute("SELECT pg_notify('pgq', 'theirs')")
                conn.execute("SELECT pg_notify('other_channel', 'mine')")
                await asyncio.sleep(QUIET)
                assert len(woken) == 1, "woken by another queue's or channel's notification"

                conn.execute("SELECT pg_notify('pgq', 'mine')")
                await until(lambda: len(woken) == 2, "the wake-up for its queue")
                conn.execute("SELECT pg_notify('pgq', 'also.mine'), pg_notify('pgq', 'mine')")
                await until(lambda: len(woken) == 4, "one wake-up per notification")

                old = listener_pid(conn)
                conn.execute("SELECT pg_terminate_backend(%s)", [old])
                await until(lambda: len(woken) == 5, "the wake-up after reconnecting")
                assert listener_pid(conn) not in (None, old)
                assert listener.reconnects == 1

                conn.execute("SELECT pg_notify('pgq', 'mine')")
                await until(lambda: len(woken) == 6, "a wake-up on the new connection")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await listener.close()

    asyncio.run(scenario())
