"""Scenario: recurring jobs. What 1,000 schedules due together cost, and what 1,000
schedules loaded cost a drain of ordinary jobs.

- ``due_each_minute``: 1,000 schedules ``* * * * *`` (overlap allowed, so every tick makes
  a job), synced into a fresh database, then one scheduler pass per simulated minute with
  ``now`` injected (``pgq.scheduler.run_once``: the pass a worker makes when the minute
  comes). Reported per minute: the statements sent, the pass's time (``ms_per_minute``:
  the statements plus the worker's Python, reading 1,000 rows and stepping cronsim), the
  statements' round trips alone (``statements_ms_per_minute``, a local server: it bounds
  the database time from above), and the jobs made. The same passes from a second
  connection that lost the race (it read the ticks after the winner) are ``loser_*``.
  Between minutes the scheduler sends nothing: its thread sleeps until the next tick.
- ``drain_loaded``: one ``pgq work`` (not ``--burst``, so its scheduler thread runs) stands
  by (with 1,000 yearly schedules: synced, first pass done; then a pass every 10 s and an
  overdue check every 30 s), then drains 20,000 no-op jobs queued at once; without
  schedules and with them, taking turns in fresh databases. The figure is loaded over none
  (median of the rounds, with min and max). The issue's bar: within 3 %. Also the worker's
  CPU seconds over the drain, loaded over none (``cpu_ratio_loaded_vs_none``).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from benchmarks.db import BenchError, Span, connect, drain_span, fresh_database, one, wait_until
from benchmarks.harness import Context, Result
from benchmarks.scenarios.drain import checked_span, drain_timeout, enqueue_noops
from benchmarks.workers import NOOP_APP, WorkerProcess
from pgq import scheduler, store
from pgq.periodic import Schedule, ScheduleRegistry, schedule
from pgq.registry import Registry, task

NAME = "schedules"
SCHEDULES, SCHEDULES_QUICK = 1000, 100
MINUTES, MINUTES_QUICK = 10, 3
N, N_QUICK = 20_000, 2_000
ROUNDS = 5  # each round drains once without and once with schedules, in turns
LOADED_APP = "benchmarks.apps.schedules_loaded"
TARGET_RATIO = 0.97
STARTUP_TIMEOUT = 60.0
T0 = datetime(2030, 1, 1, tzinfo=UTC)


def run(ctx: Context) -> Iterator[Result]:
    yield from due_each_minute(ctx)
    yield drain_loaded(ctx)


def due_each_minute(ctx: Context) -> Iterator[Result]:
    count, minutes = ctx.size(SCHEDULES, SCHEDULES_QUICK), ctx.size(MINUTES, MINUTES_QUICK)
    definitions = every_minute(count)
    with fresh_database(ctx.server) as url, connect(url) as conn, connect(url) as loser:
        scheduler.sync(conn, definitions)
        conn.execute("UPDATE pgq.schedules SET active_since = %s", (T0,))
        ctx.log(f"schedules: {count:,} due each minute, {minutes} simulated minutes")
        won, lost, sql, jobs = [], [], [], 0
        for minute in range(1, minutes + 1):
            now = T0 + timedelta(minutes=minute, seconds=1)
            with counting() as sent:
                started = time.perf_counter()
                result = scheduler.run_once(conn, definitions, now=now)
                won.append((len(sent), time.perf_counter() - started))
            sql.append(sum(sent))
            jobs += sum(result.enqueued.values())
            with counting() as sent:
                started = time.perf_counter()
                scheduler.run_once(loser, definitions, now=now)
                lost.append((len(sent), time.perf_counter() - started))
        if jobs != count * minutes:
            raise BenchError(f"{jobs:,} jobs for {count:,} schedules over {minutes} minutes")
    seconds = [s for _, s in won]
    line = Result(NAME, "due_each_minute", count, statistics.median(seconds))
    line.extra.update(
        statements_per_minute=statistics.median(n for n, _ in won),
        ms_per_minute=round(1000 * statistics.median(seconds), 1),
        ms_min=round(1000 * min(seconds), 1),
        ms_max=round(1000 * max(seconds), 1),
        statements_ms_per_minute=round(1000 * statistics.median(sql), 1),
        jobs_per_minute=count,
        loser_statements_per_minute=statistics.median(n for n, _ in lost),
        loser_ms_per_minute=round(1000 * statistics.median(s for _, s in lost), 1),
        minutes=minutes,
    )
    yield line


def drain_loaded(ctx: Context) -> Result:
    n = ctx.size(N, N_QUICK)
    spans: dict[str, list[float]] = {"none": [], "loaded": []}
    cpus: dict[str, list[float]] = {"none": [], "loaded": []}
    for round_no in range(ctx.size(ROUNDS, 1)):
        order = ("none", "loaded") if round_no % 2 == 0 else ("loaded", "none")
        for variant in order:
            with fresh_database(ctx.server) as url:
                ctx.log(f"schedules: round {round_no + 1}, drain of {n:,} jobs, {variant}")
                span, cpu = live_drain(url, n, variant == "loaded")
                spans[variant].append(span.seconds)
                cpus[variant].append(cpu)
    ratios = [p / s for s, p in zip(spans["loaded"], spans["none"], strict=True)]
    cpu_ratios = [c / p for c, p in zip(cpus["loaded"], cpus["none"], strict=True)]
    result = Result(NAME, "drain_loaded", n, statistics.median(spans["loaded"]))
    result.extra.update(
        none_runs_s=spans["none"],
        loaded_runs_s=spans["loaded"],
        ratio_vs_none=round(statistics.median(ratios), 3),
        ratio_min=round(min(ratios), 3),
        ratio_max=round(max(ratios), 3),
        schedules=SCHEDULES,
        none_cpu_s=[round(c, 3) for c in cpus["none"]],
        loaded_cpu_s=[round(c, 3) for c in cpus["loaded"]],
        cpu_ratio_loaded_vs_none=round(statistics.median(cpu_ratios), 3),
    )
    result.target = f"loaded/none >= {TARGET_RATIO}"
    result.met = statistics.median(ratios) >= TARGET_RATIO
    return result


def live_drain(url: str, n: int, loaded: bool) -> tuple[Span, float]:
    """Start one ``pgq work`` (its scheduler thread on when ``loaded``), wait until it
    stands by (schedules synced, the first pass done), then queue ``n`` no-op jobs and
    wait until they are done. Returns the drain's span and the worker's CPU seconds from
    the enqueue to the end of the drain (steadier than the span on a busy machine)."""
    with WorkerProcess(url, "--no-reaper", app=LOADED_APP if loaded else NOOP_APP) as worker:

        def ready() -> bool:
            worker.check_alive()
            if "started:" not in worker.log_tail():
                return False
            return not loaded or scheduler_settled(url)

        wait_until(ready, STARTUP_TIMEOUT, "the worker started, its first scheduler pass done")
        cpu_before = worker.cpu_seconds()
        first, last = enqueue_noops(url, n)

        def done() -> bool:
            worker.check_alive()
            return drain_span(url, first, last).done == n

        wait_until(done, drain_timeout(n), f"{n:,} jobs drained", interval=0.1)
        cpu = worker.cpu_seconds() - cpu_before
    return checked_span(url, first, last), cpu


def scheduler_settled(url: str) -> bool:
    with connect(url) as conn:
        return bool(one(conn, "scheduler_settled")[0])


def every_minute(count: int) -> list[Schedule]:
    tasks, registry = Registry(), ScheduleRegistry()

    @task(name="bench.minutely", registry=tasks)
    def minutely(i: int) -> None:
        pass

    return [
        schedule(
            f"bench-{i:04d}",
            task=minutely,
            cron="* * * * *",
            args={"i": i},
            overlap="allow",
            registry=registry,
        )
        for i in range(count)
    ]


class counting:
    """Records each statement pgq.scheduler sends and its round trip, in seconds (wraps
    store.fetch there)."""

    def __enter__(self) -> list[float]:
        self.sent: list[float] = []
        self._fetch = scheduler.store.fetch

        def fetch(conn: Any, statement: store.Statement) -> list[store.Row]:
            started = time.perf_counter()
            try:
                return self._fetch(conn, statement)
            finally:
                self.sent.append(time.perf_counter() - started)

        scheduler.store.fetch = fetch  # type: ignore[assignment]
        return self.sent

    def __exit__(self, *exc: object) -> None:
        scheduler.store.fetch = self._fetch  # type: ignore[assignment]
