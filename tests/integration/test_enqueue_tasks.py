"""@pgq.task: defaults reach the row, .configure() overrides them, .spec() feeds enqueue_many."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from enqueue_sessions import ASYNCPG_KIND, KINDS, Tx, open_tx, prepare_orders
from psycopg.rows import dict_row

import pgq
from pgq.registry import REGISTRY, Registry

# A registry of this module's own, so these tasks never leak into other tests.
TASKS = Registry()


@pgq.task(registry=TASKS)
def send_receipt(order_id: int) -> None:
    """Registered under its default name, with pgq's default options."""


@pgq.task(name="reports.build", queue="reports", priority=7, max_attempts=3, registry=TASKS)
def build_report(day: str) -> None:
    """Registered with every enqueue-side option set."""


@pytest.fixture(params=(*KINDS, ASYNCPG_KIND))
def tx(request: pytest.FixtureRequest, db_url: str, conn: psycopg.Connection[Any]) -> Iterator[Tx]:
    prepare_orders(conn)
    with open_tx(request.param, db_url) as opened:
        yield opened


def jobs(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT id, task, queue, priority, max_attempts, args, unique_key,"
            " run_at - created_at AS wait FROM pgq.jobs ORDER BY id"
        ).fetchall()


def test_task_enqueue_uses_the_default_name_and_defaults(
    tx: Tx, conn: psycopg.Connection[Any]
) -> None:
    job_id = tx.through(send_receipt.enqueue, order_id=42)
    tx.commit()
    assert jobs(conn) == [
        {
            "id": job_id,
            "task": "test_enqueue_tasks.send_receipt",
            "queue": "default",
            "priority": 0,
            "max_attempts": 20,
            "args": {"order_id": 42},
            "unique_key": None,
            "wait": timedelta(0),
        }
    ]


def test_the_decorators_options_flow_into_the_row(tx: Tx, conn: psycopg.Connection[Any]) -> None:
    tx.through(build_report.enqueue, day="2024-01-01")
    tx.commit()
    [job] = jobs(conn)
    assert (job["task"], job["queue"], job["priority"], job["max_attempts"]) == (
        "reports.build",
        "reports",
        7,
        3,
    )


def test_configure_overrides_for_one_enqueue_only(tx: Tx, conn: psycopg.Connection[Any]) -> None:
    configured = build_report.configure(delay=timedelta(minutes=3), queue="urgent", unique_key="d1")
    tx.through(configured.enqueue, day="d1")
    assert tx.through(configured.enqueue, day="d1") is None  # the unique key holds
    tx.through(build_report.enqueue, day="d2")
    tx.commit()
    first, second = jobs(conn)
    assert (first["queue"], first["priority"], first["unique_key"], first["wait"]) == (
        "urgent",
        7,
        "d1",
        timedelta(minutes=3),
    )
    assert (second["queue"], second["unique_key"], second["wait"]) == (
        "reports",
        None,
        timedelta(0),
    )


def test_configure_with_run_at(tx: Tx, conn: psycopg.Connection[Any]) -> None:
    at = datetime(2033, 3, 3, tzinfo=UTC)
    tx.through(send_receipt.configure(run_at=at, priority=-1).enqueue, order_id=1)
    tx.commit()
    row = conn.execute("SELECT run_at, priority FROM pgq.jobs").fetchone()
    assert row == (at, -1)


def test_specs_feed_enqueue_many_with_each_tasks_defaults(
    tx: Tx, conn: psycopg.Connection[Any]
) -> None:
    ids = tx.enqueue_many(
        [
            send_receipt.spec(order_id=1),
            build_report.spec(day="mon"),
            build_report.configure(priority=-2, max_attempts=9).spec(day="tue"),
        ]
    )
    tx.commit()
    rows = jobs(conn)
    assert [row["id"] for row in rows] == ids
    assert [(r["task"], r["queue"], r["priority"], r["max_attempts"], r["args"]) for r in rows] == [
        ("test_enqueue_tasks.send_receipt", "default", 0, 20, {"order_id": 1}),
        ("reports.build", "reports", 7, 3, {"day": "mon"}),
        ("reports.build", "reports", -2, 9, {"day": "tue"}),
    ]


def test_a_name_registered_globally_brings_its_defaults_to_plain_enqueue(
    db_url: str, conn: psycopg.Connection[Any]
) -> None:
    @pgq.task(name="test_enqueue_tasks.global", queue="globalq", priority=2, max_attempts=5)
    def global_task() -> None:
        pass

    try:
        with open_tx("psycopg", db_url) as tx:
            tx.enqueue("test_enqueue_tasks.global", {"a": 1})
            tx.enqueue("test_enqueue_tasks.global", priority=9)  # explicit beats registered
            tx.commit()
    finally:
        REGISTRY.remove("test_enqueue_tasks.global")
    assert [(r["queue"], r["priority"], r["max_attempts"]) for r in jobs(conn)] == [
        ("globalq", 2, 5),
        ("globalq", 9, 5),
    ]


def test_an_unregistered_name_can_still_be_enqueued_with_pgq_defaults(
    db_url: str, conn: psycopg.Connection[Any]
) -> None:
    # A producer need not import the worker's code: the name is all the row needs.
    with open_tx("psycopg", db_url) as tx:
        tx.enqueue("some.other.service.task", {"x": 1})
        tx.commit()
    [job] = jobs(conn)
    assert (job["queue"], job["priority"], job["max_attempts"]) == ("default", 0, 20)


def test_bad_task_options_are_refused_before_anything_is_sent(
    db_url: str, conn: psycopg.Connection[Any]
) -> None:
    with open_tx("psycopg", db_url) as tx:
        with pytest.raises(pgq.OptionError, match="unknown option"):
            build_report.configure(dely=5)
        with pytest.raises(pgq.QueueNameError):
            tx.through(build_report.configure(queue="bad queue").enqueue, day="x")
        with pytest.raises(pgq.ArgsError, match=r"args\['day'\] is a set"):
            tx.through(build_report.enqueue, day={"x"})
        tx.through(build_report.enqueue, day="ok")
        tx.commit()
    assert [job["args"] for job in jobs(conn)] == [{"day": "ok"}]


def test_duplicate_names_from_different_functions_raise() -> None:
    def other_receipt(order_id: int) -> None:
        pass

    with pytest.raises(pgq.TaskRegistrationError, match="already registered by"):
        pgq.task(name=send_receipt.name, registry=TASKS)(other_receipt)
    assert TASKS.get(send_receipt.name) is send_receipt
