"""Flow control with four real `pgq work` processes and a ledger of every attempt's start
and end in database time (apps/flow_tasks.py): the limits hold across processes, per-key
order holds with a limit of 1, a pause stops every worker and a resume starts them again,
and kill -9 of a worker holding a limited job frees its slot once its lease lapses.
"""

from __future__ import annotations

import signal
import sys
from collections import defaultdict
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from worker_procs import APPS, WorkerProcess, scalar, wait_for

import pgq
from pgq import limits

sys.path.insert(0, str(APPS))
import flow_tasks

Conn = psycopg.Connection[Any]
FLOW = ("--app", "flow_tasks", "--queue", "flow")
DRAIN_TIMEOUT = 180.0  # seconds for four workers to drain the test's jobs on a busy machine


@pytest.fixture
def flow_ledger(conn: Conn) -> Conn:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS flow_ledger (job_id bigint, attempt int, key text, "
        "seq int, pid int, kind text, at timestamptz)"
    )
    conn.execute("TRUNCATE flow_ledger")
    return conn


def ledger(conn: Conn) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT key, seq, kind, at, pid, job_id, attempt FROM flow_ledger ORDER BY at, kind"
    ).fetchall()


def max_running_per_key(rows: list[tuple[Any, ...]]) -> dict[str, int]:
    """The most attempts of each key the ledger shows running at one instant. Rows come in
    time order, an end before a start at the same microsecond (the end was written first,
    before the outcome that handed the slot on)."""
    running: dict[str, int] = defaultdict(int)
    most: dict[str, int] = defaultdict(int)
    for key, _seq, kind, *_ in rows:
        running[key] += 1 if kind == "start" else -1
        most[key] = max(most[key], running[key])
    return dict(most)


def all_done(conn: Conn, total: int) -> Callable[[], bool]:
    def check() -> bool:
        done = scalar(conn, "SELECT count(*) FROM pgq.jobs WHERE state = 'succeeded'")
        return bool(done == total)

    return check


def test_four_workers_keep_every_key_within_its_limit_and_in_order(
    start_worker: Callable[..., WorkerProcess], flow_ledger: Conn
) -> None:
    conn = flow_ledger
    specs = [flow_tasks.two_per_key.spec(key=i % 40, seq=i // 40) for i in range(600)]
    specs += [flow_tasks.in_order.spec(key=i % 10, seq=i // 10) for i in range(200)]
    pgq.enqueue_many(conn, specs)
    workers = [start_worker(*FLOW, "--concurrency", "8") for _ in range(4)]

    wait_for(all_done(conn, 800), DRAIN_TIMEOUT, "800 jobs done")

    rows = ledger(conn)
    most = max_running_per_key(rows)
    assert len(most) == 50
    assert max(n for key, n in most.items() if key.startswith("two:")) <= 2
    assert max(n for key, n in most.items() if key.startswith("one:")) == 1
    for key in range(10):
        starts = [seq for k, seq, kind, *_ in rows if k == f"one:{key}" and kind == "start"]
        assert starts == list(range(20)), f"one:{key} ran out of order"
    assert len({pid for *_, pid, _job, _attempt in rows}) == 4, "every worker took part"
    slots = conn.execute("SELECT sum(active), sum(waiting) FROM pgq.concurrency_keys")
    assert slots.fetchone() == (0, 0)
    for worker in workers:
        worker.signal(signal.SIGTERM)
        assert worker.wait_exit(30) == 0


def test_a_pause_stops_every_worker_and_a_resume_starts_them_again(
    start_worker: Callable[..., WorkerProcess], flow_ledger: Conn
) -> None:
    conn = flow_ledger
    workers = [start_worker(*FLOW, "--queue", "other") for _ in range(4)]
    for worker in workers:
        worker.wait_started()

    limits.pause_queue(conn, "flow", reason="test")
    for worker in workers:
        worker.wait_logged("paused queues: flow")
    held = pgq.enqueue_many(conn, [flow_tasks.two_per_key.spec(key=1, seq=i) for i in range(20)])
    # The workers are working: a job of the other queue, enqueued after the held ones, runs.
    flow_tasks.plain.enqueue(conn, seq=0)
    plain_done = "SELECT count(*) FROM flow_ledger WHERE key = 'plain' AND kind = 'end'"
    wait_for(lambda: scalar(conn, plain_done) == 1, what="the other queue's job done")
    states = conn.execute("SELECT DISTINCT state::text FROM pgq.jobs WHERE id = ANY(%s)", [held])
    assert sorted(r[0] for r in states.fetchall()) == ["blocked", "queued"]
    assert scalar(conn, "SELECT count(*) FROM flow_ledger WHERE key <> 'plain'") == 0

    limits.resume_queue(conn, "flow")
    wait_for(all_done(conn, 21), DRAIN_TIMEOUT, "the held jobs done after the resume")


def test_kill_9_of_a_worker_holding_a_limited_job_frees_its_slot_after_the_lease(
    start_worker: Callable[..., WorkerProcess], flow_ledger: Conn
) -> None:
    conn = flow_ledger
    ids = [flow_tasks.hangs_first.enqueue(conn, seq=i) for i in range(5)]
    holder = start_worker(*FLOW, "--lease", "2", "--no-reaper")
    wait_for(lambda: scalar(conn, "SELECT count(*) FROM flow_ledger WHERE seq = 0") == 1)
    lease = scalar(conn, "SELECT lease_expires_at FROM pgq.jobs WHERE id = %s", [ids[0]])

    holder.signal(signal.SIGKILL)
    holder.wait_exit(10)
    start_worker(*FLOW, "--lease", "2")  # its reaper takes the lapsed job back

    wait_for(all_done(conn, 5), DRAIN_TIMEOUT, "the key's five jobs done")
    rows = [r for r in ledger(conn) if r[2] == "start"]
    # The hung job ran again first (it kept its slot), after its lease lapsed, then the
    # others in enqueue order, one at a time.
    assert [(seq, attempt) for _k, seq, _kind, _at, _pid, _job, attempt in rows] == [
        (0, 1), (0, 2), (1, 1), (2, 1), (3, 1), (4, 1)
    ]  # fmt: skip
    assert rows[1][3] > lease
    # Leaving out the killed attempt (it never wrote its end), one at a time throughout.
    alive = [r for r in ledger(conn) if (r[1], r[6]) != (0, 1)]
    assert max_running_per_key(alive) == {"hangs": 1}
    assert scalar(conn, "SELECT active FROM pgq.concurrency_keys WHERE key = 'hangs'") == 0


def test_four_workers_share_one_rate_limit(
    start_worker: Callable[..., WorkerProcess], flow_ledger: Conn
) -> None:
    conn = flow_ledger
    pgq.enqueue_many(conn, [flow_tasks.rated.spec(seq=i) for i in range(90)])
    for _ in range(4):
        start_worker(*FLOW, "--concurrency", "8")

    wait_for(all_done(conn, 90), DRAIN_TIMEOUT, "90 rate-limited jobs done")

    starts = [r[0] for r in conn.execute("SELECT started_at FROM pgq.jobs ORDER BY 1")]
    window = timedelta(seconds=1)
    assert max(sum(1 for s in starts if t - window < s <= t) for t in starts) <= 20
    assert starts[-1] - starts[0] >= 4 * window  # 90 starts at 20/s need five windows
    pids = conn.execute("SELECT count(DISTINCT pid) FROM flow_ledger WHERE key = 'api'")
    assert pids.fetchone()[0] > 1  # type: ignore[index]  # more than one worker started them
