"""Finding and opening the database: URL resolution and connections with clear errors."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.json import set_json_loads

from pgq import store
from pgq.errors import DatabaseUnavailableError, DatabaseUrlError

log = logging.getLogger("pgq.db")

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
        params = conninfo_to_dict(libpq)
    except psycopg.ProgrammingError as exc:
        # libpq quotes the whole URI in some messages: never let its password through.
        reason = " ".join(str(exc).split()).replace(libpq, redact(libpq))
        raise DatabaseUrlError(f"database URL {redact(url)!r} is not valid: {reason}") from None
    _check_ports(url, str(params.get("port") or ""))
    return libpq


def _check_ports(url: str, ports: str) -> None:
    # libpq only reads the port when it connects; check it here so a typo is a URL error.
    for port in ports.split(","):
        if port and not (port.isdigit() and 0 < int(port) < 65536):
            raise DatabaseUrlError(
                f"database URL {redact(url)!r} is not valid: port {port!r} is not a number "
                "between 1 and 65535"
            )


def to_sqlalchemy_url(url: str) -> str:
    """The same database as a SQLAlchemy URL using the psycopg 3 driver."""
    return "postgresql+psycopg://" + to_libpq_url(url).partition("://")[2]


_PASSWORD_PARAM = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^&\s]*)", re.IGNORECASE)


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***``, for messages and logs.

    Covers ``user:password@host``, a ``password=`` query parameter and key=value strings.
    """
    url = _PASSWORD_PARAM.sub(r"\1***", url)
    scheme, sep, rest = url.partition("://")
    authority, slash, tail = rest.partition("/")
    userinfo, at, hosts = authority.rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return url
    return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{hosts}{slash}{tail}"


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


RECONNECT_DELAY_MIN = 0.1  # seconds; doubles after each failed try
RECONNECT_DELAY_MAX = 5.0


_JSON_DECODER = json.JSONDecoder()


def load_json(data: str | bytes) -> Any:
    """Decode a json/jsonb value as PostgreSQL sends it: UTF-8, no surrounding whitespace.

    psycopg's default (``json.loads`` of bytes) sniffs the encoding and checks for
    whitespace first; for every claimed job's args that was a tenth of the worker's time."""
    text = data if isinstance(data, str) else data.decode()
    return _JSON_DECODER.raw_decode(text)[0]


class ReconnectingConnection:
    """One async autocommit connection that comes back after the server drops it.

    ``execute`` runs a statement once; on a connection error it closes the connection
    and raises, and the next call reconnects, waiting with capped exponential backoff so a
    database that is down is not hammered and the caller does not spin.
    """

    def __init__(self, url: str, name: str, setup: store.Statement | None = None) -> None:
        """``setup``, when given, runs on every new connection before anything else."""
        self._url = url
        self._name = name
        self._setup = setup
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._delay = 0.0
        self.reconnects = 0

    async def connection(self) -> psycopg.AsyncConnection[Any]:
        while self._conn is None or self._conn.closed:
            if self._delay:
                await asyncio.sleep(self._delay)
            try:
                conn = await connect_async(
                    self._url, autocommit=True, application_name=f"pgq {self._name}"
                )
                set_json_loads(load_json, conn)
                if self._setup is not None:
                    try:
                        await store.fetch_async(conn, self._setup)
                    except BaseException:
                        await conn.close()  # never keep a connection without its settings
                        raise
                self._conn = conn
            except DatabaseUnavailableError as exc:
                self._delay = min(max(self._delay * 2, RECONNECT_DELAY_MIN), RECONNECT_DELAY_MAX)
                log.warning("%s connection: %s; retrying in %.1fs", self._name, exc, self._delay)
                continue
            if self._delay:
                self.reconnects += 1
                log.info("%s connection re-established", self._name)
            self._delay = 0.0
        return self._conn

    async def execute(self, statement: store.Statement) -> list[store.Row]:
        conn = await self.connection()
        try:
            return await store.fetch_async(conn, statement)
        except psycopg.OperationalError:
            await self.discard()
            raise

    async def discard(self) -> None:
        """Drop the connection after an error; the next use reconnects (after a pause)."""
        conn, self._conn = self._conn, None
        self._delay = max(self._delay, RECONNECT_DELAY_MIN)
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()
