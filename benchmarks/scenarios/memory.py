"""Memory: a worker's resident memory after 100,000 jobs against after 10,000.

One ``pgq work`` process with default settings (not burst) works through 10,000 jobs, then
90,000 more; after each batch is drained and the worker has been idle a moment, its VmRSS
is read from /proc/<pid>/status. Growth past 10 % between the two is a leak to look at.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from benchmarks.db import fresh_database
from benchmarks.harness import Context, Result, ratio
from benchmarks.scenarios.drain import checked_span, drain_timeout, enqueue_noops
from benchmarks.scenarios.scale_out import wait_drained, wait_listening
from benchmarks.workers import WorkerProcess

NAME = "memory"
FIRST, FIRST_QUICK = 10_000, 1_000
TOTAL, TOTAL_QUICK = 100_000, 5_000
SETTLE = 1.0  # seconds idle before reading RSS: outcomes written, buffers released
TARGET_RATIO = 1.10


def run(ctx: Context) -> Iterator[Result]:
    first_n = ctx.size(FIRST, FIRST_QUICK)
    total = ctx.size(TOTAL, TOTAL_QUICK)
    with fresh_database(ctx.server) as url, WorkerProcess(url) as worker:
        wait_listening(url, [worker])
        start = time.perf_counter()
        rss_first = work_through(url, worker, first_n)
        ctx.log(f"memory: RSS {rss_first:.1f} MiB after {first_n:,} jobs")
        rss_total = work_through(url, worker, total - first_n)
        seconds = time.perf_counter() - start
        peak = worker.peak_rss_mb()
    growth = ratio(rss_total, rss_first)
    result = Result(
        NAME,
        "pgq",
        total,
        seconds,
        {"rss_10k_mb": rss_first, "rss_100k_mb": rss_total, "peak_mb": peak, "ratio": growth},
    )
    result.target = f"rss_100k <= {TARGET_RATIO} x rss_10k"
    result.met = growth <= TARGET_RATIO
    yield result


def work_through(url: str, worker: WorkerProcess, n: int) -> float:
    """Enqueue ``n`` jobs, wait until the worker has done them; its RSS (MiB) then."""
    first, last = enqueue_noops(url, n)
    wait_drained(url, [worker], drain_timeout(n))
    checked_span(url, first, last)
    time.sleep(SETTLE)
    return worker.rss_mb()
