"""The reaper vacuums pgq.jobs when dead rows pile up (autovacuum may be slow, or off)."""

from __future__ import annotations

import time
from typing import Any

import psycopg
import pytest

from pgq import reaper
from pgq.errors import ValidationError

CONFIG = reaper.ReaperConfig(vacuum_dead_rows=1000, vacuum_dead_fraction=0.0)
STATS_WAIT = 15.0  # seconds: the statistics views are updated a little after each commit


# pg_stat_user_tables columns these tests read: rows dead, and rows changed since ANALYZE.
STATS = {
    "dead": "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relid = 'pgq.jobs'::regclass",
    "modified": "SELECT n_mod_since_analyze FROM pg_stat_user_tables "
    "WHERE relid = 'pgq.jobs'::regclass",
}


def table_stat(conn: psycopg.Connection[Any], name: str) -> int:
    conn.execute("SELECT pg_stat_clear_snapshot()")
    row = conn.execute(STATS[name]).fetchone()
    return int(row[0]) if row else 0


def wait_for_stat(conn: psycopg.Connection[Any], name: str, at_least: int) -> None:
    deadline = time.monotonic() + STATS_WAIT
    while table_stat(conn, name) < at_least:
        assert time.monotonic() < deadline, f"the statistics never showed {at_least} {name} rows"
        time.sleep(0.2)


def dead_rows(conn: psycopg.Connection[Any]) -> int:
    return table_stat(conn, "dead")


def wait_for_dead_rows(conn: psycopg.Connection[Any], at_least: int) -> None:
    wait_for_stat(conn, "dead", at_least)


def make_dead_rows(conn: psycopg.Connection[Any], count: int) -> None:
    conn.execute(
        "INSERT INTO pgq.jobs (queue, task) SELECT 'q', 't' FROM generate_series(1, %s)",
        [count],
    )
    # Finishing a job leaves its queued version dead, as a worker's claim and finish do.
    conn.execute("UPDATE pgq.jobs SET state = 'succeeded', finished_at = now()")


def test_vacuums_once_dead_rows_pass_the_threshold(conn: psycopg.Connection[Any]) -> None:
    make_dead_rows(conn, 3000)
    wait_for_dead_rows(conn, 2000)

    assert reaper.vacuum_if_needed(conn, CONFIG)

    assert dead_rows(conn) < 1000


def test_a_backlog_of_inserts_alone_gets_the_table_analyzed(conn: psycopg.Connection[Any]) -> None:
    """Inserts leave no dead rows, but statistics from a short queue give the claim a bad
    plan once a backlog builds: rows changed since the last ANALYZE count too."""
    conn.execute("ANALYZE pgq.jobs")
    conn.execute("INSERT INTO pgq.jobs (queue, task) SELECT 'q', 't' FROM generate_series(1, 3000)")
    wait_for_stat(conn, "modified", 3000)
    assert dead_rows(conn) < 1000

    assert reaper.vacuum_if_needed(conn, CONFIG)

    assert table_stat(conn, "modified") < 1000


def test_leaves_the_table_alone_below_the_threshold(conn: psycopg.Connection[Any]) -> None:
    make_dead_rows(conn, 200)
    wait_for_dead_rows(conn, 200)

    assert not reaper.vacuum_if_needed(conn, CONFIG)
    assert dead_rows(conn) >= 200


def test_the_fraction_of_live_rows_raises_the_threshold(conn: psycopg.Connection[Any]) -> None:
    conn.execute(
        "INSERT INTO pgq.jobs (queue, task) SELECT 'q', 't' FROM generate_series(1, 50000)"
    )
    wait_for_stat(conn, "modified", 50000)  # or the inserts' counts could arrive after the ANALYZE
    conn.execute("ANALYZE pgq.jobs")
    conn.execute("UPDATE pgq.jobs SET priority = 1 WHERE id <= 3000")
    wait_for_dead_rows(conn, 2000)

    # 3,000 dead rows are over 1,000 but under 10 % of 50,000 live ones.
    config = reaper.ReaperConfig(vacuum_dead_rows=1000, vacuum_dead_fraction=0.1)
    assert not reaper.vacuum_if_needed(conn, config)


def test_none_leaves_vacuuming_to_autovacuum(conn: psycopg.Connection[Any]) -> None:
    make_dead_rows(conn, 3000)
    wait_for_dead_rows(conn, 2000)

    assert not reaper.vacuum_if_needed(conn, reaper.ReaperConfig(vacuum_dead_rows=None))


@pytest.mark.parametrize(
    ("field", "value"),
    [("vacuum_dead_rows", 0), ("vacuum_dead_rows", 1.5), ("vacuum_dead_fraction", -0.1)],
)
def test_bad_thresholds_are_refused(field: str, value: object) -> None:
    with pytest.raises(ValidationError, match=field):
        reaper.ReaperConfig(**{field: value})  # type: ignore[arg-type]
