"""Fixtures shared by the integration tests (see also tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from enqueue_sessions import Listener

from pgq import devdb, migrate

POPULATION_SQL = Path(__file__).resolve().parents[2] / "benchmarks" / "views_population.sql"


@pytest.fixture
def listener(db_url: str) -> Iterator[Listener]:
    """A connection LISTENing on pgq's channel, to see what an enqueue notifies."""
    opened = Listener(db_url)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture(scope="session")
def big_db_url(pg_server: devdb.Server) -> Iterator[str]:
    """1,000,000 finished + 100,000 queued + 100 running jobs, vacuumed and analysed, loaded
    once per run for every test that checks a plan on a big table (read it, never change it).

    VACUUM as well as ANALYZE: autovacuum (tuned in 0001 to run after 5% inserts) would have
    set the visibility map on a real table, and index-only scans depend on it.
    """
    with devdb.scratch_database(pg_server, prefix="pgq_views") as url:
        migrate.upgrade(url)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(POPULATION_SQL.read_bytes())
            conn.execute("VACUUM (ANALYZE) pgq.jobs")
        yield url


@pytest.fixture(scope="session")
def big_db(big_db_url: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection to the big table of ``big_db_url``."""
    with psycopg.connect(big_db_url, autocommit=True) as conn:
        yield conn
