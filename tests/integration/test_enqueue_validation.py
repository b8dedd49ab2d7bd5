"""Bad input never reaches PostgreSQL and never poisons the caller's transaction.

Each case must raise its exact error type, name the field (or the path inside args), send
nothing, and leave the transaction able to enqueue and commit.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
import sqlalchemy
from enqueue_sessions import KINDS, ORDERS_TABLE, count, open_tx, prepare_orders, sa_url, traced
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

import pgq
from pgq.args import ARGS_MAX_BYTES_DEFAULT


class Opaque:
    pass


@dataclass(frozen=True)
class Bad:
    error: type[pgq.PgqError]
    words: str  # must appear in the message
    task: Any = "valid.task"
    args: Any = None
    options: dict[str, Any] = field(default_factory=dict)


AWARE = datetime(2030, 1, 1, tzinfo=UTC)


def bad_args(words: str, args: Any, error: type[pgq.PgqError] = pgq.ArgsError) -> Bad:
    return Bad(error, words, args=args)


def bad_option(error: type[pgq.PgqError], words: str, **options: Any) -> Bad:
    return Bad(error, words, options=options)


def bad_task(words: str, task: Any) -> Bad:
    return Bad(pgq.TaskNameError, words, task=task)


OPT, QUEUE = pgq.OptionError, pgq.QueueNameError
CAP = ARGS_MAX_BYTES_DEFAULT

CASES: dict[str, Bad] = {
    # args that JSON (or PostgreSQL's jsonb) cannot hold
    "object": bad_args("args['x'] is a Opaque", {"x": Opaque()}),
    "set": bad_args("args['x'] is a set", {"x": {1, 2}}),
    "bytes": bad_args("args['x'] is a bytes", {"x": b"\x00"}),
    "datetime": bad_args("args['x'] is a datetime", {"x": AWARE}),
    "nul_in_key": bad_args("args key 'a\\x00b' contains a NUL", {"a\x00b": 1}),
    "nul_in_nested_value": bad_args(
        "args['a']['b'][1] contains a NUL", {"a": {"b": ["ok", "x\x00"]}}
    ),
    "lone_surrogate_value": bad_args("args['s'] contains a lone surrogate", {"s": "ab\ud83d"}),
    "lone_surrogate_key": bad_args("args key '\\udc00' contains a lone surrogate", {"\udc00": 1}),
    "nan": bad_args("args['v'] is nan", {"v": float("nan")}),
    "infinity": bad_args("args['v'] is inf", {"v": float("inf")}),
    "minus_infinity": bad_args("args['v'][0] is -inf", {"v": [float("-inf")]}),
    "int_key": bad_args("args has a key 1 of type int", {1: "one"}),
    "nested_tuple_key": bad_args("args['a'] has a key (1, 2)", {"a": {(1, 2): 0}}),
    "args_list": bad_args("args must be a mapping", [1, 2]),
    "args_str": bad_args("args must be a mapping", "x=1"),
    "args_over_default_cap": bad_args(
        f"args are {CAP + 1} bytes as JSON, over the cap of 262144",
        {"blob": "x" * (CAP - 10)},  # {"blob":"…"} adds 11 bytes
        pgq.ArgsTooLargeError,
    ),
    # queue names
    "queue_empty": bad_option(QUEUE, "queue name", queue=""),
    "queue_64_bytes": bad_option(QUEUE, "64 bytes, longer than 63", queue="q" * 64),
    "queue_space": bad_option(QUEUE, "queue name 'a b' may contain only", queue="a b"),
    "queue_slash": bad_option(QUEUE, "queue name 'a/b'", queue="a/b"),
    "queue_unicode": bad_option(QUEUE, "queue name 'émail'", queue="émail"),
    "queue_not_str": bad_option(QUEUE, "queue name must be", queue=7),
    # task names
    "task_empty": bad_task("task name must be a non-empty string", ""),
    "task_blank": bad_task("task name must be a non-empty string", "  "),
    "task_nul": bad_task("no NUL", "a\x00b"),
    "task_too_long": bad_task("at most 255 bytes", "t" * 256),
    "task_not_str": bad_task("task name must be", None),
    # priority
    "priority_too_high": bad_option(OPT, "priority 32768 is out of range", priority=32768),
    "priority_too_low": bad_option(OPT, "priority -32769 is out of range", priority=-32769),
    "priority_float": bad_option(OPT, "priority must be an integer", priority=1.5),
    "priority_str": bad_option(OPT, "priority must be an integer", priority="1"),
    "priority_bool": bad_option(OPT, "priority must be an integer", priority=True),
    # max_attempts
    "max_attempts_zero": bad_option(OPT, "max_attempts must be between 1", max_attempts=0),
    "max_attempts_negative": bad_option(OPT, "max_attempts must be between", max_attempts=-3),
    "max_attempts_huge": bad_option(OPT, "max_attempts must be between", max_attempts=1001),
    "max_attempts_bool": bad_option(OPT, "max_attempts must be an integer", max_attempts=True),
    "max_attempts_float": bad_option(OPT, "max_attempts must be an integer", max_attempts=2.0),
    # schedule
    "run_at_and_delay": bad_option(OPT, "either run_at or delay, not both", run_at=AWARE, delay=5),
    "run_at_naive": bad_option(OPT, "run_at is a naive datetime", run_at=datetime(2030, 1, 1)),
    "run_at_str": bad_option(OPT, "run_at must be a datetime", run_at="2030-01-01"),
    "delay_negative": bad_option(OPT, "delay must be between 0", delay=-1),
    "delay_nan": bad_option(OPT, "delay must be between 0", delay=float("nan")),
    "delay_str": bad_option(OPT, "delay must be seconds or a timedelta", delay="5"),
    # unique keys
    "unique_key_empty": bad_option(OPT, "unique_key must be", unique_key=""),
    "unique_key_nul": bad_option(OPT, "unique_key must be", unique_key="a\x00"),
    "unique_key_not_str": bad_option(OPT, "unique_key must be", unique_key=5),
}


@pytest.fixture
def orders(conn: psycopg.Connection[Any]) -> None:
    prepare_orders(conn)


@pytest.fixture
def restore_cap() -> Iterator[None]:
    previous = pgq.set_args_max_bytes(ARGS_MAX_BYTES_DEFAULT)
    yield
    pgq.set_args_max_bytes(previous)


def raises_exactly(case: Bad, call: Any) -> str:
    with pytest.raises(pgq.PgqError) as info:
        call()
    assert type(info.value) is case.error, info.value
    message = str(info.value)
    assert case.words in message
    return message


@pytest.mark.parametrize("name", CASES)
def test_bad_input_raises_its_type_sends_nothing_and_the_transaction_goes_on(
    name: str, db_url: str, orders: None, conn: psycopg.Connection[Any]
) -> None:
    case = CASES[name]
    with open_tx("psycopg", db_url) as tx:
        tx.add_order()
        with traced(tx) as sent:
            raises_exactly(case, lambda: tx.enqueue(case.task, case.args, **case.options))
        assert sent == []  # validated in Python; PostgreSQL never saw it
        follow_up = tx.enqueue("valid.task", {"after": name})
        tx.commit()
    assert conn.execute("SELECT id, args FROM pgq.jobs").fetchall() == [
        (follow_up, {"after": name})
    ]
    assert count(conn, ORDERS_TABLE) == 1


@pytest.mark.parametrize("kind", KINDS)
def test_every_bad_input_in_one_transaction_of_each_session_kind(
    kind: str, db_url: str, orders: None, conn: psycopg.Connection[Any]
) -> None:
    with open_tx(kind, db_url) as tx:
        tx.add_order()
        for name, case in CASES.items():
            raises_exactly(case, lambda case=case: tx.enqueue(case.task, case.args, **case.options))
            assert isinstance(tx.enqueue("valid.task", {"after": name}), int)
        tx.commit()
    assert count(conn) == len(CASES)
    assert count(conn, ORDERS_TABLE) == 1


def test_a_changed_args_cap_applies_and_restores(
    db_url: str, conn: psycopg.Connection[Any], restore_cap: None
) -> None:
    with open_tx("psycopg", db_url) as tx:
        assert pgq.set_args_max_bytes(1024) == ARGS_MAX_BYTES_DEFAULT
        with pytest.raises(pgq.ArgsTooLargeError, match="1025 bytes as JSON, over the cap of 1024"):
            tx.enqueue("t", {"blob": "x" * (1024 - 10)})
        exactly_at_cap = tx.enqueue("t", {"blob": "x" * (1024 - 11)})
        pgq.set_args_max_bytes(ARGS_MAX_BYTES_DEFAULT)
        bigger = tx.enqueue("t", {"blob": "x" * 100_000})
        tx.commit()
    sizes = conn.execute("SELECT id, octet_length(args::text) FROM pgq.jobs ORDER BY id").fetchall()
    assert [job_id for job_id, _ in sizes] == [exactly_at_cap, bigger]


# --- objects pgq cannot enqueue through -----------------------------------------------------


def test_an_engine_is_refused_without_connecting(db_url: str) -> None:
    engine = sqlalchemy.create_engine(sa_url(db_url))
    try:
        with pytest.raises(pgq.SessionTypeError, match="an Engine has no transaction"):
            pgq.enqueue(engine, "t")
        assert engine.pool.checkedout() == 0
    finally:
        engine.dispose()


def test_an_async_engine_is_refused(db_url: str) -> None:
    engine = create_async_engine(sa_url(db_url), poolclass=NullPool)
    with pytest.raises(pgq.SessionTypeError, match="an Engine has no transaction"):
        pgq.enqueue(engine, "t")


@pytest.mark.parametrize(
    "thing", [object(), None, "postgresql://localhost/db", 42], ids=["object", "None", "url", "int"]
)
def test_unsupported_objects_are_refused_with_what_to_pass(thing: Any) -> None:
    with pytest.raises(pgq.SessionTypeError) as info:
        pgq.enqueue(thing, "t")
    assert "pass the SQLAlchemy Session/Connection" in str(info.value)
    with pytest.raises(pgq.SessionTypeError):
        pgq.enqueue_many(thing, [pgq.JobSpec("t")])


def test_a_psycopg_cursor_is_refused(conn: psycopg.Connection[Any]) -> None:
    with conn.cursor() as cursor, pytest.raises(pgq.SessionTypeError, match=r"psycopg\.Cursor"):
        pgq.enqueue(cursor, "t")


def test_a_sqlalchemy_session_on_another_database_is_refused() -> None:
    # SQLite is only the foreign database being refused here; it stores nothing.
    engine = sqlalchemy.create_engine("sqlite://")
    with Session(engine) as session, pytest.raises(pgq.SessionTypeError) as info:
        pgq.enqueue(session, "t")
    assert "not sqlite+pysqlite; create the engine with a postgresql+psycopg:// URL" in str(
        info.value
    )


def test_a_sqlalchemy_engine_on_psycopg2_is_refused(db_url: str) -> None:
    pytest.importorskip("psycopg2", reason="psycopg2 is not installed")
    engine = sqlalchemy.create_engine(db_url.replace("postgresql://", "postgresql+psycopg2://"))
    try:
        with engine.connect() as connection, pytest.raises(pgq.SessionTypeError, match="psycopg2"):
            pgq.enqueue(connection, "t")
    finally:
        engine.dispose()


def test_session_errors_are_type_errors_under_the_one_base() -> None:
    assert issubclass(pgq.SessionTypeError, TypeError)
    assert issubclass(pgq.SessionTypeError, pgq.PgqError)
    for case in CASES.values():
        assert issubclass(case.error, pgq.ValidationError)
