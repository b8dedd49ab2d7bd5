"""A poison job that kills its worker (``os._exit``) on every attempt stops at max_attempts.

``attempts`` grows when a job is claimed, so a job that never lets its worker write an
outcome still counts: after the third death the reaper fails it instead of requeueing it,
with one lease_expired error per attempt naming the worker that died. Meanwhile a
supervisor loop restarts the worker whenever it dies (as systemd or Kubernetes would) and
ordinary jobs on the same queue keep being enqueued and keep succeeding; the poison waits
a second before it kills, so every worker it kills has run ordinary jobs alongside it.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from worker_procs import WorkerProcess, job, scalar, wait_for

import pgq

POISON_MAX_ATTEMPTS = 3
POISON_AFTER = 1.0  # seconds each poisoned attempt runs before it kills the process
WORKER_ARGS = ("--app", "reaper_tasks", "--concurrency", "4", "--lease", "2")
TICK = 0.1  # seconds between supervisor looks, and between ordinary jobs enqueued
ORDINARY_BEFORE_POISON = 10  # ordinary jobs already flowing when the poison arrives
POISON_TIMEOUT = 120.0  # seconds for three deaths, reaps and backoffs (a bound)


class Supervisor:
    """Keeps one worker running: starts a new one whenever the current one has exited."""

    def __init__(self, start: Callable[..., WorkerProcess]) -> None:
        self._start = start
        self.current = start(*WORKER_ARGS)
        self.dead: list[WorkerProcess] = []

    def tick(self) -> None:
        if self.current.proc.poll() is not None:
            self.dead.append(self.current)
            self.current = self._start(*WORKER_ARGS)


def enqueue(db_url: str, spec: pgq.JobSpec) -> int:
    with psycopg.connect(db_url) as tx:
        job_id = pgq.enqueue_many(tx, [spec])[0]
    return job_id


def ordinary_job() -> pgq.JobSpec:
    # Every death also takes back the ordinary jobs running beside the poison: plenty of
    # attempts, so those are never exhausted.
    return pgq.JobSpec("rt.sleep", {"seconds": 0.05}, max_attempts=100)


@pytest.mark.slow
def test_a_job_that_kills_its_worker_fails_after_max_attempts_while_others_flow(
    db_url: str,
    attempt_ledger: psycopg.Connection[Any],
    start_worker: Callable[..., WorkerProcess],
    start_reaper: Callable[..., WorkerProcess],
) -> None:
    conn = attempt_ledger
    start_reaper("0.5")
    supervisor = Supervisor(start_worker)
    ordinary: list[int] = []
    poison_id: int | None = None
    deadline = time.monotonic() + POISON_TIMEOUT
    while poison_id is None or job(conn, poison_id)["state"] != "failed":
        supervisor.tick()
        ordinary.append(enqueue(db_url, ordinary_job()))
        if poison_id is None and len(ordinary) == ORDINARY_BEFORE_POISON:
            spec = pgq.JobSpec(
                "rt.poison", {"after": POISON_AFTER}, max_attempts=POISON_MAX_ATTEMPTS
            )
            poison_id = enqueue(db_url, spec)
        assert time.monotonic() < deadline, f"the poison job is still {job(conn, poison_id)}"
        time.sleep(TICK)  # the enqueue rate, not a wait for a condition

    def ordinary_done() -> bool:
        supervisor.tick()
        return bool(
            scalar(
                conn,
                "SELECT count(*) = 0 FROM pgq.jobs WHERE id = ANY(%s) AND state <> 'succeeded'",
                (ordinary,),
            )
        )

    wait_for(ordinary_done, 60, "every ordinary job succeeded")
    supervisor.current.wait_started()  # a SIGTERM before its handlers would just kill it
    supervisor.current.signal(signal.SIGTERM)
    assert supervisor.current.wait_exit(30) == 0, supervisor.current.log()

    dead = supervisor.dead
    assert [w.proc.returncode for w in dead] == [1] * POISON_MAX_ATTEMPTS, "three deaths"
    poison = job(conn, poison_id)
    assert (poison["state"], poison["attempts"]) == ("failed", POISON_MAX_ATTEMPTS)
    assert poison["finished_at"] is not None
    assert [(e["kind"], e["attempt"], e["worker_id"]) for e in poison["errors"]] == [
        ("lease_expired", n + 1, w.worker_id()) for n, w in enumerate(dead)
    ]
    ran = conn.execute(
        "SELECT attempt, pid FROM attempt_ledger WHERE job_id = %s ORDER BY attempt",
        (poison_id,),
    ).fetchall()
    assert ran == [(n + 1, w.pid) for n, w in enumerate(dead)], "one run per attempt"
    finishers = {
        row[0]
        for row in conn.execute(
            "SELECT DISTINCT worker_id FROM pgq.jobs WHERE id = ANY(%s)", (ordinary,)
        ).fetchall()
    }
    assert {w.worker_id() for w in dead} <= finishers, "every killed worker ran ordinary jobs"
