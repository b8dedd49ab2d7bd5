"""No dashboard page reads pgq.jobs sequentially, on a table of 1.1 million jobs.

Each page of the benchmark (benchmarks/scenarios/dashboard.py) is loaded from a real
uvicorn serving the dashboard on the big table; every statement it runs is recorded and
explained with the same parameters, and no plan may contain a Seq Scan on pgq.jobs.

The shared big table holds no workflow (test_views counts its rows exactly), so the page
of a workflow answers 404; its statements are explained all the same. The benchmark adds
1,000 workflows and checks the plans there too.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from benchmarks.scenarios.dashboard import PAGES, explain, get, page_statements, seq_scans_of_jobs
from tests.web_support import serve

import pgq.web

Conn = psycopg.Connection[Any]


@pytest.fixture(scope="module")
def big_dashboard(big_db_url: str) -> Iterator[str]:
    with serve(pgq.web.create_app(big_db_url)) as base:
        yield base


def test_the_detector_sees_a_sequential_scan(big_db: Conn) -> None:
    # A query no index serves, so the check below cannot pass by never finding anything.
    plan = explain(big_db, b"SELECT count(*) FROM pgq.jobs WHERE args ? 'x'", {})
    assert seq_scans_of_jobs(plan) == ["Seq Scan on pgq.jobs"]


@pytest.mark.parametrize("page", PAGES)
def test_no_page_scans_the_jobs_table(big_db: Conn, big_dashboard: str, page: str) -> None:
    statuses: list[int] = []
    path = PAGES[page].format(workflow=10**9)
    statements = page_statements(lambda: statuses.append(get(big_dashboard + path)[0]))
    assert statuses == [404 if page == "workflow" else 200]
    assert statements, f"{page} ran no statement"
    for statement in statements:
        plan = explain(big_db, statement.query, statement.params)
        assert seq_scans_of_jobs(plan) == [], f"{page}: {statement.name} scans pgq.jobs:\n{plan}"
