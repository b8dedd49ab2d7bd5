"""pgq's own migrations: upgrade, no-op, downgrade, SQL export, version check, concurrency."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from subprocess import PIPE
from typing import Any

import psycopg
import pytest
from alembic.script import ScriptDirectory

from pgq import devdb, migrate
from pgq.errors import DatabaseUnavailableError, PgqError, SchemaError

# Everything the migrations create, read from the catalog, so two databases can be compared.
CATALOG_QUERIES = {
    "columns": """
        SELECT table_name, column_name, data_type, udt_name, domain_name, is_nullable,
               column_default, is_identity, identity_generation
        FROM information_schema.columns WHERE table_schema = 'pgq'
        ORDER BY table_name, ordinal_position""",
    "domains": """
        SELECT t.typname, format_type(t.typbasetype, t.typtypmod), c.conname,
               pg_get_constraintdef(c.oid), c.convalidated
        FROM pg_type AS t LEFT JOIN pg_constraint AS c ON c.contypid = t.oid
        WHERE t.typnamespace = 'pgq'::regnamespace AND t.typtype = 'd' ORDER BY 1, 3""",
    "indexes": "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'pgq' ORDER BY 1",
    "constraints": """
        SELECT conrelid::regclass::text, conname, pg_get_constraintdef(c.oid)
        FROM pg_constraint AS c JOIN pg_namespace AS n ON n.oid = c.connamespace
        WHERE n.nspname = 'pgq' ORDER BY 1, 2""",
    "relations": """
        SELECT relname, relkind, reloptions FROM pg_class
        WHERE relnamespace = 'pgq'::regnamespace ORDER BY 1""",
    "enums": """
        SELECT t.typname, array_agg(e.enumlabel ORDER BY e.enumsortorder)
        FROM pg_enum AS e JOIN pg_type AS t ON t.oid = e.enumtypid
        WHERE t.typnamespace = 'pgq'::regnamespace GROUP BY 1 ORDER BY 1""",
    "views": "SELECT viewname, definition FROM pg_views WHERE schemaname = 'pgq' ORDER BY 1",
    "comment": "SELECT obj_description('pgq'::regnamespace, 'pg_namespace')",
    "versions": "SELECT version_num FROM pgq.alembic_version ORDER BY 1",
}


def catalog(url: str) -> dict[str, list[tuple[Any, ...]]]:
    with psycopg.connect(url) as conn:
        has_versions = conn.execute("SELECT to_regclass('pgq.alembic_version')").fetchone()
        return {
            name: conn.execute(query).fetchall() if name != "versions" or has_versions[0] else []
            for name, query in CATALOG_QUERIES.items()
        }


def pgq_heads() -> set[str]:
    return set(ScriptDirectory.from_config(migrate.alembic_config()).get_heads())


def relation_exists(url: str, name: str) -> bool:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone() == (True,)


@pytest.fixture
def second_empty_db_url(pg_server: devdb.Server) -> Iterator[str]:
    with devdb.scratch_database(pg_server, prefix="pgq_empty") as url:
        yield url


def test_upgrade_from_empty_creates_the_schema(empty_db_url: str) -> None:
    change = migrate.upgrade(empty_db_url)

    assert (change.before, change.after, change.changed) == (None, migrate.SCHEMA_VERSION, True)
    assert relation_exists(empty_db_url, "pgq.jobs")
    assert {row[0] for row in catalog(empty_db_url)["versions"]} == pgq_heads()
    with psycopg.connect(empty_db_url) as conn:
        migrate.check_schema(conn)


def test_upgrade_twice_is_a_noop(empty_db_url: str) -> None:
    migrate.upgrade(empty_db_url)
    first = catalog(empty_db_url)

    change = migrate.upgrade(empty_db_url)

    assert (change.before, change.after, change.changed) == (
        migrate.SCHEMA_VERSION,
        migrate.SCHEMA_VERSION,
        False,
    )
    assert catalog(empty_db_url) == first


def test_downgrade_to_base_then_upgrade_again(empty_db_url: str) -> None:
    migrate.upgrade(empty_db_url)
    upgraded = catalog(empty_db_url)

    change = migrate.downgrade(empty_db_url, "base")

    assert (change.before, change.after) == (migrate.SCHEMA_VERSION, None)
    after_downgrade = catalog(empty_db_url)
    assert after_downgrade["versions"] == []
    # Only pgq's own version table is left in its schema: no table, view, index or type.
    assert [row[0] for row in after_downgrade["relations"]] == [
        "alembic_version",
        "alembic_version_pkc",
    ]
    assert after_downgrade["enums"] == []
    with psycopg.connect(empty_db_url) as conn, pytest.raises(SchemaError, match="pgq migrate"):
        migrate.check_schema(conn)

    migrate.upgrade(empty_db_url)
    assert catalog(empty_db_url) == upgraded


def test_host_alembic_version_is_untouched(empty_db_url: str) -> None:
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE public.alembic_version (version_num varchar(32) PRIMARY KEY)")
        conn.execute("INSERT INTO public.alembic_version VALUES ('host_0042')")

    migrate.upgrade(empty_db_url)
    migrate.downgrade(empty_db_url, "base")
    migrate.upgrade(empty_db_url)

    with psycopg.connect(empty_db_url) as conn:
        host = conn.execute("SELECT version_num FROM public.alembic_version").fetchall()
    assert host == [("host_0042",)]
    assert {row[0] for row in catalog(empty_db_url)["versions"]} == pgq_heads()


def test_sql_export_applies_to_an_empty_database_and_matches(
    empty_db_url: str, second_empty_db_url: str
) -> None:
    migrate.upgrade(empty_db_url)
    script = migrate.upgrade_sql()

    with psycopg.connect(second_empty_db_url, autocommit=True) as conn:
        conn.execute(script.encode())  # the whole script, BEGIN to COMMIT, as psql would

    assert catalog(second_empty_db_url) == catalog(empty_db_url)
    with psycopg.connect(second_empty_db_url) as conn:
        migrate.check_schema(conn)
    # The export records its revisions, so `pgq migrate` afterwards has nothing to do.
    assert not migrate.upgrade(second_empty_db_url).changed


def test_check_schema_on_a_database_without_pgq_says_to_migrate(empty_db_url: str) -> None:
    with psycopg.connect(empty_db_url) as conn:
        assert migrate.schema_version(conn) is None
        with pytest.raises(SchemaError, match=r"missing.*run `pgq migrate`"):
            migrate.check_schema(conn)


@pytest.mark.parametrize(
    ("offset", "advice"), [(-1, "run `pgq migrate`"), (1, "upgrade the pgq package")]
)
def test_check_schema_rejects_another_version(empty_db_url: str, offset: int, advice: str) -> None:
    migrate.upgrade(empty_db_url)
    other = migrate.SCHEMA_VERSION + offset
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute(f"COMMENT ON SCHEMA pgq IS 'pgq schema {other}'")

        with pytest.raises(SchemaError, match=f"version {other}.*{advice}"):
            migrate.check_schema(conn)


def test_concurrent_upgrades_in_one_process_take_turns(empty_db_url: str) -> None:
    runners = 4
    barrier = threading.Barrier(runners)
    errors: list[BaseException] = []

    def run() -> None:
        barrier.wait()
        try:
            migrate.upgrade(empty_db_url)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(runners)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert {row[0] for row in catalog(empty_db_url)["versions"]} == pgq_heads()


# `pgq migrate` with a start line: import everything (the slow part), say "ready", wait for
# "go", then run the real CLI. Processes released together overlap in their migrations.
GATED_PGQ_MIGRATE = """
import os, sys, time, pathlib
import alembic.command, sqlalchemy
from pgq.cli import main
start = pathlib.Path(sys.argv.pop(1))
(start.parent / f"ready-{os.getpid()}").touch()
while not start.exists():
    time.sleep(0.001)
sys.argv[0] = "pgq"
main()
"""


def test_concurrent_pgq_migrate_processes_take_turns(empty_db_url: str, tmp_path: Path) -> None:
    # Several pods running `pgq migrate` at start-up: across processes only the advisory
    # lock in env.py keeps them from creating the same objects at once.
    start = tmp_path / "go"
    command = [sys.executable, "-c", GATED_PGQ_MIGRATE, str(start), "migrate", "--json"]
    runs = [
        subprocess.Popen([*command, "--database-url", empty_db_url], stdout=PIPE, stderr=PIPE)
        for _ in range(3)
    ]
    wait_for(lambda: len(list(tmp_path.glob("ready-*"))) == len(runs))
    start.touch()
    results = [(run.wait(timeout=120), *run.communicate()) for run in runs]

    assert [(code, err) for code, _, err in results] == [(0, b"")] * 3
    changed = [json.loads(out)["changed"] for _, out, _ in results]
    assert sorted(changed) == [False, False, True]
    assert {row[0] for row in catalog(empty_db_url)["versions"]} == pgq_heads()


def wait_for(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"still not true after {timeout}s: {condition}"
        time.sleep(0.05)


def test_a_failing_migration_is_rolled_back_whole(empty_db_url: str) -> None:
    # Someone's own pgq.jobs is in the way: the migration fails and leaves nothing behind.
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA pgq; CREATE TABLE pgq.jobs (id int)")

    with pytest.raises(PgqError, match=r"rolled back.*already exists"):
        migrate.upgrade(empty_db_url)

    state = catalog(empty_db_url)
    assert [row[0] for row in state["relations"]] == ["jobs"]
    assert state["enums"] == []
    assert not relation_exists(empty_db_url, "pgq.alembic_version")


def test_upgrade_of_an_unreachable_server_raises_database_unavailable() -> None:
    url = f"postgresql://postgres:s3cret@127.0.0.1:{devdb.free_port()}/nowhere"
    with pytest.raises(DatabaseUnavailableError) as raised:
        migrate.upgrade(url)
    assert "s3cret" not in str(raised.value)
    assert "127.0.0.1" in str(raised.value)


# --- 0003: the lean-writes schema -------------------------------------------------------------

BAD_QUEUE_NAMES = ["", "a" * 64, "has space", "émoji", "semi;colon", "new\nline"]


def _insert_queue(conn: psycopg.Connection[Any], queue: str) -> None:
    conn.execute("INSERT INTO pgq.jobs (queue, task) VALUES (%s, 't')", (queue,))


@pytest.mark.parametrize("queue", BAD_QUEUE_NAMES)
def test_the_database_refuses_a_bad_queue_name_written_by_hand(db_url: str, queue: str) -> None:
    # pgq validates names in Python; the domain is the last line for rows written by hand.
    with psycopg.connect(db_url) as conn, pytest.raises(psycopg.errors.CheckViolation) as raised:
        _insert_queue(conn, queue)
    assert "queue_name_valid" in str(raised.value)


def test_the_database_accepts_every_allowed_queue_character(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        for queue in ["a", "a" * 63, "AZaz09_.:-"]:
            _insert_queue(conn, queue)


def test_upgrade_from_0002_keeps_rows_and_live_unique_keys(empty_db_url: str) -> None:
    migrate.upgrade(empty_db_url, "pgq_0002")
    with psycopg.connect(empty_db_url) as conn:
        conn.execute(
            "INSERT INTO pgq.jobs (queue, task, unique_key, state, finished_at) VALUES "
            "('q', 't', 'live', 'queued', NULL), ('q', 't', NULL, 'queued', NULL), "
            "('q', 't', 'done', 'succeeded', now())"
        )

    migrate.upgrade(empty_db_url)

    with psycopg.connect(empty_db_url) as conn:
        assert conn.execute("SELECT count(*) FROM pgq.jobs").fetchone() == (3,)
        # The unique index holds the one live job with a key, and still enforces it.
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("INSERT INTO pgq.jobs (queue, task, unique_key) VALUES ('q', 't', 'live')")
        conn.rollback()
        conn.execute("INSERT INTO pgq.jobs (queue, task, unique_key) VALUES ('q', 't', 'done')")
        conn.execute("INSERT INTO pgq.jobs (queue, task) VALUES ('q', 't')")
        conn.execute("SET enable_seqscan = off")
        entries = conn.execute(
            "SELECT count(*) FROM pgq.jobs WHERE state IN ('queued', 'running') "
            "AND unique_key IS NOT NULL"
        ).fetchone()
        plan = conn.execute(
            "EXPLAIN SELECT count(*) FROM pgq.jobs WHERE state IN ('queued', 'running') "
            "AND unique_key IS NOT NULL"
        ).fetchall()
    assert entries == (2,)
    assert "jobs_unique_key_idx" in str(plan)
    indexes = {row[0] for row in catalog(empty_db_url)["indexes"]}
    assert "jobs_finished_idx" not in indexes
    assert "jobs_finished_stats_idx" in indexes


def test_downgrade_from_0003_restores_0002(empty_db_url: str, second_empty_db_url: str) -> None:
    migrate.upgrade(second_empty_db_url, "pgq_0002")
    migrate.upgrade(empty_db_url)

    migrate.downgrade(empty_db_url, "pgq_0002")

    assert catalog(empty_db_url) == catalog(second_empty_db_url)


# --- 0004: the column rules as domains -------------------------------------------------------

BAD_VALUES_BY_HAND = [
    ("INSERT INTO pgq.jobs (queue, task) VALUES ('q', '')", "task_name_valid"),
    ("INSERT INTO pgq.jobs (queue, task) VALUES ('q', repeat('t', 256))", "task_name_valid"),
    ("INSERT INTO pgq.jobs (queue, task, max_attempts) VALUES ('q', 't', 0)",
     "attempt_limit_positive"),
    ("INSERT INTO pgq.jobs (queue, task, attempts) VALUES ('q', 't', -1)",
     "attempt_count_nonnegative"),
    ("UPDATE pgq.jobs SET queue = 'no spaces'", "queue_name_valid"),
    ("UPDATE pgq.jobs SET attempts = attempts - 1", "attempt_count_nonnegative"),
]  # fmt: skip


@pytest.mark.parametrize(("statement", "rule"), BAD_VALUES_BY_HAND)
def test_the_database_refuses_bad_values_written_by_hand(
    db_url: str, statement: str, rule: str
) -> None:
    with psycopg.connect(db_url) as conn:
        conn.execute("INSERT INTO pgq.jobs (queue, task) VALUES ('q', 't')")
        with pytest.raises(psycopg.errors.CheckViolation) as raised:
            conn.execute(statement)
    assert rule in str(raised.value)


def _storage(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    """Each pgq relation's file: changed when PostgreSQL rewrites or rebuilds it."""
    return conn.execute(
        "SELECT relname, relfilenode FROM pg_class WHERE relnamespace = 'pgq'::regnamespace "
        "AND relkind IN ('r', 'i') ORDER BY 1"
    ).fetchall()


READ_CHANGED_COLUMNS = "SELECT id, queue, task, attempts, max_attempts FROM pgq.jobs ORDER BY id"


def test_upgrade_from_0003_keeps_rows_and_the_table_in_place(empty_db_url: str) -> None:
    migrate.upgrade(empty_db_url, "pgq_0003")
    with psycopg.connect(empty_db_url) as conn:
        conn.execute(
            "INSERT INTO pgq.jobs (queue, task, attempts, max_attempts) "
            "SELECT 'q' || i % 3, 't', i % 4, 5 FROM generate_series(1, 1000) AS i"
        )
        before = _storage(conn)
        rows = conn.execute(READ_CHANGED_COLUMNS).fetchall()

    migrate.upgrade(empty_db_url, "pgq_0004")

    with psycopg.connect(empty_db_url) as conn:
        # The table was not rewritten. PostgreSQL rebuilds the partial indexes on a column
        # whose type changes (queue); the others are kept.
        rebuilt = {name for name, node in _storage(conn) if dict(before)[name] != node}
        assert rebuilt == {"jobs_claim_idx", "jobs_failed_queue_idx", "jobs_finished_stats_idx"}
        assert conn.execute(READ_CHANGED_COLUMNS).fetchall() == rows
        # psycopg reads domains as their base types (PostgreSQL sends the base type's oid).
        assert [type(value) for value in rows[0]] == [int, str, str, int, int]
        views = conn.execute("SELECT viewname FROM pg_views WHERE schemaname = 'pgq'").fetchall()
        assert len(views) == 4


def test_downgrade_from_0004_restores_0003(empty_db_url: str, second_empty_db_url: str) -> None:
    migrate.upgrade(second_empty_db_url, "pgq_0003")
    migrate.upgrade(empty_db_url, "pgq_0004")
    with psycopg.connect(empty_db_url) as conn:
        conn.execute("INSERT INTO pgq.jobs (queue, task) VALUES ('q', 't')")

    migrate.downgrade(empty_db_url, "pgq_0003")

    with psycopg.connect(empty_db_url) as conn:
        conn.execute("DELETE FROM pgq.jobs")
    assert catalog(empty_db_url) == catalog(second_empty_db_url)


# --- 0005: paused queues ---------------------------------------------------------------------


def test_upgrade_from_0004_keeps_jobs_and_starts_with_no_pause(empty_db_url: str) -> None:
    migrate.upgrade(empty_db_url, "pgq_0004")
    with psycopg.connect(empty_db_url) as conn:
        conn.execute(
            "INSERT INTO pgq.jobs (queue, task) SELECT 'q' || i % 3, 't' "
            "FROM generate_series(1, 300) AS i"
        )
        before = conn.execute("SELECT * FROM pgq.jobs ORDER BY id").fetchall()

    migrate.upgrade(empty_db_url, "pgq_0005")

    with psycopg.connect(empty_db_url) as conn:
        assert conn.execute("SELECT * FROM pgq.jobs ORDER BY id").fetchall() == before
        assert conn.execute("SELECT count(*) FROM pgq.queue_pauses").fetchone() == (0,)
        # The table takes only valid queue names (the domain's rule).
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("INSERT INTO pgq.queue_pauses (queue) VALUES ('bad name')")


def test_downgrade_from_0005_restores_0004(empty_db_url: str, second_empty_db_url: str) -> None:
    migrate.upgrade(second_empty_db_url, "pgq_0004")
    migrate.upgrade(empty_db_url, "pgq_0005")
    with psycopg.connect(empty_db_url) as conn:
        conn.execute("INSERT INTO pgq.queue_pauses (queue) VALUES ('q')")

    migrate.downgrade(empty_db_url, "pgq_0004")

    assert catalog(empty_db_url) == catalog(second_empty_db_url)


# --- 0006: workflows ------------------------------------------------------------------------


def test_upgrade_from_0005_keeps_jobs_and_adds_the_waiting_state(empty_db_url: str) -> None:
    migrate.upgrade(empty_db_url, "pgq_0005")
    with psycopg.connect(empty_db_url) as conn:
        conn.execute(
            "INSERT INTO pgq.jobs (queue, task, state) "
            "SELECT 'q', 't', (ARRAY['queued', 'running', 'succeeded'])[1 + i % 3]::pgq.job_state "
            "FROM generate_series(1, 1000) AS i"
        )
        before = dict(_storage(conn))
        rows = conn.execute("SELECT id, queue, task, state FROM pgq.jobs ORDER BY id").fetchall()

    migrate.upgrade(empty_db_url, "pgq_0006")

    with psycopg.connect(empty_db_url) as conn:
        # Added columns are NULL or a constant default: the table was not rewritten.
        assert dict(_storage(conn))["jobs"] == before["jobs"]
        after = conn.execute("SELECT id, queue, task, state FROM pgq.jobs ORDER BY id").fetchall()
        assert after == rows
        assert conn.execute(
            "SELECT count(*) FROM pgq.jobs WHERE has_dependents OR workflow_id IS NOT NULL "
            "OR parents_pending IS NOT NULL"
        ).fetchone() == (0,)
        labels = conn.execute("SELECT enum_range(NULL::pgq.job_state)::text").fetchone()
        assert labels == ("{queued,waiting,running,succeeded,failed,cancelled}",)
        # The views read the new state (waiting > queued and < running) and the new column.
        conn.execute("UPDATE pgq.jobs SET state = 'waiting', workflow_id = 1 WHERE id <= 10")
        stats = conn.execute("SELECT queue, waiting FROM pgq.queue_stats").fetchall()
        assert stats == [("q", 10)]
        progress = conn.execute(
            "SELECT workflow_id, total, waiting FROM pgq.workflow_progress"
        ).fetchall()
        assert progress == [(1, 10, 10)]


def test_downgrade_from_0006_restores_0005(empty_db_url: str, second_empty_db_url: str) -> None:
    migrate.upgrade(second_empty_db_url, "pgq_0005")
    migrate.upgrade(empty_db_url, "pgq_0006")
    with psycopg.connect(empty_db_url) as conn:
        conn.execute("INSERT INTO pgq.jobs (queue, task) VALUES ('q', 'queued')")
        conn.execute(
            "INSERT INTO pgq.jobs (queue, task, state, workflow_id, parents_pending) "
            "VALUES ('q', 'waits', 'waiting', 1, 1)"
        )

    migrate.downgrade(empty_db_url, "pgq_0005")

    with psycopg.connect(empty_db_url) as conn:
        # A job still waiting can never run under schema 5: it ends cancelled; others stay.
        states = conn.execute("SELECT task, state::text FROM pgq.jobs ORDER BY id").fetchall()
        assert states == [("queued", "queued"), ("waits", "cancelled")]
        conn.execute("DELETE FROM pgq.jobs")
    assert catalog(empty_db_url) == catalog(second_empty_db_url)


# --- 0007: stored results ---------------------------------------------------------------------


def test_upgrade_from_0006_keeps_rows_in_place_and_adds_empty_results(empty_db_url: str) -> None:
    migrate.upgrade(empty_db_url, "pgq_0006")
    with psycopg.connect(empty_db_url) as conn:
        conn.execute(
            "INSERT INTO pgq.jobs (queue, task, state, finished_at) "
            "SELECT 'q', 't', (CASE WHEN i % 2 = 0 THEN 'succeeded' ELSE 'queued' END)::"
            "pgq.job_state, CASE WHEN i % 2 = 0 THEN now() END FROM generate_series(1, 1000) i"
        )
        before = _storage(conn)
        rows = conn.execute("SELECT * FROM pgq.jobs ORDER BY id").fetchall()

    migrate.upgrade(empty_db_url, "pgq_0007")

    with psycopg.connect(empty_db_url) as conn:
        assert _storage(conn) == before  # no table rewrite, no index rebuilt
        after = conn.execute("SELECT * FROM pgq.jobs ORDER BY id").fetchall()
        assert [r[:-2] for r in after] == rows
        assert {r[-2:] for r in after} == {(None, None)}  # result, waited
        assert conn.execute(
            "SELECT obj_description('pgq'::regnamespace, 'pg_namespace')"
        ).fetchone() == ("pgq schema 7",)


def test_downgrade_from_0007_restores_0006(empty_db_url: str, second_empty_db_url: str) -> None:
    migrate.upgrade(second_empty_db_url, "pgq_0006")
    migrate.upgrade(empty_db_url, "pgq_0007")
    with psycopg.connect(empty_db_url) as conn:
        conn.execute("INSERT INTO pgq.jobs (queue, task, result) VALUES ('q', 't', '[1]')")

    migrate.downgrade(empty_db_url, "pgq_0006")

    with psycopg.connect(empty_db_url) as conn:
        assert conn.execute("SELECT count(*) FROM pgq.jobs").fetchone() == (1,)
        conn.execute("DELETE FROM pgq.jobs")
    assert catalog(empty_db_url) == catalog(second_empty_db_url)


# --- 0008: schedules ------------------------------------------------------------------------


def test_upgrade_from_0007_keeps_jobs_and_adds_the_schedules(empty_db_url: str) -> None:
    migrate.upgrade(empty_db_url, "pgq_0007")
    with psycopg.connect(empty_db_url) as conn:
        conn.execute(
            "INSERT INTO pgq.jobs (queue, task, state) "
            "SELECT 'q', 't', 'queued' FROM generate_series(1, 500)"
        )
        rows = conn.execute("SELECT * FROM pgq.jobs ORDER BY id").fetchall()

    assert migrate.upgrade(empty_db_url, "pgq_0008").after == 8

    with psycopg.connect(empty_db_url) as conn:
        assert conn.execute("SELECT * FROM pgq.jobs ORDER BY id").fetchall() == rows
        assert conn.execute("SELECT count(*) FROM pgq.schedule_status").fetchone() == (0,)
        conn.execute(
            "INSERT INTO pgq.schedules (name, task, queue, expression, grace, definition_hash)"
            " VALUES ('s', 't', 'q', '0 * * * *', '2 hours', 'h')"
        )
        assert conn.execute("SELECT overdue FROM pgq.schedule_status").fetchone() == (False,)
        # The row takes only valid queue and task names (the domains' rules).
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(
                "INSERT INTO pgq.schedules (name, task, queue, expression, grace, "
                "definition_hash) VALUES ('b', 't', 'bad queue', '* * * * *', '1 hour', 'h')"
            )


def test_downgrade_from_0008_restores_0007(empty_db_url: str, second_empty_db_url: str) -> None:
    migrate.upgrade(second_empty_db_url, "pgq_0007")
    migrate.upgrade(empty_db_url, "pgq_0008")
    with psycopg.connect(empty_db_url) as conn:
        conn.execute("INSERT INTO pgq.jobs (queue, task) VALUES ('q', 't')")
        conn.execute(
            "INSERT INTO pgq.schedules (name, task, queue, expression, grace, definition_hash)"
            " VALUES ('s', 't', 'q', '0 * * * *', '2 hours', 'h')"
        )

    migrate.downgrade(empty_db_url, "pgq_0007")

    with psycopg.connect(empty_db_url) as conn:
        conn.execute("DELETE FROM pgq.jobs")
    assert catalog(empty_db_url) == catalog(second_empty_db_url)


# --- 0009: the worker registry ---------------------------------------------------------------


def test_upgrade_from_0008_keeps_the_jobs_and_sees_them_orphaned(empty_db_url: str) -> None:
    migrate.upgrade(empty_db_url, "pgq_0008")
    with psycopg.connect(empty_db_url) as conn:
        conn.execute(
            "INSERT INTO pgq.jobs (queue, task, state) SELECT 'q', 't' || i % 2, "
            "(ARRAY['queued', 'running', 'succeeded'])[1 + i % 3]::pgq.job_state "
            "FROM generate_series(1, 300) AS i"
        )
        before = conn.execute("SELECT * FROM pgq.jobs ORDER BY id").fetchall()

    migrate.upgrade(empty_db_url, "pgq_0009")

    with psycopg.connect(empty_db_url) as conn:
        assert conn.execute("SELECT * FROM pgq.jobs ORDER BY id").fetchall() == before
        assert conn.execute("SELECT count(*) FROM pgq.workers").fetchone() == (0,)
        # No worker has registered yet: every queued job is orphaned.
        orphans = conn.execute("SELECT queue, task, queued FROM pgq.orphaned_jobs").fetchall()
        assert orphans == [("q", "t0", 50), ("q", "t1", 50)]


def test_downgrade_from_0009_restores_0008(empty_db_url: str, second_empty_db_url: str) -> None:
    migrate.upgrade(second_empty_db_url, "pgq_0008")
    migrate.upgrade(empty_db_url, "pgq_0009")
    with psycopg.connect(empty_db_url) as conn:
        conn.execute(
            "INSERT INTO pgq.workers (id, hostname, pid, version, queues, tasks, concurrency, "
            "stale_after_seconds) VALUES ('w', 'h', 1, '0', '{q}', '{}', 1, 30)"
        )

    migrate.downgrade(empty_db_url, "pgq_0008")

    assert catalog(empty_db_url) == catalog(second_empty_db_url)


# --- 0010: queue health ------------------------------------------------------------------------


def test_upgrade_from_0009_adds_the_health_view_over_existing_jobs(empty_db_url: str) -> None:
    migrate.upgrade(empty_db_url, "pgq_0009")
    with psycopg.connect(empty_db_url) as conn:
        conn.execute(
            "INSERT INTO pgq.jobs (queue, task, state) SELECT 'q', 't', "
            "(ARRAY['queued', 'running', 'succeeded'])[1 + i % 3]::pgq.job_state "
            "FROM generate_series(1, 300) AS i"
        )
        before = conn.execute("SELECT * FROM pgq.jobs ORDER BY id").fetchall()

    migrate.upgrade(empty_db_url, "pgq_0010")

    with psycopg.connect(empty_db_url) as conn:
        assert conn.execute("SELECT * FROM pgq.jobs ORDER BY id").fetchall() == before
        row = conn.execute("SELECT queued_rows, claim_index_bytes > 0 FROM pgq.health").fetchall()
        assert row == [(100, True)]


def test_downgrade_from_0010_restores_0009(empty_db_url: str, second_empty_db_url: str) -> None:
    migrate.upgrade(second_empty_db_url, "pgq_0009")
    migrate.upgrade(empty_db_url, "pgq_0010")

    migrate.downgrade(empty_db_url, "pgq_0009")

    assert catalog(empty_db_url) == catalog(second_empty_db_url)


# --- 0011: concurrency limits ----------------------------------------------------------------


def test_upgrade_from_0010_keeps_jobs_and_unique_keys(empty_db_url: str) -> None:
    migrate.upgrade(empty_db_url, "pgq_0010")
    with psycopg.connect(empty_db_url) as conn:
        conn.execute(
            "INSERT INTO pgq.jobs (queue, task, state, unique_key) "
            "SELECT 'q', 't', (ARRAY['queued', 'running', 'failed'])[1 + i % 3]::pgq.job_state, "
            "'u' || i FROM generate_series(1, 300) AS i"
        )
        before = conn.execute("SELECT id, state::text, unique_key FROM pgq.jobs ORDER BY id")
        rows = before.fetchall()

    migrate.upgrade(empty_db_url, "pgq_0011")

    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        after = conn.execute("SELECT id, state::text, unique_key FROM pgq.jobs ORDER BY id")
        assert after.fetchall() == rows
        assert conn.execute("SELECT count(concurrency_key) FROM pgq.jobs").fetchone() == (0,)
        # A live unique key still refuses a second job, blocked ones included now.
        conn.execute("INSERT INTO pgq.jobs (queue, task, state, unique_key) "
                     "VALUES ('q', 't', 'blocked', 'new')")  # fmt: skip
        for key in ("u1", "new"):
            with pytest.raises(psycopg.errors.UniqueViolation):
                conn.execute("INSERT INTO pgq.jobs (queue, task, unique_key) VALUES ('q', 't', %s)",
                             [key])  # fmt: skip
        # The failed job's key (i = 2) is free.
        conn.execute("INSERT INTO pgq.jobs (queue, task, unique_key) VALUES ('q', 't', 'u2')")


def test_downgrade_from_0011_restores_0010_and_queues_blocked_jobs(
    empty_db_url: str, second_empty_db_url: str
) -> None:
    migrate.upgrade(second_empty_db_url, "pgq_0010")
    migrate.upgrade(empty_db_url, "pgq_0011")
    with psycopg.connect(empty_db_url) as conn:
        conn.execute("INSERT INTO pgq.jobs (queue, task, state, concurrency_key) "
                     "VALUES ('q', 't', 'blocked', 'k'), ('q', 't', 'running', 'k')")  # fmt: skip
        conn.execute(
            "INSERT INTO pgq.concurrency_keys (key, max_active, active) VALUES ('k', 1, 1)"
        )

    migrate.downgrade(empty_db_url, "pgq_0010")

    with psycopg.connect(empty_db_url) as conn:
        rows = conn.execute("SELECT state::text FROM pgq.jobs ORDER BY id").fetchall()
        assert rows == [("queued",), ("running",)]
        conn.execute("DELETE FROM pgq.jobs")
    assert catalog(empty_db_url) == catalog(second_empty_db_url)


# --- 0012: rate limits -------------------------------------------------------------------------


def test_upgrade_from_0011_keeps_jobs(empty_db_url: str) -> None:
    migrate.upgrade(empty_db_url, "pgq_0011")
    with psycopg.connect(empty_db_url) as conn:
        conn.execute(
            "INSERT INTO pgq.jobs (queue, task) SELECT 'q', 't' FROM generate_series(1, 200)"
        )
        before = conn.execute("SELECT * FROM pgq.jobs ORDER BY id").fetchall()

    migrate.upgrade(empty_db_url, "pgq_0012")

    with psycopg.connect(empty_db_url) as conn:
        rows = conn.execute("SELECT * FROM pgq.jobs ORDER BY id").fetchall()
        assert [row[:-1] for row in rows] == before  # and a rate_key column, NULL
        assert {row[-1] for row in rows} == {None}
        assert conn.execute("SELECT count(*) FROM pgq.rate_limits").fetchone() == (0,)


def test_downgrade_from_0012_restores_0011_and_queues_waiting_jobs(
    empty_db_url: str, second_empty_db_url: str
) -> None:
    migrate.upgrade(second_empty_db_url, "pgq_0011")
    migrate.upgrade(empty_db_url, "pgq_0012")
    with psycopg.connect(empty_db_url) as conn:
        conn.execute("INSERT INTO pgq.jobs (queue, task, state, rate_key) "
                     "VALUES ('q', 't', 'blocked', 'k')")  # fmt: skip
        conn.execute("INSERT INTO pgq.rate_limits (key, max_starts, period) VALUES ('k', 1, 1)")

    migrate.downgrade(empty_db_url, "pgq_0011")

    with psycopg.connect(empty_db_url) as conn:
        assert conn.execute("SELECT state::text FROM pgq.jobs").fetchall() == [("queued",)]
        conn.execute("DELETE FROM pgq.jobs")
    assert catalog(empty_db_url) == catalog(second_empty_db_url)


# --- 0013: limit keys pruned --------------------------------------------------------------------


def test_upgrade_from_0012_keeps_rate_keys_unsynced(empty_db_url: str) -> None:
    migrate.upgrade(empty_db_url, "pgq_0012")
    with psycopg.connect(empty_db_url) as conn:
        conn.execute("INSERT INTO pgq.rate_limits (key, max_starts, period, starts) "
                     "VALUES ('k', 3, 1, ARRAY[now()])")  # fmt: skip

    migrate.upgrade(empty_db_url, "pgq_0013")

    with psycopg.connect(empty_db_url) as conn:
        rows = conn.execute("SELECT key, max_starts, period, synced FROM pgq.rate_limits")
        assert rows.fetchall() == [("k", 3, 1.0, False)]
        shown = conn.execute("SELECT kind, key, in_use FROM pgq.flow_limits").fetchall()
        assert shown == [("rate", "k", 1)]


def test_downgrade_from_0013_restores_0012(empty_db_url: str, second_empty_db_url: str) -> None:
    migrate.upgrade(second_empty_db_url, "pgq_0012")
    migrate.upgrade(empty_db_url, "pgq_0013")
    with psycopg.connect(empty_db_url) as conn:
        conn.execute("INSERT INTO pgq.rate_limits (key, max_starts, period, synced) "
                     "VALUES ('k', 1, 1, true)")  # fmt: skip

    migrate.downgrade(empty_db_url, "pgq_0012")

    with psycopg.connect(empty_db_url) as conn:
        assert conn.execute("SELECT key FROM pgq.rate_limits").fetchall() == [("k",)]
        conn.execute("DELETE FROM pgq.rate_limits")
    assert catalog(empty_db_url) == catalog(second_empty_db_url)
