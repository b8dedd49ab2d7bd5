"""`pgq pause`, `pgq resume` and the paused column of `pgq stats`, run in-process."""

from __future__ import annotations

from typing import Any

import psycopg
from test_cli_ops import pgq

import pgq as pgq_lib
from pgq import limits, store
from pgq.registry import Registry

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


def test_limits_shows_each_limit_its_use_and_its_waiting_jobs(db_url: str, conn: Conn) -> None:
    reg = Registry()

    @pgq_lib.task(name="cli.conc", registry=reg, concurrency_limit=2, concurrency_key="api")
    def conc() -> None: ...

    @pgq_lib.task(name="cli.rate", registry=reg, rate_limit="3/s")
    def rate() -> None: ...

    pgq_lib.enqueue_many(conn, [conc.spec() for _ in range(5)] + [rate.spec() for _ in range(4)])
    store.fetch(conn, store.unblock_jobs(limit=100))  # creates the key's row
    store.fetch(conn, store.unblock_jobs(limit=100))  # fills its two slots
    limits.pause_queue(conn, "mail", "provider down")

    shown = pgq(db_url, "limits", "--json").json()
    rows = [(r["kind"], r["key"], r["max"], r["in_use"], r["waiting"]) for r in shown["limits"]]
    assert rows == [("rate", "cli.rate", 3, 0, 4), ("concurrency", "api", 2, 2, 3)]
    assert shown["limits"][0]["period_seconds"] == 1.0
    assert [p["queue"] for p in shown["paused"]] == ["mail"]

    table = pgq(db_url, "limits").out.splitlines()
    assert table[0].split() == ["kind", "key", "limit", "in", "use", "waiting"]
    assert table[1].split() == ["rate", "cli.rate", "3/1s", "0", "4"]
    assert table[2].split() == ["concurrency", "api", "2", "2", "3"]
    assert table[3].startswith("paused: mail since ") and table[3].endswith("(provider down)")


def test_limits_with_nothing_in_use(db_url: str) -> None:
    assert pgq(db_url, "limits").out.strip() == "no limit in use"
    assert pgq(db_url, "limits", "--json").json() == {"limits": [], "paused": []}
