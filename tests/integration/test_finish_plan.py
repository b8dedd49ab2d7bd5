"""The worker writes outcomes with a generic plan (its writer connection's settings), and
that plan must find each outcome's row by an index lookup of its id: never a scan of the
running set (whose dead index entries pile up between vacuums) or of the whole table, and
no row locks taken before the write (the fence is the UPDATE's own WHERE)."""

from __future__ import annotations

from typing import Any

import psycopg
from tests.integration.test_claim_plan import explain_generic

from pgq import store

RUNNING = 5_000
FINISHED = 20_000


def _finish(ids: list[int], tokens: list[int]) -> store.Statement:
    return store.finish_jobs(
        ids=ids,
        tokens=tokens,
        outcomes=["succeeded"] * len(ids),
        delays=[0.0] * len(ids),
        errors=[None] * len(ids),
    )


def test_the_generic_finish_plan_looks_up_each_id(conn: psycopg.Connection[Any]) -> None:
    conn.execute(
        "INSERT INTO pgq.jobs (queue, task, state, finished_at) "
        "SELECT 'default', 't.one', 'succeeded', now() FROM generate_series(1, %s)",
        (FINISHED,),
    )
    running = conn.execute(
        "INSERT INTO pgq.jobs (queue, task, state, lease_token, attempts) "
        "SELECT 'default', 't.one', 'running', 1, 1 FROM generate_series(1, %s) RETURNING id",
        (RUNNING,),
    ).fetchall()
    conn.execute("ANALYZE pgq.jobs")
    store.fetch(conn, store.use_generic_plans())
    ids = [row[0] for row in running]

    # psycopg prepares a statement on its fifth execution (prepare_threshold); batches of
    # every size then share the one generic plan.
    written = [
        len(store.fetch(conn, _finish(ids[start : start + size], [1] * size)))
        for start, size in ((0, 1), (1, 400), (401, 10), (411, 1), (412, 1), (413, 1000))
    ]

    assert written == [1, 400, 10, 1, 1, 1000]
    assert conn.execute(
        "SELECT generic_plans > 0, custom_plans FROM pg_prepared_statements "
        "WHERE statement LIKE '%%UPDATE pgq.jobs%%'"
    ).fetchall() == [(True, 0)]
    plan = explain_generic(conn, _finish(ids[2000:2010], [1] * 10))
    assert "Nested Loop" in plan
    assert "Function Scan on h" in plan
    assert "Index Cond: (id = h.id)" in plan
    assert "Seq Scan" not in plan
    assert "Bitmap" not in plan
    assert "Hash Join" not in plan
    assert "LockRows" not in plan


def test_a_stale_token_in_the_batch_leaves_only_its_row(conn: psycopg.Connection[Any]) -> None:
    """One outcome fenced out does not stop the others of its batch."""
    ids = [
        row[0]
        for row in conn.execute(
            "INSERT INTO pgq.jobs (queue, task, state, lease_token, attempts) "
            "SELECT 'default', 't.one', 'running', 3, 1 FROM generate_series(1, 3) RETURNING id"
        ).fetchall()
    ]
    store.fetch(conn, store.use_generic_plans())

    written = store.fetch(conn, _finish(ids, [3, 2, 3]))

    assert sorted(row[0] for row in written) == [ids[0], ids[2]]
    states = conn.execute(
        "SELECT state::text FROM pgq.jobs WHERE id = ANY(%s) ORDER BY id", (ids,)
    ).fetchall()
    assert [s[0] for s in states] == ["succeeded", "running", "succeeded"]
