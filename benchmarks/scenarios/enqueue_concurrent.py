"""Scenario 7: 8 threads enqueueing one job per transaction, with and without NOTIFY.

NOTIFY takes a global lock at commit, so many concurrent enqueuers can serialize on it.
Each variant runs 8 threads, each looping begin / insert one job / commit through its own
SQLAlchemy session, for 10 seconds in all (five rounds of 2 s, the variants alternating so
drift in the machine's load hits all alike):

- ``no_notify``: a bare INSERT of the same row into pgq.jobs, no NOTIFY: the reference;
- ``pgq``: ``pgq.enqueue(session, ...)``;
- ``bare_notify``: the bare INSERT plus pg_notify, to tell NOTIFY's cost from pgq's own.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session

import pgq
from benchmarks.apps.noop import NOOP
from benchmarks.db import fresh_database, sql
from benchmarks.harness import Context, Result, ratio
from pgq.db import to_sqlalchemy_url

NAME = "enqueue_concurrent"
THREADS = 8
SECONDS, SECONDS_QUICK = 10.0, 1.0
ROUNDS = 5  # rounds of 2 s: load that other processes put on the machine comes and goes
TARGET_RATIO = 0.8

Enqueue = Callable[[Session, int], object]


def run(ctx: Context) -> Iterator[Result]:
    seconds = ctx.seconds(SECONDS, SECONDS_QUICK)
    variants = {
        "no_notify": bare("job_insert_bare"),
        "pgq": enqueue_pgq,
        "bare_notify": bare("job_insert_bare_notify"),
    }
    rounds: dict[str, list[int]] = {name: [] for name in variants}
    with fresh_database(ctx.server) as url:
        engine = create_engine(to_sqlalchemy_url(url), pool_size=THREADS, max_overflow=0)
        try:
            for round_ in range(ROUNDS):
                names = list(variants) if round_ % 2 == 0 else list(reversed(variants))
                for name in names:
                    rounds[name].append(hammer(engine, variants[name], seconds / ROUNDS))
        finally:
            engine.dispose()
    reference = sum(rounds["no_notify"]) / seconds
    for name, counts in rounds.items():
        # Each round's rate too: how much the machine's other load moved the figures.
        per_round = [count * ROUNDS / seconds for count in counts]
        extra = {"threads": THREADS, "rounds_per_s": per_round}
        result = Result(NAME, name, sum(counts), seconds, extra)
        if name != "no_notify":
            result.extra["ratio"] = ratio(result.per_s, reference)
        if name == "pgq":
            result.target = f">= {TARGET_RATIO} x no_notify"
            result.met = result.extra["ratio"] >= TARGET_RATIO
        yield result


def enqueue_pgq(session: Session, i: int) -> object:
    return pgq.enqueue(session, NOOP, {"i": i})


def bare(statement_name: str) -> Enqueue:
    statement = text(sql(statement_name).decode())

    def insert(session: Session, i: int) -> object:
        params = {"queue": "default", "task": NOOP, "args": json.dumps({"i": i})}
        return session.execute(statement, params).all()

    return insert


def hammer(engine: Engine, enqueue: Enqueue, seconds: float) -> int:
    """THREADS threads enqueue one job per transaction for ``seconds``; jobs committed."""
    counts = [0] * THREADS
    start = threading.Barrier(THREADS + 1)
    deadline: list[float] = []

    def loop(slot: int) -> None:
        start.wait()
        while time.perf_counter() < deadline[0]:
            with Session(engine) as session, session.begin():
                enqueue(session, counts[slot])
            counts[slot] += 1

    threads = [threading.Thread(target=loop, args=(slot,)) for slot in range(THREADS)]
    for thread in threads:
        thread.start()
    deadline.append(time.perf_counter() + seconds)
    start.wait()
    for thread in threads:
        thread.join()
    return sum(counts)
