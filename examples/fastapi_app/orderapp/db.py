"""Where the database is, and the app's async engine on it (asyncpg)."""

from __future__ import annotations

import functools
import os

from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

DATABASE_URL_DEFAULT = "postgresql://postgres@localhost:5432/orderapp"


def database_url() -> str:
    """A plain PostgreSQL URL: ``pgq work`` and ``alembic`` read the same $DATABASE_URL."""
    return os.environ.get("DATABASE_URL") or DATABASE_URL_DEFAULT


def sqlalchemy_url(driver: str) -> str:
    return database_url().replace("postgresql://", f"postgresql+{driver}://", 1)


@functools.cache
def engine() -> AsyncEngine:
    # One engine per process: the API's, or the worker's (whose async tasks run on its loop).
    return create_async_engine(sqlalchemy_url("asyncpg"), pool_size=5)


@functools.cache
def sessions() -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine(), expire_on_commit=False)
