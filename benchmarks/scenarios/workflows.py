"""Scenario: workflows. What a group costs a drain, and how fast a fan-in follows.

- ``group_drain``: one ``pgq work --burst`` drains 20,000 no-op jobs queued plainly, then
  20,000 queued as one group with a callback, taking turns (plain, group, group, plain ...)
  each in a fresh database, so both meet the same machine. Every group member has a
  dependent, so each of its finishes goes through job_finish_release_many.sql and counts
  the callback down under its row lock. The figure is the group's rate over the plain
  one's (median of the rounds); the issue's bar is 0.8.
- ``fan_out``: 10,000 children enqueued as one group (one statement, timed on the client
  around the commit), drained by one worker; ``fan_in_ms`` is the time from the last child's
  finish to the callback's claim, in database time.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator

import pgq
from benchmarks.apps.noop import NOOP
from benchmarks.db import BenchError, connect, fresh_database, one
from benchmarks.harness import Context, Result
from benchmarks.scenarios.drain import burst_drain, enqueue_noops

NAME = "workflows"
N, N_QUICK = 20_000, 2_000
FAN_OUT, FAN_OUT_QUICK = 10_000, 1_000
ROUNDS = 3  # each round drains once plainly and once as a group
TARGET_RATIO = 0.8


def run(ctx: Context) -> Iterator[Result]:
    yield from group_drain(ctx)
    yield fan_out(ctx)


def group_drain(ctx: Context) -> Iterator[Result]:
    n = ctx.size(N, N_QUICK)
    spans: dict[str, list[float]] = {"plain": [], "group": []}
    for round_no in range(ctx.size(ROUNDS, 1)):
        order = ("plain", "group") if round_no % 2 == 0 else ("group", "plain")
        for variant in order:
            with fresh_database(ctx.server) as url:
                if variant == "plain":
                    first, last = enqueue_noops(url, n)
                else:
                    first, last = enqueue_group(url, n)
                ctx.log(f"workflows: round {round_no + 1}, {variant} drain of {n:,} jobs")
                spans[variant].append(burst_drain(url, first, last).seconds)
    plain = Result(NAME, "plain_drain", n, statistics.median(spans["plain"]))
    plain.extra["runs_s"] = spans["plain"]
    yield plain
    # The group's drain counts its callback too (n + 1 jobs).
    group = Result(NAME, "group_drain", n + 1, statistics.median(spans["group"]))
    ratios = [(n + 1) / g / (n / p) for g, p in zip(spans["group"], spans["plain"], strict=True)]
    group.extra.update(runs_s=spans["group"], ratio_vs_plain=round(statistics.median(ratios), 3))
    group.extra["ratio_min"], group.extra["ratio_max"] = (
        round(min(ratios), 3),
        round(max(ratios), 3),
    )
    group.target = f">= {TARGET_RATIO}x the plain drain"
    group.met = statistics.median(ratios) >= TARGET_RATIO
    yield group


def fan_out(ctx: Context) -> Result:
    n = ctx.size(FAN_OUT, FAN_OUT_QUICK)
    enqueue_s, drain_s, fan_in_s = [], [], []
    for _ in range(ctx.size(ROUNDS, 1)):
        with fresh_database(ctx.server) as url:
            started = time.perf_counter()
            first, last = enqueue_group(url, n)
            enqueue_s.append(time.perf_counter() - started)
            drain_s.append(burst_drain(url, first, last).seconds)
            with connect(url) as conn:
                seconds, done = one(conn, "workflow_fan_in", {"first": first, "last": last})
            if done != n:
                raise BenchError(f"only {done:,} of {n:,} children succeeded")
            fan_in_s.append(seconds)
    result = Result(NAME, "fan_out", n + 1, statistics.median(drain_s))
    result.extra.update(
        enqueue_s=round(statistics.median(enqueue_s), 4),
        fan_in_ms=round(statistics.median(fan_in_s) * 1000, 2),
        fan_in_ms_runs=[round(s * 1000, 2) for s in fan_in_s],
    )
    return result


def enqueue_group(url: str, n: int) -> tuple[int, int]:
    """``n`` no-op members and a no-op callback, one workflow; the first and last id."""
    with connect(url) as conn, conn.transaction():
        flow = (
            pgq.group([pgq.JobSpec(NOOP, {"i": i}) for i in range(n)])
            .then(pgq.JobSpec(NOOP, {"callback": True}))
            .enqueue(conn)
        )
    return flow.job_ids[0], flow.last_id
