"""What the tasks of ``apps/pool_tasks.py`` noted, read back for the process tests."""

from __future__ import annotations

import os
from typing import Any

import psycopg


def create_pool_events(conn: psycopg.Connection[Any]) -> None:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS pool_events "
        "(job_id bigint, attempt int, pid int, event text, at timestamptz)"
    )
    conn.execute("CREATE TABLE IF NOT EXISTS pool_gates (job_id bigint PRIMARY KEY)")
    conn.execute("TRUNCATE pool_events, pool_gates")


def events(conn: psycopg.Connection[Any], job_id: int) -> list[tuple[int, int, str]]:
    """(attempt, pid, event) of ``job_id``, in the order they happened."""
    rows = conn.execute(
        "SELECT attempt, pid, event FROM pool_events WHERE job_id = %s ORDER BY at",
        (job_id,),
    ).fetchall()
    return [(a, p, e) for a, p, e in rows]


def event_at(conn: psycopg.Connection[Any], job_id: int, event: str) -> Any:
    row = conn.execute(
        "SELECT max(at) FROM pool_events WHERE job_id = %s AND event = %s", (job_id, event)
    ).fetchone()
    return None if row is None else row[0]


def open_gate(conn: psycopg.Connection[Any], job_id: int) -> None:
    conn.execute("INSERT INTO pool_gates (job_id) VALUES (%s)", (job_id,))


def pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def descendants(pid: int) -> set[int]:
    """The live processes below ``pid`` (children, theirs...), from /proc: a fork server's
    children are not the worker's own."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rpartition(")")[2].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if fields[0] != "Z":
                parents[int(entry)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found
