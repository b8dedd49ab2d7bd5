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
# PgBouncer transaction pooling (docs/pgbouncer.md). PGQ_PGBOUNCER=1 says the database URL
# goes through such a pooler; PGQ_DIRECT_URL, when set, reaches PostgreSQL itself and is
# where the worker LISTENs and `pgq migrate` connects.
PGBOUNCER_ENV = "PGQ_PGBOUNCER"
DIRECT_URL_ENV = "PGQ_DIRECT_URL"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


def resolve_database_url(explicit: str | None = None) -> str:
    """The URL to use: ``explicit``, else $PGQ_DATABASE_URL, else $DATABASE_URL, else the default.

    Accepts SQLAlchemy's ``postgresql+psycopg://`` form and returns a libpq URL.
    Raises DatabaseUrlError when the URL is not a PostgreSQL URL.
    """
    url = explicit or next((os.environ[v] for v in URL_ENV_VARS if os.environ.get(v)), None)
    return to_libpq_url(url or DATABASE_URL_DEFAULT)


def pgbouncer_mode() -> bool:
    """True when $PGQ_PGBOUNCER says pgq's connections go through PgBouncer in transaction
    pooling mode (1, true, yes or on; unset, empty, 0, false, no or off mean direct).

    Raises DatabaseUrlError for any other value, so a typo never silently means "direct".
    """
    value = os.environ.get(PGBOUNCER_ENV, "").strip().lower()
    if value in _TRUE or value in _FALSE:
        return value in _TRUE
    raise DatabaseUrlError(
        f"${PGBOUNCER_ENV} is {os.environ[PGBOUNCER_ENV]!r}: set it to 1 when pgq connects "
        "through PgBouncer in transaction pooling mode, or 0 (or leave it unset) when not"
    )


def resolve_direct_url(explicit: str | None = None) -> str | None:
    """The URL that reaches PostgreSQL without a pooler: ``explicit``, else $PGQ_DIRECT_URL,
    else None. Raises DatabaseUrlError when it is not a PostgreSQL URL."""
    url = explicit or os.environ.get(DIRECT_URL_ENV)
    return to_libpq_url(url) if url else None


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


def connect(url: str, *, pgbouncer: bool | None = None, **kwargs: Any) -> psycopg.Connection[Any]:
    """Open a sync connection, or raise DatabaseUnavailableError with a one-line reason.

    ``pgbouncer`` (None: :func:`pgbouncer_mode`) opens it fit for PgBouncer's transaction
    pooling: see :func:`connection_options`."""
    connection_options(kwargs, pgbouncer)
    try:
        return psycopg.connect(url, **kwargs)
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailableError(_unavailable(url, exc)) from None


async def connect_async(
    url: str, *, pgbouncer: bool | None = None, **kwargs: Any
) -> psycopg.AsyncConnection[Any]:
    """Open an async connection, or raise DatabaseUnavailableError with a one-line reason.

    ``pgbouncer`` as in :func:`connect`."""
    connection_options(kwargs, pgbouncer)
    try:
        return await psycopg.AsyncConnection.connect(url, **kwargs)
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailableError(_unavailable(url, exc)) from None


def connection_options(kwargs: dict[str, Any], pgbouncer: bool | None = None) -> dict[str, Any]:
    """Fill in pgq's defaults for ``psycopg.connect`` keyword arguments (in place).

    Behind PgBouncer in transaction pooling mode (``pgbouncer``; None: :func:`pgbouncer_mode`)
    a connection's consecutive transactions may run on different server connections, so
    psycopg must never prepare a statement (``prepare_threshold=None``): it would be missing
    on the next server connection, or clash with another client's statement of the same
    name on it. PgBouncer only gives a server connection back, it resets nothing, so
    whoever connects this way must also leave no session state behind (no plain SET,
    session advisory lock, LISTEN or temporary table).
    """
    kwargs.setdefault("connect_timeout", CONNECT_TIMEOUT_DEFAULT)
    if pgbouncer_mode() if pgbouncer is None else pgbouncer:
        kwargs.setdefault("prepare_threshold", None)
    return kwargs


# SQLSTATEs of a prepared statement that is missing or already there: the sign of psycopg's
# prepared statements going through PgBouncer in transaction pooling mode.
_PREPARED_STATEMENT_ERRORS = ("26000", "42P05")


def describe_error(exc: BaseException) -> str:
    """``exc`` as one line for a log, with what to do when it looks like PgBouncer's."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if getattr(exc, "sqlstate", None) in _PREPARED_STATEMENT_ERRORS:
        text += (
            f" (a prepared statement went through a pooler: if this URL is PgBouncer in "
            f"transaction pooling mode, set {PGBOUNCER_ENV}=1; see docs/pgbouncer.md)"
        )
    return text


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

    def __init__(
        self,
        url: str,
        name: str,
        setup: store.Statement | None = None,
        *,
        pgbouncer: bool | None = None,
    ) -> None:
        """``setup``, when given, runs on every new connection before anything else;
        ``pgbouncer`` as in :func:`connect`."""
        self._url = url
        self._name = name
        self._setup = setup
        self._pgbouncer = pgbouncer
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._delay = 0.0
        self.reconnects = 0

    async def connection(self) -> psycopg.AsyncConnection[Any]:
        while self._conn is None or self._conn.closed:
            if self._delay:
                await asyncio.sleep(self._delay)
            try:
                conn = await connect_async(
                    self._url,
                    pgbouncer=self._pgbouncer,
                    autocommit=True,
                    application_name=f"pgq {self._name}",
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
