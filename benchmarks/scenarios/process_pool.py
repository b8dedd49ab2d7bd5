"""The process pool (``pgq work --pool process``) against the thread pool.

Figures:

- ``drain_thread`` / ``drain_process``: one ``pgq work --burst`` (concurrency 10, its
  reaper on) drains no-op sync jobs, timed in database time like scenario 3 (first claim
  to last completion; the children's start-up falls inside it, as the first jobs wait for
  their child). ``ROUNDS`` rounds, the two pools taking turns, a fresh database each
  time; the median counts, ``runs_s`` has them all. ``ratio`` is a pool's rate over the
  thread pool's.
- ``child_start_forkserver`` / ``child_start_spawn``: how long one child takes from
  ``start()`` to ready (forked from the fork server, or a new interpreter, then importing
  the benchmark's app), started one after another in this process, and its resident
  memory once ready (``rss_mib``): what every child costs, at start and after each
  replacement. ``default`` marks the method pgq uses here.
"""

from __future__ import annotations

import logging
import multiprocessing
import statistics
import time
from collections.abc import Iterator

from benchmarks.apps.noop import NOOP
from benchmarks.db import fresh_database
from benchmarks.harness import Context, Result, percentile, ratio
from benchmarks.scenarios.drain import burst_drain, enqueue_noops
from benchmarks.workers import NOOP_APP
from pgq.children import Child, ChildConfig, mp_context, start_method

NAME = "process_pool"
POOLS = ("thread", "process")
DRAIN_N, DRAIN_N_QUICK = 20_000, 2_000
ROUNDS, ROUNDS_QUICK = 3, 1
CHILDREN, CHILDREN_QUICK = 10, 3
START_METHODS = ("forkserver", "spawn")  # pgq's choice where it exists, and the fallback


def run(ctx: Context) -> Iterator[Result]:
    yield from drains(ctx)
    for method in START_METHODS:
        if method in multiprocessing.get_all_start_methods():
            yield child_start(ctx, method)


def drains(ctx: Context) -> Iterator[Result]:
    n = ctx.size(DRAIN_N, DRAIN_N_QUICK)
    runs: dict[str, list[float]] = {pool: [] for pool in POOLS}
    for round_no in range(ctx.size(ROUNDS, ROUNDS_QUICK)):
        for pool in POOLS:
            ctx.log(f"process_pool: drain round {round_no + 1}, --pool {pool}, {n:,} jobs")
            with fresh_database(ctx.server) as url:
                first, last = enqueue_noops(url, n)
                runs[pool].append(burst_drain(url, first, last, args=("--pool", pool)).seconds)
    thread = n / statistics.median(runs["thread"])
    for pool in POOLS:
        result = Result(NAME, f"drain_{pool}", n, statistics.median(runs[pool]))
        result.extra = {"runs_s": runs[pool], "ratio": ratio(result.per_s, thread), "task": NOOP}
        yield result


def child_start(ctx: Context, method: str) -> Result:
    count = ctx.size(CHILDREN, CHILDREN_QUICK)
    mp = mp_context(method)
    config = ChildConfig(apps=(NOOP_APP,), worker_id="bench", log_level=logging.WARNING)
    stopping = mp.Event()
    # A fork server starts with the first child: start one first so it is not counted.
    Child(mp, config, stopping).close()
    seconds, rss = [], []
    for _ in range(count):
        started = time.perf_counter()
        child = Child(mp, config, stopping)
        seconds.append(time.perf_counter() - started)
        rss.append(_rss_mib(child.pid))
        child.close()
    ctx.log(f"process_pool: {count} children started one after another ({method})")
    result = Result(NAME, f"child_start_{method}", count, sum(seconds))
    result.extra = {
        "p50_ms": percentile(seconds, 50) * 1000,
        "max_ms": max(seconds) * 1000,
        "rss_mib": statistics.median(rss),
        "default": method == start_method(),
    }
    return result


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0
