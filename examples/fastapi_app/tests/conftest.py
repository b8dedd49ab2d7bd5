"""orderapp's test database: pgq's pytest plugin finds a server and makes a throwaway
database; this override has the app's own alembic build it, pgq's branch included, the
way production does (docs/testing.md, "The fixtures")."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config

import pgq.testing
from pgq import devdb

ALEMBIC_INI = Path(__file__).resolve().parents[1] / "alembic.ini"


@pytest.fixture(scope="session")
def pgq_session_database_url(pgq_server: devdb.Server) -> Iterator[str]:
    with pgq.testing.throwaway_database(pgq_server, migrated=False) as url:
        os.environ["DATABASE_URL"] = url  # what migrations/env.py and orderapp.db read
        command.upgrade(Config(str(ALEMBIC_INI)), "heads")
        yield url
