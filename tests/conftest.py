"""Fixtures shared by every tier: a real PostgreSQL, found the way DESIGN.md orders it.

The suite creates its own database (migrated once) and drops it at the end. Tests that
need an empty database get one of their own.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from pgq import devdb, migrate
from pgq.enqueue import NOTIFY_LIMITER


@pytest.fixture(scope="session")
def pg_server() -> Iterator[devdb.Server]:
    with devdb.find_server() as server:
        yield server


@pytest.fixture(scope="session")
def migrated_url(pg_server: devdb.Server) -> Iterator[str]:
    """A database migrated to the newest schema, shared by the whole run."""
    with devdb.scratch_database(pg_server) as url:
        migrate.upgrade(url)
        yield url


@pytest.fixture
def db_url(migrated_url: str) -> str:
    """The migrated database with an empty jobs table."""
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        conn.execute("TRUNCATE pgq.jobs RESTART IDENTITY")
    return migrated_url


@pytest.fixture
def empty_db_url(pg_server: devdb.Server) -> Iterator[str]:
    """A database of its own, with nothing in it."""
    with devdb.scratch_database(pg_server, prefix="pgq_empty") as url:
        yield url


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection for looking at (and arranging) rows."""
    with psycopg.connect(db_url, autocommit=True) as connection:
        yield connection


@pytest.fixture
def sa_url(db_url: str) -> str:
    return db_url.replace("postgresql://", "postgresql+psycopg://", 1)


def pytest_report_header(config: pytest.Config) -> str:
    source = os.environ.get(devdb.TEST_URL_ENV) and f"${devdb.TEST_URL_ENV}"
    return f"pgq database: {source or 'found by pgq.devdb (see DESIGN.md order)'}"


@pytest.fixture(autouse=True)
def _fresh_notify_limiter() -> None:
    """Each test starts with no recent NOTIFY remembered (see pgq.enqueue.NotifyLimiter)."""
    NOTIFY_LIMITER.reset()
