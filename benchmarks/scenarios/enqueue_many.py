"""Scenario 2: 50,000 jobs in one ``enqueue_many`` call, in one SQLAlchemy transaction.

The clock covers the call and the COMMIT; the JobSpecs are built before it starts (that
is the caller's work). Three repetitions in the same database; the median counts.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session

import pgq
from benchmarks.apps.noop import NOOP
from benchmarks.db import BenchError, fresh_database
from benchmarks.harness import Context, Result
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
            runs = [timed_call(engine, specs) for _ in range(REPEATS)]
        finally:
            engine.dispose()
    result = Result(NAME, "pgq", n, statistics.median(runs), {"runs_s": runs})
    result.target = f">= {TARGET_PER_S:,} jobs/s"
    result.met = result.per_s >= TARGET_PER_S
    yield result


def timed_call(engine: Engine, specs: list[pgq.JobSpec]) -> float:
    start = time.perf_counter()
    with Session(engine) as session, session.begin():
        ids = pgq.enqueue_many(session, specs)
    seconds = time.perf_counter() - start
    if len(ids) != len(specs):
        raise BenchError(f"enqueue_many returned {len(ids)} ids for {len(specs)} jobs")
    return seconds
