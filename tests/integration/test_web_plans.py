"""No dashboard page reads pgq.jobs sequentially, on a table of 1.1 million jobs.

Every statement the query layer runs for each page (and for the progress total of "retry
all failed") is recorded as it runs on the big table, then explained with the same
parameters; no plan may contain a Seq Scan on pgq.jobs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from test_views import seq_scans_of_jobs

from pgq import admin, store
from pgq.web import queries

Conn = psycopg.Connection[Any]
F = queries.JobFilter

PAGES: dict[str, Callable[[Conn], object]] = {
    "overview": queries.overview,
    "jobs": lambda c: queries.list_jobs(c, F()),
    "jobs older": lambda c: queries.list_jobs(c, F(), before=500_000),
    "jobs failed": lambda c: queries.list_jobs(c, F(state="failed")),
    "jobs running": lambda c: queries.list_jobs(c, F(state="running")),
    "jobs queued in q1": lambda c: queries.list_jobs(c, F(state="queued", queue="q1")),
    "jobs of a task": lambda c: queries.list_jobs(c, F(task="task.3")),
    "jobs of no task": lambda c: queries.list_jobs(c, F(task="no.such.task")),
    "jobs succeeded in q2": lambda c: queries.list_jobs(c, F(state="succeeded", queue="q2")),
    "job": lambda c: queries.get_job(c, 123_456),
    "failures": queries.failure_groups,
    "failures of q3": lambda c: queries.failure_groups(c, queue="q3"),
    "retry all failed: total": lambda c: admin.count_failed(c, task="task.3"),
}


def explain_plan(conn: Conn, query: bytes, params: dict[str, Any]) -> dict[str, Any]:
    row = conn.execute(b"EXPLAIN (FORMAT JSON) " + query, params).fetchone()
    assert row is not None
    plan: dict[str, Any] = row[0][0]["Plan"]
    return plan


def recorded_statements(conn: Conn, page: Callable[[Conn], object]) -> list[store.Statement]:
    seen: list[store.Statement] = []
    real_fetch = store.fetch

    def fetch(c: Conn, statement: store.Statement) -> list[store.Row]:
        seen.append(statement)
        return real_fetch(c, statement)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(store, "fetch", fetch)
        page(conn)
    return seen


@pytest.mark.parametrize("name", PAGES)
def test_no_page_scans_the_jobs_table(big_db: Conn, name: str) -> None:
    statements = recorded_statements(big_db, PAGES[name])
    assert statements, f"{name} ran no statement"
    for statement in statements:
        plan = explain_plan(big_db, statement.query, statement.params)
        assert seq_scans_of_jobs(plan) == [], f"{name}: {statement.name} scans pgq.jobs:\n{plan}"
