"""Scenario 8: ten minutes of steady load, then ten more with a long transaction in the middle.

Run it alone (``make soak``): it takes about 25 minutes. First a calibration drain (as in
scenario 3) gives the drain rate; then, in a fresh database with the table settings the
migrations ship, one ``pgq work`` (default settings) works while a thread enqueues at
LOAD_SHARE of that rate (``enqueue_many`` every TICK, one transaction each). Every
SAMPLE_EVERY seconds the table's dead tuples, sizes and due backlog are sampled;
afterwards the completions are counted per BUCKET from finished_at (database time).

The second phase is the same in a new database, with another session holding a
REPEATABLE READ snapshot for TXN_FOR seconds from TXN_AT on, as a long analytics query
would: nothing deleted meanwhile can be vacuumed, so dead claim-index entries pile up.
It reports the dip and how long throughput takes to recover after the transaction ends.

Every sample (with what each of the worker's sessions was doing, and the CPU time of
the worker, of the whole machine and of each database backend) and the worker's log are
kept in a directory named in the result (``artifacts``), so a dip or a stall can be
explained afterwards; the result gives the cores each used per minute.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import psycopg

import pgq
from benchmarks.apps.noop import NOOP
from benchmarks.db import BenchError, connect, fetch, fresh_database, one, server_setting
from benchmarks.harness import Context, Result, ratio
from benchmarks.scenarios.drain import burst_drain, enqueue_noops
from benchmarks.scenarios.scale_out import wait_listening
from benchmarks.workers import WorkerProcess, backend_cpu_seconds

NAME = "soak"
DURATION, DURATION_QUICK = 600.0, 40.0
TXN_AT, TXN_AT_QUICK = 270.0, 12.0
TXN_FOR, TXN_FOR_QUICK = 60.0, 10.0
CALIBRATE_N, CALIBRATE_N_QUICK = 20_000, 2_000
LOAD_SHARE = 0.7  # of the calibrated drain rate
TICK = 0.1  # seconds between the enqueuer's transactions
SAMPLE_EVERY = 5.0  # seconds
BUCKET = 5.0  # seconds of completions per throughput figure
MINUTE = 60.0
WARM = 60.0  # seconds of the second phase left out of its baseline
RECOVERY_WINDOW = 30.0  # seconds of throughput averaged when judging the recovery
TARGET_RATIO = 0.9
RECOVERY_TARGET_S = 60.0
MIB = 1024 * 1024


@dataclass(frozen=True)
class Plan:
    duration: float
    rate: float  # jobs enqueued per second
    txn_at: float | None = None  # seconds after the start; None: no long transaction
    txn_for: float = 0.0


@dataclass
class Observed:
    plan: Plan
    buckets: list[float]  # completions per second, one per BUCKET
    samples: list[dict[str, Any]]
    sent: int
    txn: tuple[float, float] | None = None  # (start, end) seconds after the load started


def run(ctx: Context) -> Iterator[Result]:
    autovacuum = server_setting(ctx.server.url, "autovacuum")
    if autovacuum != "on":
        ctx.log(
            "soak: WARNING: autovacuum is off on this server, so the autovacuum settings "
            "the migrations ship never take effect (only the reaper's own VACUUM cleans the "
            "table); for the setting issue 6 describes, run `python -m benchmarks --only "
            "soak --throwaway-cluster`"
        )
    rate = LOAD_SHARE * calibrate(ctx)
    duration = ctx.seconds(DURATION, DURATION_QUICK)
    ctx.log(f"soak: steady load at {rate:,.0f} jobs/s for {duration:.0f}s")
    artifacts = Path(tempfile.mkdtemp(prefix="pgq-bench-soak-"))
    ctx.log(f"soak: samples and worker logs go to {artifacts}")
    steady = steady_result(observe(ctx, Plan(duration, rate), phase_dir(artifacts, "steady")))
    steady.extra.update(autovacuum=autovacuum, artifacts=str(artifacts / "steady"))
    yield steady
    txn_at, txn_for = ctx.seconds(TXN_AT, TXN_AT_QUICK), ctx.seconds(TXN_FOR, TXN_FOR_QUICK)
    ctx.log(f"soak: again, with a {txn_for:.0f}s transaction from {txn_at:.0f}s on")
    plan = Plan(duration, rate, txn_at, txn_for)
    held = long_txn_result(observe(ctx, plan, phase_dir(artifacts, "long_txn")))
    held.extra.update(autovacuum=autovacuum, artifacts=str(artifacts / "long_txn"))
    yield held


def phase_dir(artifacts: Path, name: str) -> Path:
    path = artifacts / name
    path.mkdir()
    return path


def calibrate(ctx: Context) -> float:
    n = ctx.size(CALIBRATE_N, CALIBRATE_N_QUICK)
    with fresh_database(ctx.server) as url:
        first, last = enqueue_noops(url, n)
        span = burst_drain(url, first, last)
    rate = n / span.seconds
    ctx.log(f"soak: calibration drain of {n:,} jobs: {rate:,.0f} jobs/s")
    return rate


# --- running one phase ----------------------------------------------------------------------


def observe(ctx: Context, plan: Plan, artifacts: Path) -> Observed:
    log = artifacts / "worker.log"
    with (
        fresh_database(ctx.server) as url,
        WorkerProcess(url, keep_log=log) as worker,
        connect(url) as conn,
    ):
        wait_listening(url, [worker])
        start_at: datetime = one(conn, "clock_now")[0]
        start = time.monotonic()
        enqueuer = Enqueuer(url, plan.rate, start, plan.duration)
        holder = Holder(url, start_at, start, plan) if plan.txn_at is not None else None
        for thread in filter(None, (enqueuer, holder)):
            thread.start()
        samples = sample(conn, worker, start, plan.duration, ctx)
        for thread in filter(None, (enqueuer, holder)):
            thread.join()
            thread.raise_error()
        # No waiting for a backlog to drain: only completions within the duration count.
        rows = fetch(conn, "soak_finished_buckets", {"start": start_at, "width": BUCKET})
    buckets = [0.0] * int(plan.duration // BUCKET)
    for bucket, count in rows:
        if 0 <= bucket < len(buckets):
            buckets[bucket] = count / BUCKET
    (artifacts / "samples.json").write_text(json.dumps(samples, default=str, indent=1))
    return Observed(plan, buckets, samples, enqueuer.sent, holder.span if holder else None)


def sample(
    conn: psycopg.Connection[Any],
    worker: WorkerProcess,
    start: float,
    duration: float,
    ctx: Context,
) -> list[dict[str, Any]]:
    samples: list[dict[str, Any]] = []
    busy_at_start = machine_busy_seconds()
    while (elapsed := time.monotonic() - start) < duration:
        worker.check_alive()
        _, dead, live, table, indexes, claim, backlog, vacuums = one(conn, "soak_sample")
        sessions = fetch(conn, "session_activity")
        samples.append(
            {
                "at_s": elapsed,
                "n_dead_tup": dead,
                "n_live_tup": live,
                "table_mb": table / MIB,
                "indexes_mb": indexes / MIB,
                "claim_index_mb": None if claim is None else claim / MIB,
                "backlog": backlog,
                "autovacuums": vacuums,
                "worker_cpu_s": worker.cpu_seconds(),
                "machine_busy_s": since(busy_at_start, machine_busy_seconds()),
                "backend_cpu_s": backend_cpu_seconds(sessions),
                "sessions": sessions,
            }
        )
        if len(samples) % int(period_of(duration) // SAMPLE_EVERY) == 0:
            size = f"{table / MIB:.0f}MiB"
            ctx.log(f"soak: {elapsed:4.0f}s backlog={backlog} dead={dead} table={size}")
        time.sleep(max(0.0, start + len(samples) * SAMPLE_EVERY - time.monotonic()))
    return samples


def machine_busy_seconds() -> float | None:
    """CPU seconds all of the machine's cores spent busy since boot, from Linux's
    /proc/stat (None elsewhere): everything but idle and I/O wait, whoever ran it. With
    the worker's own figure it shows how much of the machine was left for catching up."""
    try:
        first = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, first[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def backend_cores(
    readings: list[dict[int, tuple[str, float]]], period: float
) -> dict[str, list[float]]:
    """Cores each kind of backend used during each period, from the readings taken at
    the periods' ends. A backend seen for the first time counts from zero (it started
    within the period); one that ended between two readings loses its last moments."""
    names = sorted({name for reading in readings for name, _ in reading.values()})
    used = {name: [0.0] * len(readings) for name in names}
    before: dict[int, tuple[str, float]] = {}
    for index, reading in enumerate(readings):
        for pid, (name, seconds) in reading.items():
            used[name][index] += (seconds - before.get(pid, (name, 0.0))[1]) / period
        before = reading
    return used


def since(start: float | None, now: float | None) -> float | None:
    return None if start is None or now is None else now - start


class _Thread(threading.Thread):
    """A thread whose exception is re-raised by :meth:`raise_error` in the caller."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.work()
        except BaseException as exc:
            self.error = exc

    def work(self) -> None:
        raise NotImplementedError

    def raise_error(self) -> None:
        if self.error is not None:
            raise BenchError(f"{type(self).__name__} failed: {self.error}") from self.error


class Enqueuer(_Thread):
    """Enqueue at ``rate`` jobs/s until ``duration`` has passed: one transaction per TICK."""

    def __init__(self, url: str, rate: float, start: float, duration: float) -> None:
        super().__init__()
        self.url, self.rate, self.start_time, self.duration = url, rate, start, duration
        self.sent = 0

    def work(self) -> None:
        with connect(self.url) as conn:
            while (elapsed := time.monotonic() - self.start_time) < self.duration:
                due = int(self.rate * elapsed) - self.sent
                if due > 0:
                    specs = [pgq.JobSpec(NOOP, {"i": self.sent + i}) for i in range(due)]
                    with conn.transaction():
                        pgq.enqueue_many(conn, specs)
                    self.sent += due
                time.sleep(TICK)


class Holder(_Thread):
    """Hold a REPEATABLE READ snapshot from plan.txn_at for plan.txn_for seconds."""

    def __init__(self, url: str, start_at: datetime, start: float, plan: Plan) -> None:
        super().__init__()
        self.url, self.start_at, self.start_time, self.plan = url, start_at, start, plan
        self.span: tuple[float, float] | None = None

    def work(self) -> None:
        assert self.plan.txn_at is not None
        time.sleep(max(0.0, self.start_time + self.plan.txn_at - time.monotonic()))
        with psycopg.connect(self.url) as conn:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            began = fetch(conn, "soak_snapshot_hold")[0][0]
            time.sleep(self.plan.txn_for)
            ended = one(conn, "clock_now")[0]
            conn.rollback()
        self.span = (self.seconds(began), self.seconds(ended))

    def seconds(self, at: datetime) -> float:
        return (at - self.start_at).total_seconds()


# --- the figures ----------------------------------------------------------------------------


def period_of(duration: float) -> float:
    """The span of one throughput figure: a minute, shorter only for a --quick run."""
    return MINUTE if duration >= 2 * MINUTE else duration / 4


def per_period(buckets: list[float], period: float) -> list[float]:
    """Mean completions per second of each whole period."""
    per = max(1, int(period // BUCKET))
    return [statistics.fmean(buckets[i : i + per]) for i in range(0, len(buckets) - per + 1, per)]


def at_periods(samples: list[dict[str, Any]], key: str, period: float) -> list[Any]:
    """``key`` of the last sample of each period."""
    per = max(1, int(period // SAMPLE_EVERY))
    return [samples[i][key] for i in range(per - 1, len(samples), per)]


def common_fields(observed: Observed) -> dict[str, Any]:
    period = period_of(observed.plan.duration)
    minutes = per_period(observed.buckets, period)
    samples = observed.samples

    def sampled(key: str) -> list[Any]:
        return at_periods(samples, key, period)

    return {
        "enqueue_per_s": observed.plan.rate,
        "enqueued": observed.sent,
        "period_s": period,
        "per_minute_per_s": minutes,
        "first_minute_per_s": minutes[0] if minutes else 0.0,
        "last_minute_per_s": minutes[-1] if minutes else 0.0,
        "ratio": ratio(minutes[-1], minutes[0]) if minutes else 0.0,
        "n_dead_tup_per_minute": sampled("n_dead_tup"),
        "table_mb_per_minute": sampled("table_mb"),
        "indexes_mb_per_minute": sampled("indexes_mb"),
        "claim_index_mb_per_minute": sampled("claim_index_mb"),
        "backlog_per_minute": sampled("backlog"),
        "worker_cores_per_minute": cores(sampled("worker_cpu_s"), period),
        "machine_cores_per_minute": machine_cores(sampled("machine_busy_s"), period),
        "machine_cores": os.cpu_count(),
        "backend_cores_per_minute": backend_cores(sampled("backend_cpu_s"), period),
        "max_backlog": max((s["backlog"] for s in samples), default=0),
        "autovacuums": samples[-1]["autovacuums"] if samples else 0,
    }


def cores(cpu_seconds: list[float], period: float) -> list[float]:
    """CPU seconds sampled at the end of each period -> cores used during each period."""
    return [(b - a) / period for a, b in zip([0.0, *cpu_seconds], cpu_seconds, strict=False)]


def machine_cores(busy_seconds: list[float | None], period: float) -> list[float] | None:
    """Cores the whole machine kept busy during each period (None off Linux)."""
    if None in busy_seconds:
        return None
    return cores(cast(list[float], busy_seconds), period)


def steady_result(observed: Observed) -> Result:
    done = round(sum(observed.buckets) * BUCKET)
    result = Result(NAME, "steady", done, observed.plan.duration, common_fields(observed))
    result.target = f"last minute >= {TARGET_RATIO} x first"
    result.met = result.extra["ratio"] >= TARGET_RATIO
    return result


def long_txn_result(observed: Observed) -> Result:
    if observed.txn is None:
        raise BenchError("the long transaction did not run")
    done = round(sum(observed.buckets) * BUCKET)
    result = Result(NAME, "long_txn", done, observed.plan.duration, common_fields(observed))
    dip = dip_and_recovery(observed.buckets, *observed.txn)
    result.extra.update(
        {
            "txn_start_s": observed.txn[0],
            "txn_end_s": observed.txn[1],
            "per_bucket_per_s": observed.buckets,
            "bucket_s": BUCKET,
            **dip,
        }
    )
    recovery = dip["recovery_s"]
    result.target = f"back to >= {TARGET_RATIO} x within {RECOVERY_TARGET_S:.0f}s of the end"
    result.met = recovery is not None and recovery <= RECOVERY_TARGET_S
    return result


def dip_and_recovery(buckets: list[float], txn_start: float, txn_end: float) -> dict[str, Any]:
    """The baseline (buckets after WARM, before the transaction), the lowest bucket from the
    transaction's start on, and the recovery: seconds from the transaction's end until the
    moment from which every RECOVERY_WINDOW of throughput averages at least TARGET_RATIO x
    baseline (0 if none fell below it, None if the run ended below it).

    Windows, not single buckets: one 5 s bucket is noisy enough that runs without any
    transaction have buckets under 0.9 x their mean (run P, before its transaction: 14,074
    jobs/s in a 5 s bucket, 0.895 x the baseline), so judging buckets one by one pinned
    the recovery on noise minutes after the throughput was back. ``recovery_s_by_bucket`` keeps that
    stricter reading for comparison."""
    warm = min(WARM, txn_start / 2)  # a --quick run's transaction starts early
    before = buckets[int(warm // BUCKET) : int(txn_start // BUCKET)] or buckets[:1]
    baseline = statistics.fmean(before) if before else 0.0
    first = int(txn_start // BUCKET)
    low = min(buckets[first:], default=baseline)
    per = max(1, int(RECOVERY_WINDOW // BUCKET))
    windows = [statistics.fmean(buckets[i : i + per]) for i in range(len(buckets) - per + 1)]
    return {
        "baseline_per_s": baseline,
        "dip_per_s": low,
        "dip_ratio": ratio(low, baseline),
        "recovery_s": recovered_after(windows, first, TARGET_RATIO * baseline, txn_end),
        "recovery_window_s": per * BUCKET,
        "recovery_s_by_bucket": recovered_after(buckets, first, TARGET_RATIO * baseline, txn_end),
    }


def recovered_after(figures: list[float], first: int, floor: float, txn_end: float) -> float | None:
    """Seconds from txn_end until the start of the BUCKET after the last figure (from
    index ``first`` on) under ``floor``: 0 if none is, None if the last one is."""
    below = [i for i in range(first, len(figures)) if figures[i] < floor]
    if not below:
        return 0.0
    if below[-1] == len(figures) - 1:
        return None
    return max(0.0, (below[-1] + 1) * BUCKET - txn_end)
