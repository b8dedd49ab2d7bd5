"""`pgq pause`, `pgq resume` and the paused column of `pgq stats`, run in-process."""

from __future__ import annotations

from typing import Any

import psycopg
from test_cli_ops import pgq

from pgq import limits

Conn = psycopg.Connection[Any]


def test_pause_then_stats_then_resume(db_url: str, conn: Conn) -> None:
    conn.execute("INSERT INTO pgq.jobs (queue, task) VALUES ('mail', 't'), ('other', 't')")

    paused = pgq(db_url, "pause", "mail", "--reason", "provider down")
    assert paused.code == 0, paused.err
    assert paused.out.startswith("paused queue mail since ")
    assert paused.out.rstrip().endswith("(provider down)")
    assert [p.queue for p in limits.paused_queues(conn)] == ["mail"]

    stats = pgq(db_url, "stats", "--json").json()
    assert {row["queue"]: row["paused"] for row in stats} == {"mail": True, "other": False}
    table = pgq(db_url, "stats").out.splitlines()
    assert table[0].split()[-1] == "paused"
    # No worker runs, so each queue's job is also counted orphaned (the column before).
    rows = [line.split() for line in table[1:3]]
    assert [(row[0], row[-2], row[-1]) for row in rows] == [
        ("mail", "1", "paused"),
        ("other", "0.0", "1"),
    ]

    resumed = pgq(db_url, "resume", "mail")
    assert (resumed.code, resumed.out.split(" (")[0]) == (0, "resumed queue mail")
    assert limits.paused_queues(conn) == []


def test_a_paused_queue_without_jobs_shows_in_stats(db_url: str) -> None:
    assert pgq(db_url, "pause", "empty").code == 0
    stats = pgq(db_url, "stats", "--json").json()
    assert [(row["queue"], row["ready"], row["paused"]) for row in stats] == [("empty", 0, True)]


def test_json_output(db_url: str) -> None:
    paused = pgq(db_url, "pause", "mail", "--json").json()
    assert (paused["queue"], paused["reason"]) == ("mail", None)
    assert paused["paused_at"]
    assert pgq(db_url, "resume", "mail", "--json").json() == {"queue": "mail", "resumed": True}


def test_resuming_a_queue_that_is_not_paused_says_so_and_exits_1(db_url: str) -> None:
    run = pgq(db_url, "resume", "mail")
    assert run.code == 1
    assert run.one_error_line() == "pgq: error: queue mail is not paused"
    assert pgq(db_url, "resume", "mail", "--json").json() == {"queue": "mail", "resumed": False}


def test_a_bad_queue_name_is_a_usage_error(db_url: str) -> None:
    run = pgq(db_url, "pause", "bad name")
    assert run.code == 2
    assert "queue name 'bad name' may contain only" in run.one_error_line()
