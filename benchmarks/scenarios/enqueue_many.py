"""Scenario 2: 50,000 jobs in one ``enqueue_many`` call, in one SQLAlchemy transaction.

The clock covers the call and the COMMIT; the JobSpecs are built before it starts (that
is the caller's work). Next to it, as a reference with no target, the server floor: the
same number of rows made by one INSERT ... SELECT on the server (no parameters, no
validation), which says how much of the time is PostgreSQL's alone. The two alternate,
REPEATS times each in the same database; the median counts.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session

import pgq
from benchmarks.apps.noop import NOOP
from benchmarks.db import BenchError, connect, fetch, fresh_database
from benchmarks.harness import Context, Result, ratio
from pgq.db import to_sqlalchemy_url

NAME = "enqueue_many"
N, N_QUICK = 50_000, 5_000
REPEATS = 3
TARGET_PER_S = 50_000


def run(ctx: Context) -> Iterator[Result]:
    n = ctx.size(N, N_QUICK)
    specs = [pgq.JobSpec(NOOP, {"i": i}) for i in range(n)]
    with fresh_database(ctx.server) as url:
        engine = create_engine(to_sqlalchemy_url(url))
        try:
            runs = alternate(
                {
                    "server_floor": lambda: server_floor(url, n),
                    "pgq": lambda: timed_call(engine, specs),
                }
            )
        finally:
            engine.dispose()
    floor = Result(
        NAME,
        "server_floor",
        n,
        statistics.median(runs["server_floor"]),
        {"runs_s": runs["server_floor"]},
    )
    result = Result(NAME, "pgq", n, statistics.median(runs["pgq"]), {"runs_s": runs["pgq"]})
    result.extra["server_floor_ratio"] = ratio(result.per_s, floor.per_s)
    result.target = f">= {TARGET_PER_S:,} jobs/s"
    result.met = result.per_s >= TARGET_PER_S
    yield floor
    yield result


def alternate(calls: dict[str, Callable[[], float]]) -> dict[str, list[float]]:
    runs: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(REPEATS):
        for name, call in calls.items():
            runs[name].append(call())
    return runs


def timed_call(engine: Engine, specs: list[pgq.JobSpec]) -> float:
    start = time.perf_counter()
    with Session(engine) as session, session.begin():
        ids = pgq.enqueue_many(session, specs)
    seconds = time.perf_counter() - start
    if len(ids) != len(specs):
        raise BenchError(f"enqueue_many returned {len(ids)} ids for {len(specs)} jobs")
    return seconds


def server_floor(url: str, n: int) -> float:
    with connect(url) as conn:
        start = time.perf_counter()
        fetch(conn, "job_insert_series", {"task": NOOP, "n": n})
        return time.perf_counter() - start
