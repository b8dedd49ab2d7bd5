"""Chaos: for a minute a worker is SIGKILLed every 2-5 s and restarted while 2,000 jobs flow.

Jobs are committed at a steady rate from a thread during the whole run, not up front. At
each kill the worker is first frozen (SIGSTOP) and the jobs the database shows ``running``
for it are read, then it is SIGKILLed: once frozen it can start no task, so those are the
only jobs of that worker that can have started and will run again. At the end every
committed job has succeeded, and the ledger's duplicate executions are bounded by them.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from worker_procs import WorkerProcess, scalar, wait_for

import pgq

JOBS = 2_000
SEED = 4
RUN_FOR = 60.0  # seconds of kills and restarts
ENQUEUE_FOR = 50.0  # seconds over which the jobs are committed, in equal batches
ENQUEUE_BATCH = 10
KILL_AFTER = (2.0, 5.0)  # seconds a worker runs before its SIGKILL, drawn per worker
DURATION_MIN, DURATION_MAX = 0.02, 0.2  # seconds per job
# attempts grow at every claim; no job should be caught by a kill anywhere near 100 times.
MAX_ATTEMPTS = 100
WORKER_ARGS = ("--app", "reaper_tasks", "--concurrency", "8", "--lease", "2")
DRAIN_TIMEOUT = 120.0  # seconds a last, undisturbed worker gets to finish everything


class Enqueuer(threading.Thread):
    """Commits JOBS jobs in batches at a steady rate over ENQUEUE_FOR seconds."""

    def __init__(self, db_url: str, rng: random.Random) -> None:
        super().__init__(name="enqueuer", daemon=True)
        self.db_url = db_url
        self.rng = rng
        self.ids: list[int] = []
        self.error: BaseException | None = None
        self.stopping = threading.Event()  # set at teardown, should the test fail early

    def run(self) -> None:
        try:
            self._enqueue()
        except BaseException as exc:  # re-raised by the test in its own thread
            self.error = exc

    def _enqueue(self) -> None:
        batches = JOBS // ENQUEUE_BATCH
        start = time.monotonic()
        with psycopg.connect(self.db_url) as conn:
            for n in range(batches):
                # The schedule itself: batch n is due at n * ENQUEUE_FOR / batches seconds.
                if self.stopping.wait(
                    max(0.0, start + n * ENQUEUE_FOR / batches - time.monotonic())
                ):
                    return
                self.ids.extend(pgq.enqueue_many(conn, self._specs()))
                conn.commit()

    def _specs(self) -> list[pgq.JobSpec]:
        return [
            pgq.JobSpec(
                ("rt.sleep", "rt.sleep_async")[n % 2],  # threads and the event loop
                {"seconds": round(self.rng.uniform(DURATION_MIN, DURATION_MAX), 3)},
                max_attempts=MAX_ATTEMPTS,
            )
            for n in range(ENQUEUE_BATCH)
        ]


@pytest.fixture
def enqueuer(db_url: str) -> Iterator[Enqueuer]:
    """The running enqueuer; stopped at teardown so it never feeds the next test."""
    thread = Enqueuer(db_url, random.Random(SEED + 1))
    thread.start()
    yield thread
    thread.stopping.set()
    thread.join(30)


def freeze_read_and_kill(worker: WorkerProcess, conn: psycopg.Connection[Any]) -> set[int]:
    """SIGSTOP, read the jobs running for this worker, SIGKILL; return their ids."""
    worker_id = worker.worker_id()
    worker.signal(signal.SIGSTOP)
    wait_for(worker.is_stopped, what=f"worker {worker.pid} frozen")
    rows = conn.execute(
        "SELECT id FROM pgq.jobs WHERE state = 'running' AND worker_id = %s", (worker_id,)
    ).fetchall()
    worker.signal(signal.SIGKILL)
    assert worker.wait_exit(10) == -signal.SIGKILL
    return {row[0] for row in rows}


@pytest.mark.slow
def test_chaos_kills_lose_nothing_and_duplicates_stay_within_what_was_in_flight(
    db_url: str,
    attempt_ledger: psycopg.Connection[Any],
    start_worker: Callable[..., WorkerProcess],
    start_reaper: Callable[..., WorkerProcess],
    enqueuer: Enqueuer,
) -> None:
    conn = attempt_ledger
    rng = random.Random(SEED)
    start_reaper("0.5")

    kills: list[set[int]] = []
    killed_ids: set[str] = set()
    deadline = time.monotonic() + RUN_FOR
    while time.monotonic() < deadline:
        worker = start_worker(*WORKER_ARGS)
        killed_ids.add(worker.worker_id())
        time.sleep(rng.uniform(*KILL_AFTER))  # the chaos schedule, not a wait
        kills.append(freeze_read_and_kill(worker, conn))
    enqueuer.join(30)
    assert enqueuer.error is None, enqueuer.error
    assert not enqueuer.is_alive(), "the enqueuer finished"
    assert len(enqueuer.ids) == JOBS

    last = start_worker(*WORKER_ARGS)
    last.wait_started()  # a SIGTERM before its handlers are installed would just kill it
    wait_for(
        lambda: scalar(conn, "SELECT count(*) FROM pgq.jobs WHERE state = 'succeeded'") == JOBS,
        DRAIN_TIMEOUT,
        "every job succeeded",
    )
    last.signal(signal.SIGTERM)
    assert last.wait_exit(30) == 0, last.log()

    assert len(kills) >= RUN_FOR // (KILL_AFTER[1] + 5), "the worker was killed many times"
    assert_every_job_succeeded(conn, enqueuer.ids, killed_ids)
    assert_duplicates_bounded(conn, enqueuer.ids, kills)


def assert_every_job_succeeded(
    conn: psycopg.Connection[Any], ids: list[int], killed_ids: set[str]
) -> None:
    """Succeeded, and every extra attempt is a lease a killed worker left to lapse."""
    rows = conn.execute("SELECT id, state::text, attempts, errors FROM pgq.jobs").fetchall()
    assert sorted(r[0] for r in rows) == sorted(ids)
    for job_id, state, attempts, errors in rows:
        assert state == "succeeded", job_id
        assert len(errors) == attempts - 1, (job_id, attempts, errors)
        for error in errors:
            assert error["kind"] == "lease_expired", (job_id, error)
            assert error["worker_id"] in killed_ids, (job_id, error)


def assert_duplicates_bounded(
    conn: psycopg.Connection[Any], ids: list[int], kills: list[set[int]]
) -> None:
    """Extra executions (ledger rows beyond one per job) never exceed the in-flight count,
    in total and job by job."""
    runs = Counter(row[0] for row in conn.execute("SELECT job_id FROM attempt_ledger").fetchall())
    assert set(runs) == set(ids), "every job ran"
    in_flight = Counter(job_id for held in kills for job_id in held)
    duplicates = sum(runs.values()) - len(runs)
    # Shown with `pytest -s`: how hard the run was.
    print(f"chaos: {len(kills)} kills, {sum(in_flight.values())} in flight, {duplicates} dup")
    assert sum(in_flight.values()) > 0, "the kills caught jobs in flight"
    assert duplicates <= sum(in_flight.values())
    over = {j: (n, in_flight[j]) for j, n in runs.items() if n - 1 > in_flight[j]}
    assert not over, f"jobs that ran more often than they were caught in flight: {over}"
