"""Fixtures shared by every tier: a real PostgreSQL, found the way DESIGN.md orders it.

The suite creates its own database (migrated once) and drops it at the end. Tests that
need an empty database get one of their own.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from tests import installed

from pgq import devbouncer, devdb, migrate
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
    """The migrated database with no jobs and no registered workers."""
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        conn.execute(
            "TRUNCATE pgq.jobs, pgq.queue_pauses, pgq.job_dependencies, pgq.workers, "
            "pgq.concurrency_keys, pgq.concurrency_wakeups, pgq.rate_limits RESTART IDENTITY"
        )
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


@pytest.fixture(scope="session")
def pgbouncer(pg_server: devdb.Server) -> Iterator[devbouncer.PgBouncer]:
    """PgBouncer in transaction pooling mode in front of the test server, with ONE server
    connection per database: every client shares it, so whatever one leaves behind (a
    prepared statement, a SET, a LISTEN, a session lock) the next one meets."""
    if devbouncer.find_binary() is None:
        pytest.skip(
            "pgbouncer is not installed (apt-get install pgbouncer): the PgBouncer "
            "transaction-mode tests need the binary on $PATH or in /usr/sbin"
        )
    with devbouncer.start(pg_server.url, pool_size=1) as bouncer:
        yield bouncer


@pytest.fixture
def bouncer_url(db_url: str, pgbouncer: devbouncer.PgBouncer) -> str:
    """The test database (empty jobs table) through PgBouncer, its server connection clean."""
    url = pgbouncer.url(db_url)
    with psycopg.connect(url, autocommit=True, prepare_threshold=None) as pooled:
        pooled.execute("DISCARD ALL")  # whatever an earlier test left on it
    return url


@pytest.fixture
def pool_state(bouncer_url: str) -> Callable[[], devbouncer.SessionState]:
    """Reads what the pooled server connection carries now (see devbouncer.session_state)."""

    def read() -> devbouncer.SessionState:
        with psycopg.connect(bouncer_url, autocommit=True, prepare_threshold=None) as pooled:
            return devbouncer.session_state(pooled)

    return read


def pytest_report_header(config: pytest.Config) -> str:
    source = os.environ.get(devdb.TEST_URL_ENV) and f"${devdb.TEST_URL_ENV}"
    return f"pgq database: {source or 'found by pgq.devdb (see DESIGN.md order)'}"


@pytest.fixture(autouse=True)
def _fresh_notify_limiter() -> None:
    """Each test starts with no recent NOTIFY remembered (see pgq.enqueue.NotifyLimiter)."""
    NOTIFY_LIMITER.reset()


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """pgq built as a wheel from this checkout (once per test run)."""
    return installed.build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="session")
def pgq_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> installed.Venv:
    """A virtualenv of its own with the wheel installed, as a host application has pgq
    (see tests/installed.py for where its dependencies come from)."""
    return installed.make_venv(tmp_path_factory.mktemp("venv") / "venv", wheel)
