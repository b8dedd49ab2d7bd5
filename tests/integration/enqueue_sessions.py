"""Every kind of session pgq.enqueue accepts, behind one small synchronous interface.

The enqueue tests are written once and run for each kind. Async kinds run on a private
event loop (``asyncio.Runner``) that lives as long as the transaction, so test bodies stay
plain sequential code while the session under test is a real ``AsyncSession``,
``AsyncConnection`` or ``psycopg.AsyncConnection``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import os
import re
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import psycopg
from psycopg import pq
from sqlalchemy import create_engine
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

import pgq

SYNC_KINDS = ("sa_session", "sa_connection", "psycopg")
ASYNC_KINDS = ("sa_async_session", "sa_async_connection", "psycopg_async")
KINDS = SYNC_KINDS + ASYNC_KINDS
# An AsyncSession on asyncpg, the usual FastAPI driver. Not in KINDS: the tests that trace
# psycopg's wire messages cannot run on it.
ASYNCPG_KIND = "sa_asyncpg_session"

ORDERS_TABLE = "enqueue_test_orders"  # the "business" table a host app writes next to a job
WAIT_TIMEOUT = 10.0  # seconds a test waits for something that should happen at once


def sa_url(db_url: str) -> str:
    return db_url.replace("postgresql://", "postgresql+psycopg://", 1)


class Tx:
    """One open transaction on one kind of session. Methods return plain values."""

    def __init__(self, kind: str, session: Any, runner: asyncio.Runner | None) -> None:
        self.kind = kind
        self.session = session
        self.runner = runner
        self.is_async = runner is not None

    # -- pgq through this session ----------------------------------------------------------

    def through(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(session, *args, **kwargs)``, awaited for async kinds.

        Also checks the promise that sync sessions get a value and async ones an awaitable.
        """
        result = fn(self.session, *args, **kwargs)
        assert inspect.isawaitable(result) == self.is_async, (self.kind, result)
        return self.wait(result)

    def enqueue(self, *args: Any, **kwargs: Any) -> Any:
        return self.through(pgq.enqueue, *args, **kwargs)

    def enqueue_many(self, jobs: Any) -> Any:
        return self.through(pgq.enqueue_many, jobs)

    # -- the transaction -------------------------------------------------------------------

    def wait(self, value: Any) -> Any:
        if not inspect.isawaitable(value):
            return value
        assert self.runner is not None, "a sync session returned an awaitable"
        return self.runner.run(_awaited(value))

    def execute(self, query: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def add_order(self, note: str = "order") -> int:
        """Write a business row in this transaction, as the host app would."""
        rows = self.execute(
            f"INSERT INTO {ORDERS_TABLE} (note) VALUES (%(note)s) RETURNING id", {"note": note}
        )
        return int(rows[0][0])

    def backend_pid(self) -> int:
        return int(self.execute("SELECT pg_backend_pid()")[0][0])

    def commit(self) -> None:
        raise NotImplementedError

    def rollback(self) -> None:
        raise NotImplementedError

    def savepoint(self) -> contextlib.AbstractContextManager[None]:
        """A savepoint that is rolled back when the block ends."""
        raise NotImplementedError

    def driver_connection(self) -> Any:
        """The psycopg connection underneath (starting the transaction if need be)."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


async def _awaited(value: Awaitable[Any]) -> Any:
    return await value


def _rows(result: Any) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in result.fetchall()] if result.returns_rows else []


class SaSessionTx(Tx):
    def __init__(self, db_url: str) -> None:
        self.engine = _engine(db_url, asynchronous=False)
        super().__init__("sa_session", Session(self.engine), None)

    def execute(self, query: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        return _rows(self.session.connection().exec_driver_sql(query, params))

    def commit(self) -> None:
        self.session.commit()

    def rollback(self) -> None:
        self.session.rollback()

    @contextlib.contextmanager
    def savepoint(self) -> Iterator[None]:
        nested = self.session.begin_nested()
        yield
        nested.rollback()

    def driver_connection(self) -> Any:
        return self.session.connection().connection.driver_connection

    def close(self) -> None:
        self.session.close()


class SaConnectionTx(SaSessionTx):
    def __init__(self, db_url: str) -> None:
        self.engine = _engine(db_url, asynchronous=False)
        Tx.__init__(self, "sa_connection", self.engine.connect(), None)

    def execute(self, query: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        return _rows(self.session.exec_driver_sql(query, params))

    def driver_connection(self) -> Any:
        return self.session.connection.driver_connection


class SaAsyncTx(Tx):
    """AsyncSession (``connection=False``) or AsyncConnection (``connection=True``)."""

    def __init__(self, db_url: str, *, connection: bool) -> None:
        runner = asyncio.Runner()
        self.engine = _engine(db_url, asynchronous=True)
        session = (
            runner.run(_awaited(self.engine.connect())) if connection else AsyncSession(self.engine)
        )
        kind = "sa_async_connection" if connection else "sa_async_session"
        super().__init__(kind, session, runner)
        self._connection = connection

    def _conn(self) -> Awaitable[Any]:
        return _identity(self.session) if self._connection else self.session.connection()

    def execute(self, query: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        async def run() -> list[tuple[Any, ...]]:
            conn = await self._conn()
            return _rows(await conn.exec_driver_sql(query, params))

        return self.wait(run())  # type: ignore[no-any-return]

    def commit(self) -> None:
        self.wait(self.session.commit())

    def rollback(self) -> None:
        self.wait(self.session.rollback())

    @contextlib.contextmanager
    def savepoint(self) -> Iterator[None]:
        nested = self.wait(_started(self.session.begin_nested()))
        yield
        self.wait(nested.rollback())

    def driver_connection(self) -> Any:
        async def raw() -> Any:
            conn = await self._conn()
            return (await conn.get_raw_connection()).driver_connection

        return self.wait(raw())

    def close(self) -> None:
        assert self.runner is not None
        self.wait(self.session.close())
        self.runner.close()


class SaAsyncpgTx(SaAsyncTx):
    """An AsyncSession whose engine runs on asyncpg."""

    def __init__(self, db_url: str) -> None:
        runner = asyncio.Runner()
        url = db_url.replace("postgresql://", "postgresql+asyncpg://", 1)
        self.engine = create_async_engine(url, poolclass=NullPool)
        Tx.__init__(self, ASYNCPG_KIND, AsyncSession(self.engine), runner)
        self._connection = False

    def execute(self, query: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        names = re.findall(r"%\((\w+)\)s", query)
        numbered = re.sub(r"%\((\w+)\)s", lambda m: f"${names.index(m.group(1)) + 1}", query)
        values = tuple((params or {})[name] for name in names)

        async def run() -> list[tuple[Any, ...]]:
            conn = await self._conn()
            return _rows(await conn.exec_driver_sql(numbered, values))

        return self.wait(run())  # type: ignore[no-any-return]


@functools.cache
def _engine(db_url: str, *, asynchronous: bool) -> Any:
    # One engine per database for the whole run: it learns the server's dialect details
    # once. NullPool keeps no connection between tests (nor across event loops), so
    # closing a session closes its connection and nothing needs disposing.
    create = create_async_engine if asynchronous else create_engine
    return create(sa_url(db_url), poolclass=NullPool)


async def _identity(value: Any) -> Any:
    return value


async def _started(transaction: Any) -> Any:
    return await transaction  # begin_nested() of the async API starts when awaited


class PsycopgTx(Tx):
    def __init__(self, db_url: str) -> None:
        super().__init__("psycopg", psycopg.connect(db_url), None)

    def execute(self, query: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        cur = self.session.execute(query.encode(), params)
        return list(cur.fetchall()) if cur.description else []

    def commit(self) -> None:
        self.session.commit()

    def rollback(self) -> None:
        self.session.rollback()

    @contextlib.contextmanager
    def savepoint(self) -> Iterator[None]:
        # Inside an open transaction, conn.transaction() is a savepoint.
        with self.session.transaction() as savepoint:
            yield
            raise psycopg.Rollback(savepoint)

    def driver_connection(self) -> Any:
        return self.session

    def close(self) -> None:
        self.session.close()


class PsycopgAsyncTx(Tx):
    def __init__(self, db_url: str) -> None:
        runner = asyncio.Runner()
        super().__init__(
            "psycopg_async", runner.run(psycopg.AsyncConnection.connect(db_url)), runner
        )

    def execute(self, query: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        async def run() -> list[tuple[Any, ...]]:
            cur = await self.session.execute(query.encode(), params)
            return list(await cur.fetchall()) if cur.description else []

        return self.wait(run())  # type: ignore[no-any-return]

    def commit(self) -> None:
        self.wait(self.session.commit())

    def rollback(self) -> None:
        self.wait(self.session.rollback())

    @contextlib.contextmanager
    def savepoint(self) -> Iterator[None]:
        # What `async with conn.transaction()` does, split so the body can stay synchronous.
        savepoint = self.session.transaction()
        self.wait(savepoint.__aenter__())
        yield
        rollback = psycopg.Rollback(savepoint)
        self.wait(savepoint.__aexit__(type(rollback), rollback, None))

    def driver_connection(self) -> Any:
        return self.session

    def close(self) -> None:
        assert self.runner is not None
        self.wait(self.session.close())
        self.runner.close()


_FACTORIES: dict[str, Callable[[str], Tx]] = {
    "sa_session": SaSessionTx,
    "sa_connection": SaConnectionTx,
    "sa_async_session": lambda url: SaAsyncTx(url, connection=False),
    "sa_async_connection": lambda url: SaAsyncTx(url, connection=True),
    "psycopg": PsycopgTx,
    "psycopg_async": PsycopgAsyncTx,
    ASYNCPG_KIND: SaAsyncpgTx,
}


@contextlib.contextmanager
def open_tx(kind: str, db_url: str) -> Iterator[Tx]:
    """A session of ``kind`` on ``db_url``; closed afterwards (rolling back what is open)."""
    tx = _FACTORIES[kind](db_url)
    try:
        yield tx
    finally:
        tx.close()


@contextlib.contextmanager
def traced(tx: Tx) -> Iterator[list[str]]:
    """The protocol messages the client sends inside the block (Parse, Bind, Sync, Query…).

    libpq's own trace of the wire: one ``Sync`` is one round trip of the extended protocol.
    """
    pgconn = tx.driver_connection().pgconn
    messages: list[str] = []
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "trace")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT)
        try:
            pgconn.trace(fd)
            pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
            yield messages
        finally:
            pgconn.untrace()
            os.close(fd)
        with open(path, encoding="utf-8", errors="replace") as trace:
            messages.extend(re.findall(r"^F\t\d+\t(\w+)", trace.read(), flags=re.MULTILINE))


CHANNEL = "pgq"


class Listener:
    """An autocommit connection LISTENing on ``pgq``; reads payloads up to a fence."""

    def __init__(self, db_url: str) -> None:
        self.listen = psycopg.connect(db_url, autocommit=True)
        self.listen.execute(f"LISTEN {CHANNEL}")
        self.sender = psycopg.connect(db_url, autocommit=True)

    def heard(self) -> list[str]:
        """Every payload delivered so far, in order (the fence's own marker left out)."""
        marker = f"fence-{uuid.uuid4()}"
        self.sender.execute("SELECT pg_notify(%s, %s)", [CHANNEL, marker])
        payloads = []
        for notify in self.listen.notifies(timeout=WAIT_TIMEOUT):
            if notify.payload == marker:
                return payloads
            payloads.append(notify.payload)
        raise AssertionError(f"the fence notification did not arrive within {WAIT_TIMEOUT}s")

    def close(self) -> None:
        self.listen.close()
        self.sender.close()


def prepare_orders(conn: psycopg.Connection[Any]) -> None:
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {ORDERS_TABLE} (id bigserial PRIMARY KEY, note text NOT NULL)"
    )
    conn.execute(f"DELETE FROM {ORDERS_TABLE}")  # cheaper than TRUNCATE for a few rows


def count(conn: psycopg.Connection[Any], table: str = "pgq.jobs") -> int:
    return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # type: ignore[index]


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = WAIT_TIMEOUT) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)
