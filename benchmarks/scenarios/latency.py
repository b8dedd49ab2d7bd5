"""Scenario 4: how long a job waits, enqueue COMMIT to task start, on an idle worker.

One ``pgq work`` with default settings sits idle (LISTENing). 200 jobs are enqueued one per
transaction, 20 ms apart. Both ends are read from the database server's clock, so no two
clocks are compared. The enqueuer ends each transaction with ``COMMIT; SELECT
clock_timestamp()`` in one round trip, so the reading is taken on the server the moment
the commit is done, whatever the enqueuing process is doing (on a busy machine, reading it
in a second round trip came out late and made latencies look shorter than they were). The
task (benchmarks/apps/ledger.py) writes ``clock_timestamp()`` into a ledger as its first
act. For pgq the claim's start (``started_at``) splits the wait into the wake-up (COMMIT to
claim) and the hand-over (claim to task).

In the same run the same jobs go through a yardstick (benchmarks/hand_loop_worker.py): one
thread claiming with pgq's own statement the moment a notification arrives and running
the task inline, the fewest hops a LISTEN-woken worker can take. Its p50 turns pgq's into
a ratio (``p50_vs_hand_loop``), and shows what the worker's own machinery costs.

The peers' enqueue calls commit by themselves, so for them the clock is read in a round
trip after the call returns; that reading can only be late, which flatters them a little.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import psycopg

import pgq
from benchmarks.apps.ledger import LEDGER_URL_ENV, RECORD_START
from benchmarks.db import (
    BenchError,
    commit_then_clock,
    connect,
    fetch,
    fresh_database,
    one,
    wait_until,
)
from benchmarks.harness import Context, Result, latency_fields, ratio
from benchmarks.workers import WorkerProcess

NAME = "latency"
N, N_QUICK = 200, 30
INTERVAL = 0.020  # seconds between enqueues
WARMUP = 10  # jobs before the measured ones: the task's ledger connection, first claims
IDLE_BEFORE = 1.0  # seconds the worker sits idle before the measured jobs
READY_TIMEOUT = 30.0
TARGET_P50_MS, TARGET_P99_MS = 3.0, 10.0
APP = "benchmarks.apps.ledger"
HAND_LOOP_COMMAND = [sys.executable, "-m", "benchmarks.hand_loop_worker"]


def run(ctx: Context) -> Iterator[Result]:
    n = ctx.size(N, N_QUICK)
    result = measure_in_fresh_database(
        ctx, n, "pgq", lambda url: WorkerProcess(url, app=APP, env={LEDGER_URL_ENV: url})
    )
    hand = measure_in_fresh_database(
        ctx, n, "hand_loop", lambda url: WorkerProcess(url, command=HAND_LOOP_COMMAND)
    )
    hand.target, hand.met = None, None  # a yardstick, not a contender
    yield hand
    result.extra["p50_vs_hand_loop"] = round(ratio(result.extra["p50_ms"], hand.extra["p50_ms"]), 3)
    yield result


def measure_in_fresh_database(
    ctx: Context, n: int, variant: str, start_worker: Callable[[str], WorkerProcess]
) -> Result:
    """:func:`measure` pgq's enqueue against the worker ``start_worker`` starts on a fresh
    database."""
    with fresh_database(ctx.server) as url, connect(url) as conn, start_worker(url) as worker:
        return measure(ctx, conn, worker, lambda: enqueue_one(conn), n, variant)


def measure(
    ctx: Context,
    conn: psycopg.Connection[Any],
    worker: WorkerProcess,
    enqueue: Callable[[], tuple[int, datetime]],
    n: int,
    variant: str,
) -> Result:
    """Warm the worker up, let it idle, then time ``n`` paced enqueues through ``enqueue``
    (which returns the job's id and the server's clock after its COMMIT)."""
    warm_up(conn, worker, enqueue)
    ctx.log(f"latency: {variant} worker warm and idle; {n} jobs, {INTERVAL * 1000:.0f} ms apart")
    time.sleep(IDLE_BEFORE)
    start = time.perf_counter()
    committed = enqueue_paced(enqueue, n)
    seconds = time.perf_counter() - start
    wait_recorded(conn, worker, WARMUP + n)
    result = Result(NAME, variant, n, seconds, latency_fields(latencies_ms(conn, committed)))
    if variant == "pgq":
        result.extra.update(claim_fields(conn, committed))
    result.target = f"p50 <= {TARGET_P50_MS} ms, p99 <= {TARGET_P99_MS} ms"
    result.met = result.extra["p50_ms"] <= TARGET_P50_MS and result.extra["p99_ms"] <= TARGET_P99_MS
    return result


def enqueue_one(conn: psycopg.Connection[Any]) -> tuple[int, datetime]:
    """Enqueue one job in its own transaction; its id and the server's clock after COMMIT."""
    fetch(conn, "txn_begin")
    job_id = pgq.enqueue(conn, RECORD_START)
    return job_id, commit_then_clock(conn)


def enqueue_paced(enqueue: Callable[[], tuple[int, datetime]], n: int) -> dict[int, datetime]:
    committed: dict[int, datetime] = {}
    start = time.perf_counter()
    for i in range(n):
        pause = start + i * INTERVAL - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        job_id, at = enqueue()
        committed[job_id] = at
    return committed


def warm_up(
    conn: psycopg.Connection[Any],
    worker: WorkerProcess,
    enqueue: Callable[[], tuple[int, datetime]],
) -> None:
    """Wait for the worker to take jobs, then run WARMUP jobs through it, unmeasured."""
    enqueue()
    wait_recorded(conn, worker, 1, READY_TIMEOUT)
    for _ in range(WARMUP - 1):
        enqueue()
        time.sleep(INTERVAL)
    wait_recorded(conn, worker, WARMUP)


def wait_recorded(
    conn: psycopg.Connection[Any], worker: WorkerProcess, count: int, timeout: float = 30.0
) -> None:
    def recorded() -> bool:
        worker.check_alive()
        return int(one(conn, "ledger_count")[0]) >= count

    wait_until(recorded, timeout, f"{count} latency jobs to start")


def latencies_ms(conn: psycopg.Connection[Any], committed: dict[int, datetime]) -> list[float]:
    rows = fetch(conn, "ledger_select", {"ids": list(committed)})
    if len(rows) != len(committed):
        raise BenchError(f"{len(rows)} of {len(committed)} latency jobs recorded a start")
    return [(started - committed[job_id]).total_seconds() * 1000 for job_id, started in rows]


def claim_fields(conn: psycopg.Connection[Any], committed: dict[int, datetime]) -> dict[str, float]:
    """Where pgq's latency goes: COMMIT to the claim statement's start (started_at: the
    NOTIFY's delivery and the worker's wake-up), as claim_p50_ms and claim_p99_ms."""
    rows = fetch(conn, "job_started_select", {"ids": list(committed)})
    millis = [(started - committed[job_id]).total_seconds() * 1000 for job_id, started in rows]
    fields = latency_fields(millis)
    return {"claim_p50_ms": fields["p50_ms"], "claim_p99_ms": fields["p99_ms"]}
