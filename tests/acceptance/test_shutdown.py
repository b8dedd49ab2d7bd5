"""Graceful shutdown of a real `pgq work` process: SIGTERM, SIGINT, and a second signal.

Four jobs fill the worker's four slots: two short ones (about a second), a long sync one
that sleeps 60 s in small steps without ever looking at ``ctx.should_stop()``, and a long
async one. Lower-priority jobs wait behind them. The signal is sent while all four run, so
no slot is free in the moment before it: any job started afterwards was claimed after the
signal. Times are compared in database time: the signal's is read from the database right
before it is sent.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from datetime import datetime
from typing import Any

import psycopg
import pytest
from worker_procs import WorkerProcess, db_now, job, scalar, wait_for

import pgq

GRACE = 3.0  # seconds given to running jobs after the first signal
EXIT_SLACK = 10.0  # seconds past the grace within which the worker must be gone
SECOND_SIGNAL_EXIT = 5.0  # seconds within which a second signal ends the worker
SHORT = 1.0  # seconds a short job runs after it starts
LONG = 60.0  # seconds a long job would run: far past the grace


def enqueue_jobs(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """The four jobs that fill the slots, and three that wait behind them."""
    first = {"priority": 10}
    return {
        "short_sync": pgq.enqueue(conn, "acc.sleep", {"seconds": SHORT}, **first),
        "short_async": pgq.enqueue(conn, "acc.sleep_async", {"seconds": SHORT}, **first),
        "long_sync": pgq.enqueue(conn, "acc.sleep", {"seconds": LONG}, **first),
        "long_async": pgq.enqueue(conn, "acc.sleep_async", {"seconds": LONG}, **first),
        **{f"waiting_{n}": pgq.enqueue(conn, "acc.record", priority=0) for n in range(3)},
    }


def started(ledger: psycopg.Connection[Any]) -> int:
    return int(scalar(ledger, "SELECT count(*) FROM ledger"))


def signal_when_all_run(
    worker: WorkerProcess, ledger: psycopg.Connection[Any], signum: int
) -> datetime:
    """Wait until the four first jobs have started, then signal; the signal's DB time."""
    wait_for(lambda: started(ledger) == 4, what="the four first jobs starting")
    signalled_at = db_now(ledger)
    worker.signal(signum)
    return signalled_at


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_claiming_lets_short_jobs_finish_and_releases_long_ones(
    ledger: psycopg.Connection[Any],
    start_worker: Callable[..., WorkerProcess],
    signum: int,
) -> None:
    ids = enqueue_jobs(ledger)
    worker = start_worker("--concurrency", "4", "--grace", str(GRACE), "--poll-interval", "0.2")

    signalled_at = signal_when_all_run(worker, ledger, signum)
    code = worker.wait_exit(GRACE + EXIT_SLACK)

    log = worker.log()
    assert code == 0, log
    assert "Traceback" not in log
    rows = {name: job(ledger, job_id) for name, job_id in ids.items()}
    for name in ("short_sync", "short_async"):
        assert (rows[name]["state"], rows[name]["attempts"]) == ("succeeded", 1), name
        assert rows[name]["finished_at"] > signalled_at, f"{name} finished after the signal"
    for name in ("long_sync", "long_async"):
        row = rows[name]
        assert (row["state"], row["attempts"], row["errors"]) == ("queued", 0, []), name
        assert row["lease_token"] == 1, f"{name} was claimed once"
        assert row["lease_expires_at"] is None
    for name in ("waiting_0", "waiting_1", "waiting_2"):
        # Never run; a worker that claimed it ahead before the signal gave it back uncounted.
        assert (rows[name]["state"], rows[name]["attempts"]) == ("queued", 0), name
    assert all(r["started_at"] is None or r["started_at"] <= signalled_at for r in rows.values())
    assert scalar(ledger, "SELECT count(*) FROM ledger WHERE at > %s", (signalled_at,)) == 0
    assert started(ledger) == 4


def test_a_second_signal_exits_at_once_leaving_running_jobs_to_their_leases(
    ledger: psycopg.Connection[Any], start_worker: Callable[..., WorkerProcess]
) -> None:
    ids = enqueue_jobs(ledger)
    worker = start_worker("--concurrency", "4", "--grace", "60")

    signal_when_all_run(worker, ledger, signal.SIGTERM)
    wait_for(lambda: "SIGTERM received" in worker.log(), what="the first signal's log line")
    worker.signal(signal.SIGTERM)
    code = worker.wait_exit(SECOND_SIGNAL_EXIT)

    assert code == 128 + signal.SIGTERM, worker.log()
    for name in ("long_sync", "long_async"):
        row = job(ledger, ids[name])
        assert (row["state"], row["attempts"]) == ("running", 1), name
        assert row["lease_expires_at"] > db_now(ledger), "its lease will lapse, later"
    assert job(ledger, ids["waiting_0"])["state"] == "queued"
