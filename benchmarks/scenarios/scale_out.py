"""Scenario 6: 50,000 jobs drained by 1, 2 and 4 ``pgq work`` processes.

Started together, the workers must not be measured by how fast they import: they start
first (default settings, not burst) and the jobs are enqueued in one transaction once
every worker is LISTENing, so its NOTIFY wakes all of them at once. The drain is timed in
database time, first claim to last completion; the workers are stopped with SIGTERM once
nothing is left. A fresh database per variant.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from benchmarks.db import connect, fresh_database, one, wait_until
from benchmarks.harness import Context, Result, ratio
from benchmarks.scenarios.drain import checked_span, drain_timeout, enqueue_noops
from benchmarks.workers import WorkerProcess

NAME = "scale_out"
N, N_QUICK = 50_000, 3_000
WORKERS, WORKERS_QUICK = (1, 2, 4), (1, 2)
READY_TIMEOUT = 60.0
DRAINED_POLL = 0.2  # seconds between looks at the pending count


def run(ctx: Context) -> Iterator[Result]:
    n = ctx.size(N, N_QUICK)
    single = 0.0
    for count in WORKERS_QUICK if ctx.quick else WORKERS:
        with fresh_database(ctx.server) as url:
            seconds = drain_with(ctx, url, n, count)
        result = Result(NAME, f"{count}_workers", n, seconds, {"workers": count})
        single = single or result.per_s
        result.extra["speedup"] = ratio(result.per_s, single)
        yield result


def drain_with(ctx: Context, url: str, n: int, count: int) -> float:
    with contextlib.ExitStack() as stack:
        workers = [stack.enter_context(WorkerProcess(url)) for _ in range(count)]
        wait_listening(url, workers)
        ctx.log(f"scale_out: {count} workers listening; enqueueing {n:,} jobs")
        first, last = enqueue_noops(url, n, batch=n)
        wait_drained(url, workers, drain_timeout(n))
    return checked_span(url, first, last).seconds


def wait_listening(url: str, workers: list[WorkerProcess]) -> None:
    with connect(url) as conn:

        def listening() -> bool:
            for worker in workers:
                worker.check_alive()
            return int(one(conn, "worker_listening_count")[0]) >= len(workers)

        wait_until(listening, READY_TIMEOUT, f"{len(workers)} workers to LISTEN")


def wait_drained(url: str, workers: list[WorkerProcess], timeout: float) -> None:
    with connect(url) as conn:

        def drained() -> bool:
            for worker in workers:
                worker.check_alive()
            return int(one(conn, "job_pending_count")[0]) == 0

        wait_until(drained, timeout, "the queue to drain", interval=DRAINED_POLL)
