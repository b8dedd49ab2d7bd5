"""The bakery's test fixtures, on top of pgq's pytest plugin (installed with pgq-jobs).

``pgq_session_database_url`` is a throwaway database with pgq's schema, made once per run;
``pgq_database_url`` is the same database with no jobs left in it, for each test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from bakery import jobs
from bakery.models import Base
from sqlalchemy import Engine, text


@pytest.fixture(scope="session")
def bakery_schema(pgq_session_database_url: str) -> str:
    # The app's own tables, beside pgq's (an app with alembic would run its migrations here).
    engine = jobs._engine(pgq_session_database_url)
    Base.metadata.create_all(engine)
    return pgq_session_database_url


@pytest.fixture
def engine(
    bakery_schema: str, pgq_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Engine]:
    """The app's engine on a database with no orders and no jobs."""
    monkeypatch.setenv("BAKERY_DATABASE_URL", pgq_database_url)
    engine = jobs.engine()
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE orders RESTART IDENTITY"))
    jobs.SENT.clear()
    jobs.REFUSED.clear()
    yield engine
