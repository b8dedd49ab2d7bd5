"""Finding and opening the database: URL resolution and connections with clear errors."""

from __future__ import annotations

import os
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from pgq.errors import DatabaseUnavailableError, DatabaseUrlError

DATABASE_URL_DEFAULT = "postgresql://postgres@localhost:5432/postgres"
URL_ENV_VARS = ("PGQ_DATABASE_URL", "DATABASE_URL")
CONNECT_TIMEOUT_DEFAULT = 5
_SCHEMES = ("postgresql://", "postgres://")


def resolve_database_url(explicit: str | None = None) -> str:
    """The URL to use: ``explicit``, else $PGQ_DATABASE_URL, else $DATABASE_URL, else the default.

    Accepts SQLAlchemy's ``postgresql+psycopg://`` form and returns a libpq URL.
    Raises DatabaseUrlError when the URL is not a PostgreSQL URL.
    """
    url = explicit or next((os.environ[v] for v in URL_ENV_VARS if os.environ.get(v)), None)
    return to_libpq_url(url or DATABASE_URL_DEFAULT)


def to_libpq_url(url: str) -> str:
    """``postgresql+psycopg://…`` → ``postgresql://…``; raise DatabaseUrlError if not PostgreSQL."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise DatabaseUrlError(
            f"database URL {redact(url)!r} is not a URL like postgresql://user@host:5432/dbname"
        )
    base, _, driver = scheme.partition("+")
    if base not in ("postgresql", "postgres") or driver not in ("", "psycopg"):
        raise DatabaseUrlError(
            f"database URL scheme {scheme!r} is not supported; use "
            "postgresql:// or postgresql+psycopg://"
        )
    libpq = f"postgresql://{rest}"
    try:
        conninfo_to_dict(libpq)
    except psycopg.ProgrammingError as exc:
        raise DatabaseUrlError(f"database URL {redact(url)!r} is not valid: {exc}") from None
    return libpq


def to_sqlalchemy_url(url: str) -> str:
    """The same database as a SQLAlchemy URL using the psycopg 3 driver."""
    return "postgresql+psycopg://" + to_libpq_url(url).partition("://")[2]


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***``, for messages and logs."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, hostpart = rest.rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return url
    return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{hostpart}"


def connect(url: str, **kwargs: Any) -> psycopg.Connection[Any]:
    """Open a sync connection, or raise DatabaseUnavailableError with a one-line reason."""
    kwargs.setdefault("connect_timeout", CONNECT_TIMEOUT_DEFAULT)
    try:
        return psycopg.connect(url, **kwargs)
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailableError(_unavailable(url, exc)) from None


async def connect_async(url: str, **kwargs: Any) -> psycopg.AsyncConnection[Any]:
    """Open an async connection, or raise DatabaseUnavailableError with a one-line reason."""
    kwargs.setdefault("connect_timeout", CONNECT_TIMEOUT_DEFAULT)
    try:
        return await psycopg.AsyncConnection.connect(url, **kwargs)
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailableError(_unavailable(url, exc)) from None


def _unavailable(url: str, exc: Exception) -> str:
    reason = " ".join(str(exc).split()) or type(exc).__name__
    return f"cannot connect to {redact(url)}: {reason}"
