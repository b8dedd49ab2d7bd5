"""enqueue_many's COPY path: the same rows as the INSERT, only where it is safe to use.

A batch of COPY_MIN_JOBS or more jobs without unique keys, inside a transaction, is
written with two statements (the ids and NOTIFY, then COPY); everything else with the one
INSERT. Each test says which path it expects and checks it on the wire (libpq's trace).
"""

from __future__ import annotations

import asyncio
import importlib
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
import sqlalchemy
from enqueue_sessions import KINDS, Listener, Tx, count, open_tx, prepare_orders, sa_url, traced
from sqlalchemy.pool import NullPool

import pgq
from pgq import JobSpec

ENQUEUE = importlib.import_module("pgq.enqueue")
N = ENQUEUE.COPY_MIN_JOBS


@pytest.fixture(params=KINDS)
def tx(request: pytest.FixtureRequest, db_url: str, conn: psycopg.Connection[Any]) -> Iterator[Tx]:
    prepare_orders(conn)
    with open_tx(request.param, db_url) as opened:
        yield opened


class Bare(Tx):
    """A session made by the test itself, traced through the given psycopg connection."""

    def __init__(self, kind: str, session: Any, driver: Any) -> None:
        super().__init__(kind, session, None)
        self.driver = driver

    def driver_connection(self) -> Any:
        return self.driver


def path_of(sent: list[str]) -> str:
    """Which path a traced enqueue_many took (psycopg's BEGIN may come first, as a Query)."""
    assert sent.count("Sync") == 1, sent  # one extended-protocol statement either way
    if "CopyDone" in sent:
        assert sent.count("CopyDone") == 1 and sent.index("Sync") < sent.index("CopyDone"), sent
        return "copy"
    assert "CopyData" not in sent, sent
    return "insert"


def enqueue_traced(tx: Tx, jobs: list[JobSpec]) -> tuple[list[int], str]:
    with traced(tx) as sent:
        ids = tx.enqueue_many(jobs)
    return ids, path_of(sent)


# Text COPY must escape (tab, newline, CR, backslash, "\N", "\."), and run_at every way.
ODD_TASK = "odd\t{}\\task\n✓\r\\N"
ODD_TEXT = 'tab\there\nnewline \\ backslash "quote" \\N \\. é 😀'
LATER = datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=timezone(timedelta(hours=5, minutes=30)))
PAST = datetime(2001, 1, 1, tzinfo=UTC)
# Delays on a half microsecond: make_interval() rounds them half to even, and so must we.
DELAYS: list[Any] = [0, 0.0000005, 0.0000015, 0.0000025, 0.1234565, 1.5, timedelta(days=3)]


def odd_batch(n: int, *, scheduled: bool) -> list[JobSpec]:
    jobs = []
    for i in range(n):
        schedule: dict[str, Any] = {}
        if scheduled and i % 3 == 1:
            schedule = {"delay": DELAYS[i % len(DELAYS)]}
        elif scheduled and i % 3 == 2:
            schedule = {"run_at": LATER if i % 2 else PAST}
        jobs.append(
            JobSpec(
                ODD_TASK.format(i % 4) if i % 5 == 0 else "plain.task",
                {"i": i, "text": ODD_TEXT, "nested": {"list": [i, 1.5, None, True, {"k": []}]}},
                queue=f"q.{i % 3}",
                priority=(i * 37) % 200 - 100,
                max_attempts=1 + i % 9,
                **schedule,
            )
        )
    return jobs


def by_args(conn: psycopg.Connection[Any], ids: list[int]) -> list[int]:
    """The ``i`` argument of each of ``ids``' jobs, in the order of ``ids``."""
    found = dict(conn.execute("SELECT id, (args->>'i')::int FROM pgq.jobs").fetchall())
    return [found[job_id] for job_id in ids]


def rows_without_ids(conn: psycopg.Connection[Any]) -> list[Any]:
    return [
        row[0] for row in conn.execute("SELECT to_jsonb(j) - 'id' FROM pgq.jobs AS j ORDER BY id")
    ]


@pytest.mark.parametrize("scheduled", [False, True], ids=["due", "scheduled"])
def test_copy_and_insert_make_the_same_rows(
    tx: Tx, conn: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch, scheduled: bool
) -> None:
    # In one transaction, so created_at and now() are the same for both batches; in a
    # time zone with an offset, so run_at must not depend on the session's zone.
    tx.execute("SET LOCAL TIME ZONE 'America/St_Johns'")
    jobs = odd_batch(3 * N, scheduled=scheduled)
    copied, first = enqueue_traced(tx, jobs)
    monkeypatch.setattr(ENQUEUE, "COPY_MIN_JOBS", len(jobs) + 1)
    inserted, second = enqueue_traced(tx, jobs)
    assert (first, second) == ("copy", "insert")
    tx.commit()

    assert len(copied) == len(inserted) == len(jobs)
    assert copied == sorted(copied) and max(copied) < min(inserted)
    rows = rows_without_ids(conn)
    assert rows[: len(jobs)] == rows[len(jobs) :]
    assert {row["task"] for row in rows} == {"plain.task", *(ODD_TASK.format(k) for k in range(4))}
    assert all(row["args"]["text"] == ODD_TEXT for row in rows)


def test_delayed_jobs_run_at_the_transactions_now_plus_the_delay(
    tx: Tx, conn: psycopg.Connection[Any]
) -> None:
    delays = [0.0000005, 0.0000015, 0.0000025, 0.25, 60, 86400 * 30 + 0.000001]
    jobs = [JobSpec("t", {"i": i}, delay=delays[i % len(delays)]) for i in range(N)]
    ids, path = enqueue_traced(tx, jobs)
    assert path == "copy"
    tx.commit()
    rows = conn.execute("SELECT id, run_at - created_at FROM pgq.jobs ORDER BY id").fetchall()
    assert [row[0] for row in rows] == ids
    # created_at is the transaction's now(), so run_at is the database's time, to the µs,
    # with half microseconds rounded to even as make_interval() rounds them.
    micro = timedelta(microseconds=1)
    expected = [0 * micro, 2 * micro, 2 * micro, timedelta(seconds=0.25), timedelta(minutes=1)]
    expected.append(timedelta(days=30) + micro)
    assert [row[1] for row in rows] == [expected[i % len(delays)] for i in range(N)]


def test_a_batch_with_one_unique_key_takes_the_insert_and_dedups(
    tx: Tx, conn: psycopg.Connection[Any]
) -> None:
    live = tx.enqueue("t", {"i": -1}, unique_key="live")
    tx.commit()
    jobs = [JobSpec("t", {"i": i}) for i in range(2 * N)]
    jobs[10] = JobSpec("t", {"i": 10}, unique_key="live")  # held: skipped
    jobs[20] = JobSpec("t", {"i": 20}, unique_key="new")
    jobs[30] = JobSpec("t", {"i": 30}, unique_key="new")  # taken in this batch: skipped
    ids, path = enqueue_traced(tx, jobs)
    assert path == "insert"
    tx.commit()
    by_id = dict(conn.execute("SELECT id, (args->>'i')::int FROM pgq.jobs").fetchall())
    assert [by_id[job_id] for job_id in ids] == [i for i in range(2 * N) if i not in (10, 30)]
    assert by_id[live] == -1


def test_the_copy_starts_at_copy_min_jobs(tx: Tx, conn: psycopg.Connection[Any]) -> None:
    assert enqueue_traced(tx, [JobSpec("t")] * (N - 1))[1] == "insert"
    assert enqueue_traced(tx, [JobSpec("t")] * N)[1] == "copy"
    tx.commit()
    assert count(conn) == 2 * N - 1


def test_a_rolled_back_copy_leaves_nothing_and_the_session_goes_on(
    tx: Tx, conn: psycopg.Connection[Any]
) -> None:
    tx.add_order()
    assert enqueue_traced(tx, [JobSpec("t", {"i": i}) for i in range(N)])[1] == "copy"
    tx.rollback()
    assert count(conn) == 0
    with tx.savepoint():
        assert enqueue_traced(tx, [JobSpec("t", {"i": i}) for i in range(N)])[1] == "copy"
    ids, path = enqueue_traced(tx, [JobSpec("t", {"i": i}) for i in range(N)])
    tx.commit()
    assert path == "copy" and count(conn) == N
    assert [row[0] for row in conn.execute("SELECT id FROM pgq.jobs ORDER BY id")] == ids


def test_bad_input_in_a_large_batch_sends_nothing(tx: Tx, conn: psycopg.Connection[Any]) -> None:
    jobs = [JobSpec("t", {"i": i}) for i in range(5 * N)]
    jobs[-1] = JobSpec("t", {"bad": "\x00"})
    tx.add_order()
    with traced(tx) as sent, pytest.raises(pgq.ArgsError, match=rf"^jobs\[{5 * N - 1}\]: "):
        tx.enqueue_many(jobs)
    assert sent == []
    assert enqueue_traced(tx, jobs[:-1])[1] == "copy"  # the transaction is still usable
    tx.commit()
    assert count(conn) == 5 * N - 1


def test_psycopg_autocommit_takes_the_insert_unless_in_a_transaction_block(
    db_url: str, conn: psycopg.Connection[Any]
) -> None:
    jobs = [JobSpec("t", {"i": i}) for i in range(N)]
    with psycopg.connect(db_url, autocommit=True) as auto:
        tx = Bare("psycopg", auto, auto)
        assert enqueue_traced(tx, jobs)[1] == "insert"
        assert count(conn) == N  # committed by the statement itself, as autocommit does
        with auto.transaction() as block:
            assert enqueue_traced(tx, jobs)[1] == "copy"
            assert count(conn) == N
            raise psycopg.Rollback(block)
        assert count(conn) == N


def test_psycopg_async_autocommit_takes_the_insert(
    db_url: str, conn: psycopg.Connection[Any]
) -> None:
    async def run() -> list[str]:
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as auto:
            with traced(Bare("psycopg_async", auto, auto)) as sent:
                await pgq.enqueue_many(auto, [JobSpec("t")] * N)
            return sent

    assert path_of(asyncio.run(run())) == "insert"
    assert count(conn) == N


def test_sqlalchemy_autocommit_takes_the_insert(db_url: str, conn: psycopg.Connection[Any]) -> None:
    engine = sqlalchemy.create_engine(
        sa_url(db_url), poolclass=NullPool, isolation_level="AUTOCOMMIT"
    )
    try:
        with engine.connect() as sa_conn:
            tx = Bare("sa_connection", sa_conn, sa_conn.connection.driver_connection)
            assert enqueue_traced(tx, [JobSpec("t")] * N)[1] == "insert"
            assert count(conn) == N
    finally:
        engine.dispose()


def test_a_pipeline_takes_the_insert(db_url: str, conn: psycopg.Connection[Any]) -> None:
    # COPY cannot run in pipeline mode (psycopg raises NotSupportedError).
    with psycopg.connect(db_url) as direct:
        with direct.pipeline():
            ids = pgq.enqueue_many(direct, [JobSpec("t", {"i": i}) for i in range(N)])
        direct.commit()
    assert count(conn) == N
    assert by_args(conn, ids) == list(range(N))


def test_ids_stay_in_input_order_while_other_sessions_take_ids(
    db_url: str, conn: psycopg.Connection[Any]
) -> None:
    size, rounds, workers = 2000, 3, 3
    errors: list[BaseException] = []

    def enqueue_rounds(worker: int) -> None:
        try:
            with psycopg.connect(db_url) as mine:
                for r in range(rounds):
                    jobs = [JobSpec("t", {"w": worker, "r": r, "i": i}) for i in range(size)]
                    ids = pgq.enqueue_many(mine, jobs)
                    mine.commit()
                    got = mine.execute(
                        "SELECT (args->>'i')::int FROM pgq.jobs WHERE id = ANY(%s) ORDER BY id",
                        [ids],
                    ).fetchall()
                    assert ids == sorted(ids)
                    assert [row[0] for row in got] == list(range(size))
        except Exception as exc:  # reported by the test's own thread below
            errors.append(exc)

    threads = [threading.Thread(target=enqueue_rounds, args=(w,)) for w in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert count(conn) == size * rounds * workers


def test_the_sequence_the_copy_takes_ids_from_is_the_identity_of_pgq_jobs(
    conn: psycopg.Connection[Any],
) -> None:
    row = conn.execute("SELECT pg_get_serial_sequence('pgq.jobs', 'id')").fetchone()
    assert row is not None and row[0] == "pgq.jobs_id_seq"


@pytest.fixture
def app_role(conn: psycopg.Connection[Any]) -> Iterator[str]:
    """A role that may INSERT into pgq.jobs but, like many app roles, has no grant on the
    identity's sequence: the INSERT needs none, nextval() does."""
    role = f"pgq_test_app_{uuid.uuid4().hex[:8]}"
    conn.execute(f"CREATE ROLE {role} LOGIN")
    conn.execute(f"GRANT USAGE ON SCHEMA pgq TO {role}")
    conn.execute(f"GRANT INSERT, SELECT ON pgq.jobs TO {role}")
    try:
        yield role
    finally:
        conn.execute(f"DROP OWNED BY {role}")
        conn.execute(f"DROP ROLE {role}")


def as_role(db_url: str, role: str) -> psycopg.Connection[Any]:
    return psycopg.connect(psycopg.conninfo.make_conninfo(db_url, user=role))


def test_a_role_that_may_not_take_ids_gets_the_insert(
    db_url: str, conn: psycopg.Connection[Any], app_role: str, listener: Listener
) -> None:
    jobs = [JobSpec("t", {"i": i}, queue="alpha") for i in range(N)]
    with as_role(db_url, app_role) as app:
        tx = Bare("psycopg", app, app)
        with traced(tx) as sent:
            ids = pgq.enqueue_many(app, jobs)
        # The ids' statement answers NULL (no error, nothing notified), then the INSERT.
        assert sent.count("Sync") == 2 and "CopyData" not in sent, sent
        assert app.execute("SELECT 1").fetchone() == (1,)  # the transaction is fine
        app.commit()
    assert by_args(conn, ids) == list(range(N))
    assert listener.heard() == ["alpha"]  # once, by the INSERT

    conn.execute(f"GRANT USAGE ON SEQUENCE pgq.jobs_id_seq TO {app_role}")
    with as_role(db_url, app_role) as app:
        with traced(Bare("psycopg", app, app)) as sent:
            pgq.enqueue_many(app, jobs)
        assert path_of(sent) == "copy"
        app.commit()
    assert count(conn) == 2 * N


def test_row_level_security_gets_the_insert(
    db_url: str, conn: psycopg.Connection[Any], app_role: str
) -> None:
    conn.execute(f"GRANT USAGE ON SEQUENCE pgq.jobs_id_seq TO {app_role}")
    conn.execute("ALTER TABLE pgq.jobs ENABLE ROW LEVEL SECURITY")
    try:
        conn.execute(f"CREATE POLICY pgq_test_all ON pgq.jobs TO {app_role} USING (true)")
        with as_role(db_url, app_role) as app:
            with traced(Bare("psycopg", app, app)) as sent:
                ids = pgq.enqueue_many(app, [JobSpec("t", {"i": i}) for i in range(N)])
            assert sent.count("Sync") == 2 and "CopyData" not in sent, sent
            app.commit()
        assert by_args(conn, ids) == list(range(N))
    finally:
        conn.execute("DROP POLICY IF EXISTS pgq_test_all ON pgq.jobs")
        conn.execute("ALTER TABLE pgq.jobs DISABLE ROW LEVEL SECURITY")


def test_a_client_encoding_other_than_utf8_gets_the_insert(
    db_url: str, conn: psycopg.Connection[Any]
) -> None:
    # "✓" has no LATIN1 byte: the INSERT fails before sending anything, so the caller's
    # transaction survives; a COPY would fail halfway and abort it.
    with psycopg.connect(db_url) as latin:
        latin.execute("SET client_encoding TO 'LATIN1'")
        jobs = [JobSpec("t", {"i": i, "s": "é"}) for i in range(N)]
        with traced(Bare("psycopg", latin, latin)) as sent:
            ids = pgq.enqueue_many(latin, jobs)
        assert path_of(sent) == "insert"
        with pytest.raises(UnicodeEncodeError):
            pgq.enqueue_many(latin, [*jobs, JobSpec("t", {"s": "✓"})])
        assert latin.execute("SELECT 1").fetchone() == (1,)
        latin.commit()
    assert by_args(conn, ids) == list(range(N))
