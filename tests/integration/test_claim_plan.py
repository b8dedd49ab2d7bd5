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
    plan = explain_generic(conn, _claim(10))
    assert "Index Scan using jobs_claim_idx" in plan
    assert "Index Scan using jobs_pkey" in plan
    assert "Seq Scan" not in plan
    assert "Hash Join" not in plan
    assert "JIT" not in plan


def explain_generic(
    conn: psycopg.Connection[Any], statement: store.Statement, options: str = "COSTS OFF"
) -> str:
    """The generic plan of a claim: PREPAREd by hand (each %(name)s becomes $n), then
    EXPLAIN EXECUTE, which plans it as the worker's session settings say."""
    names: list[str] = []

    def placeholder(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    text = re.sub(r"%\((\w+)\)s", placeholder, statement.query.decode())
    conn.execute(f"PREPARE claim_by_hand AS {text}".encode())
    values = ", ".join(_literal(statement.params[name]) for name in names)
    rows = conn.execute(f"EXPLAIN ({options}) EXECUTE claim_by_hand({values})".encode())
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


def test_a_short_claim_reads_none_of_the_jobs_scheduled_for_later(
    conn: psycopg.Connection[Any],
) -> None:
    """A claim that finds fewer due jobs than it asks for (an idle worker's every claim)
    reads only the due ones: one scan of the claim index over all priorities could not
    stop at the first job scheduled for later, and read all of them on every claim."""
    for priority in (0, 5):  # a priority with due jobs, and one with none due
        conn.execute(
            "INSERT INTO pgq.jobs (queue, task, priority, run_at) "
            "SELECT 'default', 't.one', %s, now() + interval '1 day' "
            "FROM generate_series(1, %s)",
            (priority, QUEUED),
        )
    conn.execute(
        "INSERT INTO pgq.jobs (queue, task, priority) "
        "SELECT 'default', 't.one', p FROM unnest(ARRAY[0, 0, -3]) AS p"
    )
    conn.execute("ANALYZE pgq.jobs")
    store.fetch(conn, store.use_generic_plans())

    plan = explain_generic(conn, _claim(10), "ANALYZE, BUFFERS, COSTS OFF, TIMING OFF")

    claimed = re.search(r"^Update on jobs j .*rows=(\d+)", plan, re.MULTILINE)
    assert claimed is not None and claimed.group(1) == "3", plan
    # Every buffer the whole statement touched: 62 when written; reading the index entries
    # of the 40,000 jobs scheduled for later, as the claim did before, took 378.
    touched = re.search(r"Buffers: shared hit=(\d+)", plan)
    assert touched is not None and int(touched.group(1)) < 150, plan
