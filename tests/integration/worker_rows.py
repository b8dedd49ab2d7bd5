"""Rows of pgq.workers for the integration tests: written with the heartbeat's own upsert,
read back, and aged by hand (as if a worker had stopped beating)."""

from __future__ import annotations

from typing import Any

import psycopg

from pgq import store
from pgq.worker_registry import Presence

Conn = psycopg.Connection[Any]


def register(
    conn: Conn,
    worker_id: str,
    *,
    queues: tuple[str, ...] = ("default",),
    tasks: dict[str, str] | None = None,
    running: int = 0,
) -> None:
    """One heartbeat of a worker holding nothing: the upsert the worker runs."""
    presence = Presence(worker_id, queues, tasks or {"t.a": "default"}, 4, "host-a", 4242)
    store.fetch(
        conn, store.extend_leases(ids=[], tokens=[], leases=[], worker=presence.row(running))
    )


def last_seen(conn: Conn, worker_id: str, ago: str) -> None:
    """Move a worker's last heartbeat into the past (as if it had stopped beating)."""
    conn.execute(
        "UPDATE pgq.workers SET last_seen_at = now() - %s::interval WHERE id = %s",
        (ago, worker_id),
    )


def workers(conn: Conn) -> dict[str, dict[str, Any]]:
    """Every row of pgq.workers by id, as dicts."""
    cur = conn.execute("SELECT * FROM pgq.workers")
    names = [c.name for c in cur.description or []]
    return {row[0]: dict(zip(names, row, strict=True)) for row in cur.fetchall()}
