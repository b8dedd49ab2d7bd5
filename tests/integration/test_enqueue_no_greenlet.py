"""Without greenlet (pgq installed without its asyncio extra), an AsyncSession enqueue raises
pgq's MissingExtraError naming the extra, while psycopg's own async connection still works.

Runs in a subprocess where ``sys.modules["greenlet"] = None`` makes greenlet unimportable,
so this test process keeps its own greenlet.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import psycopg

CHILD = """
import asyncio, json, sys
sys.modules["greenlet"] = None  # as if greenlet were not installed

try:  # SQLAlchemy 2.1 refuses the first import without greenlet; 2.0 allows it
    import sqlalchemy.ext.asyncio
except ImportError:
    import sqlalchemy.ext.asyncio  # SQLAlchemy lets the second import through
import psycopg
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

import pgq


async def main(url, sa_url):
    found = {}
    engine = create_async_engine(sa_url)
    for kind in ("session", "connection"):
        try:
            # Not `async with`: even closing an AsyncSession needs greenlet.
            session = AsyncSession(engine) if kind == "session" else engine.connect()
            await pgq.enqueue(session, "emails.send", {"kind": kind})
            found[kind] = "enqueued"
        except pgq.PgqError as exc:
            found[kind] = [type(exc).__name__, isinstance(exc, ImportError), str(exc)]
    async with await psycopg.AsyncConnection.connect(url) as conn:
        found["psycopg"] = await pgq.enqueue(conn, "emails.send", {"kind": "psycopg"})
    print(json.dumps(found))


asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def test_async_session_without_greenlet_names_the_extra(
    db_url: str, sa_url: str, conn: psycopg.Connection[Any]
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, db_url, sa_url],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    for kind in ("session", "connection"):
        name, is_import_error, message = found[kind]
        assert (name, is_import_error) == ("MissingExtraError", True)
        assert "greenlet" in message and "pip install 'pgq-jobs[asyncio]'" in message
    # Nothing reached the table but the psycopg job, committed by its connection's block.
    rows = conn.execute("SELECT id, args->>'kind' FROM pgq.jobs").fetchall()
    assert rows == [(found["psycopg"], "psycopg")]
