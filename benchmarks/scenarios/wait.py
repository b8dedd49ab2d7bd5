"""pgq.wait: how soon a waiter returns after its job finishes, and how many reads of the
job it takes, with LISTEN (the default) and with polling (PgBouncer mode).

One ``pgq work`` runs a task that sleeps ``TASK_MS`` and returns a small result. One job at
a time is enqueued (autocommit) and waited for with ``pgq.wait(url, id)``: the waiter
opens its connection, LISTENs and flags the job (or, polling, reads it with back-off)
while the job runs. The latency is the job's ``finished_at`` to a ``clock_timestamp()``
read right after ``wait`` returned, both on the server's clock; that reading takes one
round trip after the return, so the figure is a little late, for both modes alike.
``reads_per_wait`` counts the waiter's reads of the job (``job_result_get``): with LISTEN
it reads once before the finish and once when notified; polling reads at every step of
its back-off. The cost on the finish side (one ``NOTIFY`` per waited job, none for the
others) shows in the drain comparison (docs/design-notes.md, "Results and waiting").
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pgq
from benchmarks.apps.results_app import SLEEP_RETURN
from benchmarks.db import BenchError, connect, fresh_database, one
from benchmarks.harness import Context, Result, latency_fields
from benchmarks.workers import WorkerProcess
from pgq import store

NAME = "wait"
N, N_QUICK = 100, 10
WARMUP = 5
TASK_MS = 20.0
WAIT_TIMEOUT = 30.0
APP = "benchmarks.apps.results_app"
MODES = {"listen": False, "poll": True}  # mode: pgbouncer= (True: no LISTEN, polling)


def run(ctx: Context) -> Iterator[Result]:
    n = ctx.size(N, N_QUICK)
    for mode, poll in MODES.items():
        with fresh_database(ctx.server) as url, WorkerProcess(url, app=APP) as worker:
            yield measure(ctx, url, worker, n, mode, poll)


def measure(ctx: Context, url: str, worker: WorkerProcess, n: int, mode: str, poll: bool) -> Result:
    with connect(url) as conn:
        conn.autocommit = True
        for _ in range(WARMUP):
            wait_one(conn, url, poll, worker)
        ctx.log(f"wait: {mode}, {n} jobs of {TASK_MS:.0f} ms, one at a time")
        millis: list[float] = []
        reads = 0
        start = time.perf_counter()
        for _ in range(n):
            latency, count = wait_one(conn, url, poll, worker)
            millis.append(latency)
            reads += count
        seconds = time.perf_counter() - start
    extra: dict[str, Any] = latency_fields(millis)
    extra.update(reads_per_wait=reads / n, task_ms=TASK_MS)
    return Result(NAME, mode, n, seconds, extra)


def wait_one(conn: Any, url: str, poll: bool, worker: WorkerProcess) -> tuple[float, int]:
    """Enqueue one job, wait for it; (finish to return in ms, the waiter's reads)."""
    worker.check_alive()
    job_id = pgq.enqueue(conn, SLEEP_RETURN, {"ms": TASK_MS})
    with results_store_fetch_counter() as reads:
        value = pgq.wait(url, job_id, timeout=WAIT_TIMEOUT, pgbouncer=poll)
    (returned_at,) = one(conn, "clock_now")
    if value != {"slept_ms": TASK_MS}:
        raise BenchError(f"job {job_id} returned {value!r}")
    (finished_at,) = one(conn, "job_finished_at", {"id": job_id})
    return (returned_at - finished_at).total_seconds() * 1000, reads.count


@dataclass
class Reads:
    count: int = 0


@contextlib.contextmanager
def results_store_fetch_counter() -> Iterator[Reads]:
    """Count the job reads (``job_result_get``) this process sends while inside."""
    reads, original = Reads(), store.fetch

    def counting(conn: Any, statement: store.Statement) -> list[store.Row]:
        if statement.name == "job_result_get":
            reads.count += 1
        return original(conn, statement)

    store.fetch = counting  # type: ignore[assignment]
    try:
        yield reads
    finally:
        store.fetch = original  # type: ignore[assignment]
