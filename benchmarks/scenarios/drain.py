"""Scenario 3: one ``pgq work`` with default settings drains 20,000 queued no-op jobs.

The jobs are queued before the worker starts; the worker runs with ``--burst`` (it exits
once nothing is due), and the drain is timed in database time from the first claim
(min started_at) to the last completion (max finished_at), so the worker's start-up and
exit are not counted. Three runs, each in a fresh database; the median counts. Also the
helpers the other worker-side scenarios share.
"""

from __future__ import annotations

import contextlib
import statistics
from collections.abc import Iterator

import pgq
from benchmarks.apps.noop import NOOP
from benchmarks.db import BenchError, Span, connect, drain_span, fresh_database
from benchmarks.harness import Context, Result
from benchmarks.workers import NOOP_APP, WorkerProcess
from pgq import store

NAME = "drain"
N, N_QUICK = 20_000, 2_000
TARGET_PER_S = 10_000
REPEATS = 3  # in fresh databases; the median counts (one drain lasts a few seconds)
ENQUEUE_BATCH = 50_000
DRAIN_TIMEOUT_BASE = 60.0  # seconds, plus one per DRAIN_TIMEOUT_RATE jobs
DRAIN_TIMEOUT_RATE = 200
HAND_LOOP_BATCH = 100  # jobs per claim and per finish in the yardstick loop


def run(ctx: Context) -> Iterator[Result]:
    n = ctx.size(N, N_QUICK)
    runs = []
    for repeat in range(ctx.size(REPEATS, 1)):
        with fresh_database(ctx.server) as url:
            first, last = enqueue_noops(url, n)
            ctx.log(f"drain: run {repeat + 1}, {n:,} jobs queued; one worker, --burst")
            runs.append(burst_drain(url, first, last).seconds)
    hand_runs = []
    for _ in range(ctx.size(REPEATS, 1)):
        with fresh_database(ctx.server) as url:
            first, last = enqueue_noops(url, n)
            hand_runs.append(hand_loop_drain(url, first, last).seconds)
    hand = Result(NAME, "hand_loop", n, statistics.median(hand_runs), {"runs_s": hand_runs})
    yield hand
    result = Result(NAME, "pgq", n, statistics.median(runs), {"runs_s": runs})
    result.extra["hand_loop_ratio"] = round(result.per_s / hand.per_s, 3)
    result.target = f">= {TARGET_PER_S:,} jobs/s"
    result.met = result.per_s >= TARGET_PER_S
    yield result


def hand_loop_drain(url: str, first: int, last: int) -> Span:
    """The issue's yardstick: one connection claiming 100 and finishing 100 at a time with
    pgq's own claim and finish statements, no task code, no event loop. Measured in the
    same run, it turns a drain figure from a noisy machine into a ratio."""
    with connect(url) as conn:
        conn.autocommit = True
        while rows := store.fetch(
            conn,
            store.claim_jobs(
                queues=["default"],
                tasks=[NOOP],
                leases=[30.0],
                limit=HAND_LOOP_BATCH,
                worker_id="hand-loop",
            ),
        ):
            store.fetch(conn, all_succeeded(rows))
    return checked_span(url, first, last)


def all_succeeded(claimed: list[store.Row]) -> store.Statement:
    """pgq's finish statement marking every job of a claim's rows succeeded."""
    return store.finish_jobs(
        ids=[row[0] for row in claimed],
        tokens=[row[6] for row in claimed],
        outcomes=["succeeded"] * len(claimed),
        delays=[0.0] * len(claimed),
        errors=[None] * len(claimed),
    )


def enqueue_noops(url: str, n: int, batch: int = ENQUEUE_BATCH) -> tuple[int, int]:
    """Queue ``n`` no-op jobs (in transactions of ``batch``); return the first and last id."""
    ids: list[int] = []
    with connect(url) as conn:
        for start in range(0, n, batch):
            specs = [pgq.JobSpec(NOOP, {"i": i}) for i in range(start, min(n, start + batch))]
            with conn.transaction():
                ids.extend(pgq.enqueue_many(conn, specs))
    if len(ids) != n or ids != sorted(ids):
        raise BenchError(f"enqueue_many returned {len(ids)} ids for {n} jobs")
    return ids[0], ids[-1]


def drain_timeout(n: int) -> float:
    return DRAIN_TIMEOUT_BASE + n / DRAIN_TIMEOUT_RATE


def burst_drain(
    url: str,
    first: int,
    last: int,
    workers: int = 1,
    args: tuple[str, ...] = (),
    app: str = NOOP_APP,
) -> Span:
    """Run ``workers`` ``pgq work --burst --app app *args`` until they exit; the span of
    jobs first..last."""
    n = last - first + 1
    with contextlib.ExitStack() as stack:
        started = [
            stack.enter_context(WorkerProcess(url, "--burst", *args, app=app))
            for _ in range(workers)
        ]
        for worker in started:
            worker.wait(drain_timeout(n))
    return checked_span(url, first, last)


def checked_span(url: str, first: int, last: int) -> Span:
    """The drain's span; BenchError unless every job of first..last succeeded."""
    span = drain_span(url, first, last)
    n = last - first + 1
    if span.done != n:
        raise BenchError(f"only {span.done:,} of {n:,} jobs succeeded")
    return span
