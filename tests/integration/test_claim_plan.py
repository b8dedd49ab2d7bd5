"""The worker claims with one generic plan (planned once per connection, not per claim),
so that plan must be right for any parameters: an ordered scan of the claim index per
queue and a lookup of each claimed id, never a scan of the whole table; and the claim
connection keeps its settings across reconnects."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import psycopg

from pgq import store
from pgq.db import ReconnectingConnection

QUEUED = 20_000
FINISHED = 20_000


def _claim(limit: int) -> store.Statement:
    return store.claim_jobs(
        queues=["default", "other"],
        tasks=["t.one", "t.two"],
        leases=[30.0, 60.0],
        limit=limit,
        worker_id="plan-test",
    )


def test_the_generic_claim_plan_scans_the_claim_index_and_looks_up_ids(
    conn: psycopg.Connection[Any],
) -> None:
    conn.execute(
        "INSERT INTO pgq.jobs (queue, task, state, finished_at) "
        "SELECT 'default', 't.one', 'succeeded', now() FROM generate_series(1, %s)",
        (FINISHED,),
    )
    conn.execute(
        "INSERT INTO pgq.jobs (queue, task) SELECT 'default', 't.one' FROM generate_series(1, %s)",
        (QUEUED,),
    )
    conn.execute("ANALYZE pgq.jobs")
    store.fetch(conn, store.use_generic_plans())

    # psycopg prepares a statement on its fifth execution (prepare_threshold).
    claimed = [len(store.fetch(conn, _claim(limit))) for limit in (1, 10, 400, 1, 1, 1, 1)]

    assert claimed == [1, 10, 400, 1, 1, 1, 1]
    assert conn.execute(
        "SELECT generic_plans > 0, custom_plans FROM pg_prepared_statements "
        "WHERE statement LIKE '%claimable%'"
    ).fetchall() == [(True, 0)]
    plan = _explain_generic(conn)
    assert "Index Scan using jobs_claim_idx" in plan
    assert "Index Scan using jobs_pkey" in plan
    assert "Seq Scan" not in plan
    assert "Hash Join" not in plan
    assert "JIT" not in plan


def _explain_generic(conn: psycopg.Connection[Any]) -> str:
    """The generic plan of the claim: PREPAREd by hand (each %(name)s becomes $n), then
    EXPLAIN EXECUTE, which plans it as the worker's session settings say."""
    statement = _claim(10)
    names: list[str] = []

    def placeholder(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    text = re.sub(r"%\((\w+)\)s", placeholder, statement.query.decode())
    conn.execute(f"PREPARE claim_by_hand AS {text}".encode())
    values = ", ".join(_literal(statement.params[name]) for name in names)
    rows = conn.execute(f"EXPLAIN (COSTS OFF) EXECUTE claim_by_hand({values})".encode())
    return "\n".join(row[0] for row in rows.fetchall())


def _literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def test_the_claim_connection_gets_its_settings_back_after_a_reconnect(db_url: str) -> None:
    async def scenario() -> list[tuple[Any, ...]]:
        db = ReconnectingConnection(db_url, "claim", setup=store.use_generic_plans())
        seen = []
        for _ in range(2):
            conn = await db.connection()
            cur = await conn.execute("SELECT current_setting('plan_cache_mode'), "
                                     "current_setting('jit'), pg_backend_pid()")  # fmt: skip
            row = await cur.fetchone()
            assert row is not None
            seen.append(row)
            async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as admin:
                await admin.execute("SELECT pg_terminate_backend(%s)", (row[2],))
            try:
                await conn.execute("SELECT 1")
            except psycopg.OperationalError:
                await db.discard()
        await db.close()
        return seen

    first, second = asyncio.run(scenario())
    assert first[2] != second[2], "a new backend after the reconnect"
    assert first[:2] == second[:2] == ("force_generic_plan", "off")
