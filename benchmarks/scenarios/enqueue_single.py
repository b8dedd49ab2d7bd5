"""Scenario 1: jobs enqueued one per SQLAlchemy transaction, against a bare floor.

The path an app's request handler takes: begin, ``pgq.enqueue(session, ...)``, commit. The
floor is the same loop with a bare SQLAlchemy INSERT + pg_notify into a one-table queue
(benchmarks/sql/floor_insert_notify.sql), the least an enqueue can cost. The loops
alternate in rounds, so a change in the machine's load during the run hits all alike.

``pgq_autocommit`` (no target) is ``pgq.enqueue`` on an autocommit psycopg connection: the
INSERT is its own transaction, one round trip instead of BEGIN, INSERT, COMMIT. That is
how the peers' enqueue calls work, so it is the figure to compare theirs with.

``floor_no_flush`` and ``pgq_no_flush`` (no target) are the first two loops with
``synchronous_commit`` off, so no COMMIT waits for its WAL flush. Both loops wait for the
same flush, so the slower this machine's disk, the nearer the ratio gets to 1 whatever
pgq's own cost: on one VM it moved from 0.83-0.93x to 0.97-1.08x between two sessions of a
day. Without the wait, the ratio shows what pgq's work adds, as on a disk that flushes fast.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session

import pgq
from benchmarks.apps.noop import NOOP
from benchmarks.db import connect, fresh_database, sql
from benchmarks.harness import Context, Result, ratio
from pgq.db import to_sqlalchemy_url

NAME = "enqueue_single"
N, N_QUICK = 2000, 200
ROUNDS = 4
WARMUP = 50  # per loop, not counted: connections opened, statements prepared
TARGET_RATIO = 0.9
NO_FLUSH = "-c synchronous_commit=off"  # libpq options: the session's setting from the start

Loop = Callable[[int], float]  # enqueue this many jobs, one per transaction; seconds taken


def run(ctx: Context) -> Iterator[Result]:
    n = ctx.size(N, N_QUICK) // ROUNDS * ROUNDS
    with fresh_database(ctx.server) as url, connect(url) as autocommit:
        engine = create_engine(to_sqlalchemy_url(url))
        no_flush = create_engine(to_sqlalchemy_url(url), connect_args={"options": NO_FLUSH})
        try:
            loops = {
                "floor": floor_loop(engine),
                "pgq": pgq_loop(engine),
                "pgq_autocommit": autocommit_loop(autocommit),
                "floor_no_flush": floor_loop(no_flush),
                "pgq_no_flush": pgq_loop(no_flush),
            }
            totals = alternate(loops, n)
        finally:
            engine.dispose()
            no_flush.dispose()
    floor = Result(NAME, "floor", n, totals["floor"])
    yield floor
    for name in ("pgq", "pgq_autocommit"):
        ours = compared(Result(NAME, name, n, totals[name]), floor)
        if name == "pgq":
            ours.target = f">= {TARGET_RATIO} x floor"
            ours.met = ours.extra["ratio"] >= TARGET_RATIO
        yield ours
    floor_no_flush = Result(NAME, "floor_no_flush", n, totals["floor_no_flush"])
    yield floor_no_flush
    yield compared(Result(NAME, "pgq_no_flush", n, totals["pgq_no_flush"]), floor_no_flush)


def compared(ours: Result, floor: Result) -> Result:
    """``ours`` with its ratio to ``floor`` (and the floor's rate) in its extra fields."""
    ours.extra = {"ratio": ratio(ours.per_s, floor.per_s), "floor_per_s": floor.per_s}
    return ours


def alternate(loops: dict[str, Loop], n: int) -> dict[str, float]:
    """Run each loop for ``n`` jobs in all, in ROUNDS alternating rounds; seconds per loop."""
    for loop in loops.values():
        loop(WARMUP)
    totals = dict.fromkeys(loops, 0.0)
    names = list(loops)
    for round_ in range(ROUNDS):
        for name in names if round_ % 2 == 0 else reversed(names):
            totals[name] += loops[name](n // ROUNDS)
    return totals


def pgq_loop(engine: Engine) -> Loop:
    def loop(count: int) -> float:
        start = time.perf_counter()
        for i in range(count):
            with Session(engine) as session, session.begin():
                pgq.enqueue(session, NOOP, {"i": i})
        return time.perf_counter() - start

    return loop


def autocommit_loop(conn: psycopg.Connection[Any]) -> Loop:
    """pgq.enqueue on an autocommit psycopg connection: the statement is its own transaction,
    one round trip and no BEGIN/COMMIT, as the peers' enqueue calls do it."""

    def loop(count: int) -> float:
        start = time.perf_counter()
        for i in range(count):
            pgq.enqueue(conn, NOOP, {"i": i})
        return time.perf_counter() - start

    return loop


def floor_loop(engine: Engine) -> Loop:
    statement = text(sql("floor_insert_notify").decode())

    def loop(count: int) -> float:
        start = time.perf_counter()
        for i in range(count):
            with Session(engine) as session, session.begin():
                params = {"queue": "default", "task": NOOP, "args": json.dumps({"i": i})}
                session.execute(statement, params).all()
        return time.perf_counter() - start

    return loop
