"""Scenario 5: does a big table slow the drain? 10,000 jobs, three tables.

The same drain as scenario 3 (one ``pgq work --burst``, default settings, timed in
database time) of 10,000 due jobs, on an otherwise empty table, next to 1,000,000 jobs
queued for tomorrow (they share the claim index with the due ones), and next to
1,000,000 finished jobs. Each variant gets a fresh database; after the rows are loaded the
table is VACUUM ANALYZEd, as autovacuum would after a bulk load.
"""

from __future__ import annotations

from collections.abc import Iterator

from benchmarks.db import connect, fetch, fresh_database
from benchmarks.harness import Context, Result, ratio
from benchmarks.scenarios.drain import burst_drain, enqueue_noops

NAME = "backlog"
N, N_QUICK = 10_000, 1_000
OTHERS, OTHERS_QUICK = 1_000_000, 20_000
TARGET_RATIO = 0.8
# variant -> the statement that loads the other rows (None: an empty table)
VARIANTS = {
    "empty": None,
    "future": "job_seed_future",
    "finished": "job_seed_finished",
}


def run(ctx: Context) -> Iterator[Result]:
    n = ctx.size(N, N_QUICK)
    others = ctx.size(OTHERS, OTHERS_QUICK)
    reference = 0.0
    for variant, seed in VARIANTS.items():
        with fresh_database(ctx.server) as url:
            if seed is not None:
                ctx.log(f"backlog: loading {others:,} rows ({variant})")
                with connect(url) as conn:
                    fetch(conn, seed, {"n": others})
            first, last = enqueue_noops(url, n)
            with connect(url) as conn:
                fetch(conn, "job_vacuum_analyze")
            ctx.log(f"backlog: draining {n:,} jobs ({variant})")
            span = burst_drain(url, first, last)
        result = Result(NAME, variant, n, span.seconds, {"other_rows": others if seed else 0})
        if seed is None:
            reference = result.per_s
        else:
            result.extra["ratio"] = ratio(result.per_s, reference)
            result.target = f">= {TARGET_RATIO} x empty"
            result.met = result.extra["ratio"] >= TARGET_RATIO
        yield result
