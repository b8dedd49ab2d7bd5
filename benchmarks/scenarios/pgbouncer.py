"""PgBouncer mode: what it costs the claim and the finish, direct and through PgBouncer.

Three variants, measured in one run:

- ``direct``: pgq's default connections straight to PostgreSQL. psycopg prepares the
  claim and the finish after five executions, and the claim connection plans them once,
  generically (``sql/session_generic_plans.sql``).
- ``direct_pooled_mode``: the same server, the connection opened as PgBouncer mode opens
  it: nothing prepared and no session setting, so every statement is parsed and planned
  at each execution. The cost of the mode alone.
- ``pgbouncer``: PgBouncer mode through a real PgBouncer in transaction pooling mode
  (``POOL_SIZE`` server connections): the mode plus the extra hop.

Figures:

- ``claim_finish_<variant>``: one connection per variant claims ``BATCH`` jobs of its own
  queue and finishes them in one statement, as scenario 3's hand loop does (no task
  code); the three take turns statement by statement, so the machine's noise falls on
  all alike. Jobs per second of statement time, ``claim_p50_ms`` and ``finish_p50_ms``.
- ``idle_claim_<variant>``: claims that find nothing, an idle worker's every poll, taking
  turns the same way: ``p50_ms``, ``p95_ms``; ``p50_vs_direct`` is that p50 over direct's.
- ``drain_<variant>``: one ``pgq work --burst`` (concurrency 10, its reaper on) drains
  no-op jobs, timed in database time like scenario 3; ``ROUNDS`` rounds, the variants
  taking turns, a fresh database each time; the median counts, ``runs_s`` has them all.

``ratio`` is a variant's rate over ``direct``'s. Skipped, with the reason, where the
``pgbouncer`` binary is not installed.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from typing import Any

import psycopg

import pgq
from benchmarks.apps.noop import NOOP
from benchmarks.db import fetch, fresh_database
from benchmarks.harness import Context, Result, Skipped, percentile, ratio
from benchmarks.scenarios.drain import all_succeeded, burst_drain, enqueue_noops
from pgq import db, devbouncer, store

NAME = "pgbouncer"
VARIANTS = ("direct", "direct_pooled_mode", "pgbouncer")
BATCH = 10  # jobs per claim and per finish: a worker's default concurrency
JOBS, JOBS_QUICK = 5_000, 500  # per variant, for claim_finish
IDLE_CLAIMS, IDLE_CLAIMS_QUICK = 1_000, 100  # per variant
DRAIN_N, DRAIN_N_QUICK = 10_000, 1_000
ROUNDS, ROUNDS_QUICK = 3, 1
POOL_SIZE = 4  # server connections: a worker's claim, writer and reaper, and a spare
IDLE_QUEUE = "idle"  # nothing is ever enqueued on it


def run(ctx: Context) -> Iterator[Result]:
    if devbouncer.find_binary() is None:
        raise Skipped("pgbouncer is not installed (apt-get install pgbouncer)")
    with devbouncer.start(ctx.server.url, pool_size=POOL_SIZE) as bouncer:
        yield from statements(ctx, bouncer)
        yield from drains(ctx, bouncer)


# --- the statements, taking turns ------------------------------------------------------------


def statements(ctx: Context, bouncer: devbouncer.PgBouncer) -> Iterator[Result]:
    n = ctx.size(JOBS, JOBS_QUICK)
    idle_n = ctx.size(IDLE_CLAIMS, IDLE_CLAIMS_QUICK)
    with fresh_database(ctx.server) as url:
        enqueue_per_variant(url, n)
        conns = {v: connection(bouncer.url(url) if v == "pgbouncer" else url, v) for v in VARIANTS}
        try:
            ctx.log(f"pgbouncer: claim and finish {n:,} jobs per variant, taking turns")
            claims, finishes = claim_and_finish_in_turns(conns)
            ctx.log(f"pgbouncer: {idle_n:,} idle claims per variant, taking turns")
            idle = idle_claims_in_turns(conns, idle_n)
        finally:
            for conn in conns.values():
                conn.close()
    yield from claim_finish_results(n, claims, finishes)
    yield from idle_claim_results(idle)


def enqueue_per_variant(url: str, n: int) -> None:
    """``n`` no-op jobs on each variant's own queue, then the statistics autovacuum keeps."""
    with db.connect(url, autocommit=True) as conn:
        for variant in VARIANTS:
            with conn.transaction():
                pgq.enqueue_many(conn, [pgq.JobSpec(NOOP, {}, queue=variant)] * n)
        fetch(conn, "job_vacuum_analyze")


def connection(url: str, variant: str) -> psycopg.Connection[Any]:
    """A claim connection as the worker opens it in the variant's mode."""
    pooled = variant != "direct"
    conn = db.connect(url, pgbouncer=pooled, autocommit=True)
    if not pooled:
        store.fetch(conn, store.use_generic_plans())
    return conn


def claim(queue: str) -> store.Statement:
    return store.claim_jobs(
        queues=[queue], tasks=[NOOP], leases=[30.0], limit=BATCH, worker_id="bench"
    )


Timings = dict[str, list[float]]  # variant -> milliseconds per statement


def claim_and_finish_in_turns(conns: dict[str, psycopg.Connection[Any]]) -> tuple[Timings, Timings]:
    claims: Timings = {v: [] for v in conns}
    finishes: Timings = {v: [] for v in conns}
    active = set(conns)
    while active:
        for variant in VARIANTS:
            if variant not in active:
                continue
            rows, ms = timed(conns[variant], claim(variant))
            if not rows:
                active.discard(variant)
                continue
            claims[variant].append(ms)
            finishes[variant].append(timed(conns[variant], all_succeeded(rows))[1])
    return claims, finishes


def idle_claims_in_turns(conns: dict[str, psycopg.Connection[Any]], n: int) -> Timings:
    idle: Timings = {v: [] for v in conns}
    for _ in range(n):
        for variant in VARIANTS:
            idle[variant].append(timed(conns[variant], claim(IDLE_QUEUE))[1])
    return idle


def timed(conn: psycopg.Connection[Any], statement: store.Statement) -> tuple[list[Any], float]:
    started = time.perf_counter()
    rows = store.fetch(conn, statement)
    return rows, (time.perf_counter() - started) * 1000


def claim_finish_results(n: int, claims: Timings, finishes: Timings) -> Iterator[Result]:
    def rate(variant: str) -> float:
        return n / ((sum(claims[variant]) + sum(finishes[variant])) / 1000)

    for variant in VARIANTS:
        seconds = (sum(claims[variant]) + sum(finishes[variant])) / 1000
        extra = {
            "claim_p50_ms": statistics.median(claims[variant]),
            "finish_p50_ms": statistics.median(finishes[variant]),
            "ratio": ratio(rate(variant), rate("direct")),
        }
        yield Result(NAME, f"claim_finish_{variant}", n, seconds, extra)


def idle_claim_results(idle: Timings) -> Iterator[Result]:
    direct = statistics.median(idle["direct"])
    for variant in VARIANTS:
        millis = idle[variant]
        p50 = statistics.median(millis)
        extra = {"p50_ms": p50, "p95_ms": percentile(millis, 95), "p50_vs_direct": p50 / direct}
        yield Result(NAME, f"idle_claim_{variant}", len(millis), sum(millis) / 1000, extra)


# --- whole drains, in alternating rounds -----------------------------------------------------


def drains(ctx: Context, bouncer: devbouncer.PgBouncer) -> Iterator[Result]:
    n = ctx.size(DRAIN_N, DRAIN_N_QUICK)
    runs: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for round_no in range(ctx.size(ROUNDS, ROUNDS_QUICK)):
        for variant in VARIANTS:
            ctx.log(f"pgbouncer: drain round {round_no + 1}, {variant}, {n:,} jobs")
            with fresh_database(ctx.server) as url:
                first, last = enqueue_noops(url, n)
                worker_url = bouncer.url(url) if variant == "pgbouncer" else url
                mode = "--no-pgbouncer" if variant == "direct" else "--pgbouncer"
                runs[variant].append(burst_drain(worker_url, first, last, args=(mode,)).seconds)
    direct = n / statistics.median(runs["direct"])
    for variant in VARIANTS:
        result = Result(NAME, f"drain_{variant}", n, statistics.median(runs[variant]))
        result.extra = {"runs_s": runs[variant], "ratio": ratio(result.per_s, direct)}
        yield result
