"""Scenario: flow control. What a per-key concurrency limit costs a drain, and how close a
rate limit's achieved rate comes to the limit.

- ``limited_drain``: one ``pgq work --burst`` drains 20,000 no-op jobs queued plainly, then
  20,000 over 1,000 keys with a concurrency limit of 2 per key, taking turns (plain,
  limited, limited, plain ...) each in a fresh database. Every limited job waits blocked,
  is promoted by a pass or by the finish of the job before it, and finishes through
  job_finish_limited.sql. The figure is the limited rate over the plain one (median of
  the rounds); the issue's bar is 0.7.
- ``rate``: eight ``pgq work`` processes share one rate limit of 100 a second over 60 s
  (6,000 jobs queued at once, more than they can start); the achieved rate is the starts
  (``started_at``, database time) counted from the first start over 60 s. The issue's bar
  is 90-100 a second, and no window of one second may hold more than 100 starts. This one
  takes a minute: ``python -m benchmarks --only limits_rate``.
"""

from __future__ import annotations

import contextlib
import statistics
from collections.abc import Iterator

import pgq
from benchmarks.apps.limited import LIMITED
from benchmarks.apps.rated import RATE, RATED
from benchmarks.db import BenchError, connect, fresh_database
from benchmarks.harness import Context, Result
from benchmarks.scenarios.drain import burst_drain, checked_span, drain_timeout, enqueue_noops
from benchmarks.workers import WorkerProcess

NAME = "limits"
APP = "benchmarks.apps.limited"
RATED_APP = "benchmarks.apps.rated"
N, N_QUICK = 20_000, 2_000
KEYS = 1_000
ROUNDS = 5  # each round drains once plainly and once limited
TARGET_RATIO = 0.7
RATE_SECONDS, RATE_SECONDS_QUICK = 60, 5
RATE_WORKERS = 8


def run(ctx: Context) -> Iterator[Result]:
    yield from limited_drain(ctx)


def limited_drain(ctx: Context) -> Iterator[Result]:
    n = ctx.size(N, N_QUICK)
    spans: dict[str, list[float]] = {"plain": [], "limited": []}
    for round_no in range(ctx.size(ROUNDS, 1)):
        order = ("plain", "limited") if round_no % 2 == 0 else ("limited", "plain")
        for variant in order:
            with fresh_database(ctx.server) as url:
                ctx.log(f"limits: round {round_no + 1}, {variant} drain of {n:,} jobs")
                if variant == "plain":
                    first, last = enqueue_noops(url, n)
                    spans[variant].append(burst_drain(url, first, last).seconds)
                else:
                    first, last = enqueue_limited(url, n)
                    spans[variant].append(burst_drain(url, first, last, app=APP).seconds)
    plain = Result(NAME, "plain_drain", n, statistics.median(spans["plain"]))
    plain.extra["runs_s"] = spans["plain"]
    yield plain
    ratios = [p / m for m, p in zip(spans["limited"], spans["plain"], strict=True)]
    limited = Result(NAME, "limited_drain", n, statistics.median(spans["limited"]))
    limited.extra.update(
        runs_s=spans["limited"],
        keys=KEYS,
        limit_per_key=2,
        ratio_vs_plain=round(statistics.median(ratios), 3),
        ratio_min=round(min(ratios), 3),
        ratio_max=round(max(ratios), 3),
    )
    limited.target = f">= {TARGET_RATIO}x the plain drain, same run"
    limited.met = statistics.median(ratios) >= TARGET_RATIO
    yield limited


def enqueue_limited(url: str, n: int, batch: int = 5_000) -> tuple[int, int]:
    ids: list[int] = []
    with connect(url) as conn:
        for start in range(0, n, batch):
            specs = [
                pgq.JobSpec(LIMITED, {"key": i % KEYS, "i": i}, concurrency=(f"k{i % KEYS}", 2))
                for i in range(start, min(n, start + batch))
            ]
            with conn.transaction():
                ids.extend(pgq.enqueue_many(conn, specs))
    if len(ids) != n:
        raise BenchError(f"enqueue_many returned {len(ids)} ids for {n} jobs")
    return min(ids), max(ids)


def rate_accuracy(ctx: Context) -> Result:
    seconds = ctx.size(RATE_SECONDS, RATE_SECONDS_QUICK)
    n = RATE * seconds
    with fresh_database(ctx.server) as url:
        with connect(url) as conn, conn.transaction():
            specs = [pgq.JobSpec(RATED, {"i": i}, rate=("bench", RATE, 1.0)) for i in range(n)]
            ids = pgq.enqueue_many(conn, specs)
        ctx.log(f"limits: {RATE_WORKERS} workers start {n:,} jobs at {RATE}/s")
        with contextlib.ExitStack() as stack:
            workers = [
                stack.enter_context(WorkerProcess(url, "--burst", app=RATED_APP))
                for _ in range(RATE_WORKERS)
            ]
            for worker in workers:
                worker.wait(drain_timeout(n) + seconds * 2)
        checked_span(url, min(ids), max(ids))
        with connect(url) as conn:
            starts = [row[0] for row in conn.execute("SELECT started_at FROM pgq.jobs")]
    starts.sort()
    t0 = starts[0]
    counted = sum(1 for s in starts if (s - t0).total_seconds() < seconds)
    achieved = counted / seconds
    worst = _most_in_a_window(starts)
    result = Result("limits_rate", "rate_accuracy", counted, float(seconds))
    result.extra.update(limit_per_s=RATE, achieved_per_s=round(achieved, 1), workers=RATE_WORKERS,
                        most_starts_in_a_1s_window=worst)  # fmt: skip
    result.target = f"{RATE * 0.9:.0f}-{RATE} starts/s, never more than {RATE} in a 1 s window"
    result.met = RATE * 0.9 <= achieved <= RATE and worst <= RATE
    return result


def _most_in_a_window(starts: list) -> int:  # type: ignore[type-arg]
    """The most starts any window (t - 1 s, t] holds (two pointers over sorted starts)."""
    most, low = 0, 0
    for high, t in enumerate(starts):
        while (t - starts[low]).total_seconds() >= 1.0:
            low += 1
        most = max(most, high - low + 1)
    return most
