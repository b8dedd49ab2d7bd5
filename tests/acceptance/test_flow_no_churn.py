"""No churn (issue 16): a real `pgq work` whose queue holds only jobs a limit holds back
claims none of them, and does not spin while it waits.

Two queues with nothing the worker may start: a concurrency key whose only slot a running
job holds, and a rate key whose starts for the hour are used up. Each test lets the worker
idle, counts the transactions of the test database over a window, and checks that no
held-back job was ever claimed: each is still `blocked` with no attempt counted and its
lease token (which every claim raises and a release does not lower) still 0, and the
worker's own count of claimed jobs, logged when it stops, takes in only the jobs that ran.

The count is pg_stat_database's, which every connection of the worker (claim, writer,
listener, reaper) feeds; the tasks here write nothing. An idle worker wakes once per poll
interval (the rate key's next slot is an hour away), and a wake-up is at most five short
statements on its claim connection; the heartbeat and the reaper add a few every several
seconds. Measured: about 9 transactions per poll interval, the test's own reads included.
TRANSACTIONS_PER_POLL leaves room for that and for the noise of autovacuum; a worker whose
idle wait is 0 made 7,000-13,000 in the window, and one that waited only RATE_WAIT_MIN for
a rate key, about 1,000.

PostgreSQL 15 and later flush a backend's statistics lazily (at most once a second; an
idle backend within ten seconds), so the counts lag the work by a second or two: the
window opens after the worker has idled SETTLE seconds, its start counted by then.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable
from typing import Any

import psycopg
from worker_procs import APPS, WorkerProcess, scalar, wait_for

import pgq

sys.path.insert(0, str(APPS))
import flow_tasks

Conn = psycopg.Connection[Any]
POLL = 1.0  # seconds: the worker's poll interval
# Four slots: the worker always has room to claim, so it keeps trying while it idles.
HELD = ("--app", "flow_tasks", "--queue", flow_tasks.HELD, "--concurrency", "4")
SETTLE = 3.0  # seconds idle before the window: the start's transactions are counted by then
WINDOW = 4.0  # seconds over which the idle worker's transactions are counted
TRANSACTIONS_PER_POLL = 25  # an idle worker makes about 9; a spinning one, hundreds or more
TRANSACTIONS_MAX = int(TRANSACTIONS_PER_POLL * WINDOW / POLL)
BLOCKED = 50  # jobs held back in each test

TRANSACTIONS = """
    SELECT xact_commit + xact_rollback FROM pg_stat_database
    WHERE datname = current_database()
"""
NEVER_CLAIMED = """
    SELECT count(*) FILTER (WHERE state = 'blocked' AND attempts = 0 AND lease_token = 0),
           count(*)
    FROM pgq.jobs WHERE id = ANY(%s)
"""


def start_idle_worker(start_worker: Callable[..., WorkerProcess]) -> WorkerProcess:
    worker = start_worker(*HELD, "--poll-interval", str(POLL))
    worker.wait_started()
    return worker


def assert_does_not_spin(conn: Conn, worker: WorkerProcess) -> None:
    """The test database's transactions while ``worker`` has nothing it may start stay
    within TRANSACTIONS_PER_POLL per poll interval."""
    time.sleep(SETTLE)  # not a wait for a condition: the worker idles, its start is counted
    before = scalar(conn, TRANSACTIONS)
    time.sleep(WINDOW)  # the measurement window itself
    used = scalar(conn, TRANSACTIONS) - before
    assert worker.proc.poll() is None, f"the worker died:\n{worker.log()}"
    assert used <= TRANSACTIONS_MAX, (
        f"{used} transactions in {WINDOW:g}s with nothing to start (at most "
        f"{TRANSACTIONS_MAX}): the worker spins"
    )


def assert_never_claimed(conn: Conn, ids: list[int]) -> None:
    held, total = conn.execute(NEVER_CLAIMED, [ids]).fetchone()  # type: ignore[misc]
    assert total == len(ids)
    assert held == len(ids), f"{total - held} jobs held back by their limit were claimed"


def assert_stops_having_claimed(worker: WorkerProcess, claimed: int) -> None:
    """SIGTERM: the worker exits 0, and by its own count it claimed ``claimed`` jobs."""
    worker.signal(signal.SIGTERM)
    assert worker.wait_exit(30) == 0, worker.log()
    assert f"stopped: claimed {claimed}," in worker.log(), worker.log()


def test_an_idle_worker_does_not_spin_on_a_key_whose_only_slot_is_held(
    start_worker: Callable[..., WorkerProcess], conn: Conn
) -> None:
    holder = flow_tasks.holds_slot.enqueue(conn, seq=0)
    specs = [flow_tasks.holds_slot.spec(seq=i) for i in range(1, BLOCKED + 1)]
    ids = pgq.enqueue_many(conn, specs)
    worker = start_idle_worker(start_worker)
    state = "SELECT state::text FROM pgq.jobs WHERE id = %s"
    wait_for(lambda: scalar(conn, state, [holder]) == "running", what="the slot's holder running")

    assert_does_not_spin(conn, worker)

    assert_never_claimed(conn, ids)
    assert_stops_having_claimed(worker, 1)  # the holder, which returns when asked to stop


def test_an_idle_worker_does_not_spin_on_a_rate_key_with_no_starts_left(
    start_worker: Callable[..., WorkerProcess], conn: Conn
) -> None:
    first = pgq.enqueue_many(conn, [flow_tasks.scarce.spec(seq=i) for i in range(2)])
    specs = [flow_tasks.scarce.spec(seq=i) for i in range(2, BLOCKED + 2)]
    ids = pgq.enqueue_many(conn, specs)
    worker = start_idle_worker(start_worker)
    done = "SELECT count(*) FROM pgq.jobs WHERE id = ANY(%s) AND state = 'succeeded'"
    wait_for(lambda: scalar(conn, done, [first]) == 2, what="the key's two starts of the hour")

    assert_does_not_spin(conn, worker)

    assert_never_claimed(conn, ids)
    assert_stops_having_claimed(worker, 2)
