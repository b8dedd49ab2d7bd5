"""Workflows across real `pgq work` processes.

Fan-in exactly once: a group of 1,000 members drained by four worker processes releases
its callback exactly once, after every member, every repetition (``PGQ_FANIN_REPEAT``:
20 by default, about 20 s here; ``make soak-workflows`` runs 100). kill -9 mid-workflow:
the dead worker's members come back through the reaper, nothing is lost, and the callback
still runs once, after all of them.
"""

from __future__ import annotations

import os
import random
import signal
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from worker_procs import WorkerProcess, scalar, wait_for

import pgq

MEMBERS = 1000
WORKERS = 4
REPEAT = int(os.environ.get("PGQ_FANIN_REPEAT", "20"))
DRAIN_TIMEOUT = 180.0  # seconds one group may take to drain (a bound, not a measurement)


def enqueue_group(db_url: str, members: list[pgq.JobSpec], callback: pgq.JobSpec) -> Any:
    with psycopg.connect(db_url) as tx:
        return pgq.group(members).then(callback).enqueue(tx)


def callback_state(conn: psycopg.Connection[Any], job_id: int) -> str:
    return str(scalar(conn, "SELECT state::text FROM pgq.jobs WHERE id = %s", (job_id,)))


def assert_released_once_after_all(conn: psycopg.Connection[Any], flow: Any) -> None:
    members, callback = flow.job_ids[:-1], flow.last_id
    row = conn.execute(
        "SELECT state::text, parents_pending, started_at, attempts FROM pgq.jobs WHERE id = %s",
        (callback,),
    ).fetchone()
    assert row is not None
    state, pending, started_at, attempts = row
    # One decrement per member, never one more: a double release would take it below 0.
    assert (state, pending, attempts) == ("succeeded", 0, 1)
    latest = scalar(
        conn,
        "SELECT max(finished_at) FROM pgq.jobs WHERE id = ANY(%s) AND state = 'succeeded'",
        (members,),
    )
    assert scalar(
        conn, "SELECT count(*) FROM pgq.jobs WHERE id = ANY(%s) AND state = 'succeeded'", (members,)
    ) == len(members)
    assert started_at >= latest, "the callback started before its last member finished"


@pytest.mark.slow
def test_fan_in_releases_the_callback_exactly_once_across_four_workers(
    db_url: str,
    attempt_ledger: psycopg.Connection[Any],
    start_worker: Callable[..., WorkerProcess],
) -> None:
    conn = attempt_ledger
    workers = [
        start_worker("--app", "reaper_tasks", "--concurrency", "8", "--no-reaper")
        for _ in range(WORKERS)
    ]
    for worker in workers:
        worker.worker_id()  # started and listening
    for _ in range(REPEAT):
        conn.execute("TRUNCATE attempt_ledger")
        flow = enqueue_group(
            db_url,
            [pgq.JobSpec("rt.sleep", {"seconds": 0}) for _ in range(MEMBERS)],
            pgq.JobSpec("rt.sleep", {"seconds": 0}),
        )
        wait_for(
            lambda flow=flow: callback_state(conn, flow.last_id) == "succeeded",
            DRAIN_TIMEOUT,
            "the callback succeeded",
        )
        assert_released_once_after_all(conn, flow)
        # The witness: the callback started once, in one of the workers.
        runs = conn.execute(
            "SELECT pid FROM attempt_ledger WHERE job_id = %s", (flow.last_id,)
        ).fetchall()
        assert len(runs) == 1
        pids = {
            row[0]
            for row in conn.execute(
                "SELECT DISTINCT pid FROM attempt_ledger WHERE job_id = ANY(%s)",
                (flow.job_ids[:-1],),
            )
        }
        assert len(pids) > 1, "the members were shared between the workers"
    for worker in workers:
        worker.signal(signal.SIGTERM)
    for worker in workers:
        assert worker.wait_exit(30) == 0, worker.log()


@pytest.mark.slow
def test_many_groups_finishing_at_once_release_each_callback_once_without_deadlock(
    db_url: str,
    attempt_ledger: psycopg.Connection[Any],
    start_worker: Callable[..., WorkerProcess],
) -> None:
    # 100 groups of 20 in one transaction: every worker's finish batch holds members of
    # many groups, so two workers count down the same callbacks in the same instant.
    conn = attempt_ledger
    workers = [
        start_worker("--app", "reaper_tasks", "--concurrency", "8", "--no-reaper")
        for _ in range(WORKERS)
    ]
    for worker in workers:
        worker.worker_id()
    member = pgq.JobSpec("rt.sleep", {"seconds": 0})
    with psycopg.connect(db_url) as tx:
        flows = [
            pgq.group([member] * 20).then(pgq.JobSpec("rt.sleep", {"seconds": 0})).enqueue(tx)
            for _ in range(100)
        ]
    callbacks = [flow.last_id for flow in flows]
    done = "SELECT count(*) FROM pgq.jobs WHERE id = ANY(%s) AND state = 'succeeded'"
    wait_for(lambda: scalar(conn, done, (callbacks,)) == 100, DRAIN_TIMEOUT, "every callback")
    for flow in flows:
        assert_released_once_after_all(conn, flow)
    for worker in workers:
        worker.signal(signal.SIGTERM)
    for worker in workers:
        assert worker.wait_exit(30) == 0, worker.log()
        # A deadlock would be retried by the worker, but costs a second of deadlock_timeout.
        assert "deadlock" not in worker.log()


@pytest.mark.slow
def test_kill9_mid_workflow_loses_nothing_and_releases_once(
    db_url: str,
    attempt_ledger: psycopg.Connection[Any],
    start_worker: Callable[..., WorkerProcess],
    start_reaper: Callable[..., WorkerProcess],
) -> None:
    conn = attempt_ledger
    rng = random.Random(20261203)
    args = ("--app", "reaper_tasks", "--concurrency", "20", "--lease", "2", "--no-reaper")
    first = start_worker(*args)
    first.worker_id()
    members = [pgq.JobSpec("rt.sleep", {"seconds": round(rng.uniform(0.1, 1.0), 3)})]
    members += [
        pgq.JobSpec("rt.sleep", {"seconds": round(rng.uniform(0.1, 1.0), 3)}) for _ in range(99)
    ]
    flow = enqueue_group(db_url, members, pgq.JobSpec("rt.sleep", {"seconds": 0}))
    done = "SELECT count(*) FROM pgq.jobs WHERE state = 'succeeded' AND id = ANY(%s)"
    wait_for(lambda: scalar(conn, done, (flow.job_ids,)) >= 30, DRAIN_TIMEOUT, "30 members done")

    first.signal(signal.SIGKILL)
    assert first.wait_exit(10) == -signal.SIGKILL
    running = "SELECT count(*) FROM pgq.jobs WHERE state = 'running'"
    assert scalar(conn, running) > 0, "the kill caught members in flight"
    assert callback_state(conn, flow.last_id) == "waiting"

    second = start_worker(*args)
    start_reaper("0.5")
    wait_for(
        lambda: callback_state(conn, flow.last_id) == "succeeded",
        DRAIN_TIMEOUT,
        "the callback succeeded",
    )
    second.signal(signal.SIGTERM)
    assert second.wait_exit(30) == 0, second.log()

    assert_released_once_after_all(conn, flow)
    reran = scalar(
        conn, "SELECT count(*) FROM pgq.jobs WHERE id = ANY(%s) AND attempts = 2", (flow.job_ids,)
    )
    assert reran > 0, "the members in flight ran again after the reaper took them back"
    assert (
        scalar(conn, "SELECT count(*) FROM attempt_ledger WHERE job_id = %s", (flow.last_id,)) == 1
    )
