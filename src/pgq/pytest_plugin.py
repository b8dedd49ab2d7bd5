"""pgq's pytest plugin: a migrated throwaway database for an application's tests.

Installing pgq registers it (the ``pytest11`` entry point ``pgq``); ``pytest -p no:pgq``
turns it off. Its fixtures:

- ``pgq_server``: the PostgreSQL server, found in the order ``pgq.testing.throwaway_database``
  documents (``$PGQ_TEST_DATABASE_URL`` first); one per test session.
- ``pgq_session_database_url``: a database created on it for the session, with pgq's
  schema, dropped at the end. Override it to build your own schema too (docs/testing.md).
- ``pgq_database_url``: that database with no jobs in it, for each test.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from pgq import devdb, testing


@pytest.fixture(scope="session")
def pgq_server() -> Iterator[devdb.Server]:
    """The PostgreSQL server the tests use (a throwaway cluster is stopped at the end)."""
    with devdb.find_server() as server:
        yield server


@pytest.fixture(scope="session")
def pgq_session_database_url(pgq_server: devdb.Server) -> Iterator[str]:
    """The URL of a database with pgq's schema, created for this test session."""
    with testing.throwaway_database(pgq_server, prefix="pgq_app_test") as url:
        yield url


@pytest.fixture
def pgq_database_url(pgq_session_database_url: str) -> str:
    """The session's database with ``pgq.jobs`` emptied: each test starts with no jobs."""
    testing.clear_jobs(pgq_session_database_url)
    return pgq_session_database_url


def pytest_report_header(config: pytest.Config) -> str:
    if os.environ.get(devdb.TEST_URL_ENV):
        return f"pgq: test databases on the server of ${devdb.TEST_URL_ENV}"
    return "pgq: test databases on the first server found (Docker, localhost:5432, initdb)"
