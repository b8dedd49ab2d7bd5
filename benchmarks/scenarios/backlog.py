"""Scenario 5: does a big table slow the drain? 10,000 jobs, three tables.

The same drain as scenario 3 (one ``pgq work --burst``, default settings, timed in
database time) of 10,000 due jobs, on an otherwise empty table, next to 1,000,000 jobs
queued for tomorrow (they share the claim index with the due ones), and next to
1,000,000 finished jobs. Each variant gets a fresh database; after the rows are loaded the
table is VACUUM ANALYZEd, as autovacuum would after a bulk load. A drain of 10,000 jobs
lasts about a second, so one hiccup of the machine moves it by a fifth: each variant runs
REPEATS times, the variants taking turns, and the median counts.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator

from benchmarks.db import connect, fetch, fresh_database
from benchmarks.harness import Context, Result, ratio
from benchmarks.scenarios.drain import burst_drain, enqueue_noops

NAME = "backlog"
N, N_QUICK = 10_000, 1_000
OTHERS, OTHERS_QUICK = 1_000_000, 20_000
TARGET_RATIO = 0.8
REPEATS = 3  # fresh databases per variant, the variants taking turns; the median counts
# variant -> the statement that loads the other rows (None: an empty table)
VARIANTS = {
    "empty": None,
    "future": "job_seed_future",
    "finished": "job_seed_finished",
}


def run(ctx: Context) -> Iterator[Result]:
    n = ctx.size(N, N_QUICK)
    others = ctx.size(OTHERS, OTHERS_QUICK)
    runs: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    for repeat in range(ctx.size(REPEATS, 1)):
        for variant, seed in VARIANTS.items():
            ctx.log(f"backlog: {variant}, run {repeat + 1}")
            runs[variant].append(drain_next_to(ctx, n, seed, others))
    reference = 0.0
    for variant, seed in VARIANTS.items():
        seconds = statistics.median(runs[variant])
        extra = {"other_rows": others if seed else 0, "runs_s": runs[variant]}
        result = Result(NAME, variant, n, seconds, extra)
        if seed is None:
            reference = result.per_s
        else:
            result.extra["ratio"] = ratio(result.per_s, reference)
            result.target = f">= {TARGET_RATIO} x empty"
            result.met = result.extra["ratio"] >= TARGET_RATIO
        yield result


def drain_next_to(ctx: Context, n: int, seed: str | None, others: int) -> float:
    """Seconds to drain ``n`` jobs in a fresh database, next to ``others`` rows of ``seed``."""
    with fresh_database(ctx.server) as url:
        if seed is not None:
            with connect(url) as conn:
                fetch(conn, seed, {"n": others})
        first, last = enqueue_noops(url, n)
        with connect(url) as conn:
            fetch(conn, "job_vacuum_analyze")
        return burst_drain(url, first, last).seconds
