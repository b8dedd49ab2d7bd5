"""The database goes away under running workers and reapers; they reconnect, nothing is lost.

(a) Every pgq backend (``application_name LIKE 'pgq%'``) of the test database is
    terminated, three times, while jobs are enqueued and run; on the shared server, but
    only in this test's database.
(b) PostgreSQL itself restarts while jobs run: once with ``pg_ctl restart -m fast``, once
    by a crash (``pg_ctl stop -m immediate``, then crash recovery at start) after an outage
    the workers have noticed. This runs on a throwaway cluster of its own, never on the
    server the rest of the suite uses.

Each time every committed job ends ``succeeded`` and no worker or reaper process exits.
The tasks' ledger writes reconnect on their own (see apps/reaper_tasks.py).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from worker_procs import WorkerProcess, create_attempt_ledger, scalar, wait_for

import pgq
from pgq import devdb, migrate

LEASE = 3.0  # seconds
WORKER_ARGS = ("--app", "reaper_tasks", "--concurrency", "4", "--lease", str(LEASE))
# The crash keeps the server down longer than a lease: heartbeats cannot renew, so leases
# lapse while their workers live, and outcomes wait through the outage.
OUTAGE = LEASE + 2.0  # seconds
ENQUEUE_EVERY = 0.2  # seconds between batches
ENQUEUE_BATCH = 4
DURATION_MIN, DURATION_MAX = 0.02, 0.3  # seconds per job
TERMINATIONS = 3
RECOVERY_TIMEOUT = 60.0  # seconds to reconnect, or to finish every job (bounds)
# Every test here runs two workers (claim, listener, a reaper thread each) and `pgq reap`:
# the connections they keep whatever the load. A worker's writer connects when it next has
# an outcome or a heartbeat to write, so a worker the other one starves may have none.
ALWAYS = {"pgq claim": 2, "pgq listener": 2, "pgq reaper": 3}
# Every connection pgq opens names itself "pgq <role>": claim, writer, listener, reaper.
PGQ_BACKENDS = """
    SELECT application_name, count(*) FROM pg_stat_activity
    WHERE datname = current_database() AND application_name LIKE 'pgq%%'
    GROUP BY 1
"""
TERMINATE = """
    SELECT count(*) FROM (
        SELECT pg_terminate_backend(pid) FROM pg_stat_activity
        WHERE datname = current_database() AND application_name LIKE 'pgq%%'
          AND pid <> pg_backend_pid()
    ) AS t
"""


class Enqueuer(threading.Thread):
    """Commits a batch of jobs every ENQUEUE_EVERY seconds until stopped.

    Each batch is its own connection and transaction. A batch that fails because the
    database is away is skipped: had its COMMIT landed, its jobs are in the table like any
    other and must succeed too. ``ids`` holds the batches known to be committed.
    """

    def __init__(self, url: str) -> None:
        super().__init__(name="enqueuer", daemon=True)
        self.url = url
        self.rng = random.Random(7)
        self.ids: list[int] = []
        self.failed_batches = 0
        self.error: BaseException | None = None
        self.stopping = threading.Event()

    def run(self) -> None:
        try:
            while not self.stopping.wait(ENQUEUE_EVERY):
                self._batch()
        except BaseException as exc:  # re-raised by the test in its own thread
            self.error = exc

    def _batch(self) -> None:
        specs = [
            pgq.JobSpec(
                "rt.sleep", {"seconds": round(self.rng.uniform(DURATION_MIN, DURATION_MAX), 3)}
            )
            for _ in range(ENQUEUE_BATCH)
        ]
        try:
            with psycopg.connect(self.url, connect_timeout=2) as tx:
                ids = pgq.enqueue_many(tx, specs)
        except psycopg.OperationalError:
            self.failed_batches += 1
            return
        self.ids.extend(ids)

    def finish(self) -> list[int]:
        self.stopping.set()
        self.join(30)
        assert self.error is None, self.error
        assert not self.is_alive()
        return self.ids


@pytest.fixture
def start_enqueuer() -> Iterator[Callable[[str], Enqueuer]]:
    """Start an Enqueuer on a URL; every one is stopped at teardown, whatever happened."""
    started: list[Enqueuer] = []

    def start(url: str) -> Enqueuer:
        thread = Enqueuer(url)
        thread.start()
        started.append(thread)
        return thread

    yield start
    for thread in started:
        thread.stopping.set()
        thread.join(30)


def pgq_backends(url: str) -> dict[str, int]:
    """{application_name: count} of pgq's connections to ``url``'s database; {} while it is
    away."""
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            return dict(conn.execute(PGQ_BACKENDS).fetchall())
    except psycopg.OperationalError:
        return {}


def always_connected(url: str) -> dict[str, int]:
    backends = pgq_backends(url)
    return {role: backends.get(role, 0) for role in ALWAYS}


def working(url: str) -> bool:
    """True once both workers' connections and at least one reaper (`pgq reap`'s) are back."""
    backends = always_connected(url)
    return backends["pgq claim"] == backends["pgq listener"] == 2 and backends["pgq reaper"] > 0


def wait_all_connected(url: str) -> None:
    deadline = time.monotonic() + RECOVERY_TIMEOUT
    while (seen := always_connected(url)) != ALWAYS:
        if time.monotonic() > deadline:
            pytest.fail(f"not all connected within {RECOVERY_TIMEOUT}s: {seen}, not {ALWAYS}")
        time.sleep(0.05)


def wait_jobs_flowing(url: str, more: int = 20) -> None:
    before = ledger_rows(url)
    wait_for(lambda: ledger_rows(url) >= before + more, RECOVERY_TIMEOUT, "jobs flowing")


def assert_all_succeeded(conn: psycopg.Connection[Any], committed: list[int]) -> None:
    """Every job in the table (the known-committed ones among them) succeeded."""
    wait_for(
        lambda: scalar(conn, "SELECT count(*) = 0 FROM pgq.jobs WHERE state <> 'succeeded'"),
        RECOVERY_TIMEOUT,
        "every job succeeded",
    )
    in_table = {r[0] for r in conn.execute("SELECT id FROM pgq.jobs").fetchall()}
    assert set(committed) <= in_table
    ran = {r[0] for r in conn.execute("SELECT DISTINCT job_id FROM attempt_ledger").fetchall()}
    assert ran == in_table, "the ledger saw every job run"


def stop_all(processes: list[WorkerProcess]) -> None:
    """Each process is still alive after everything, and stops cleanly on SIGTERM."""
    for process in processes:
        assert process.proc.poll() is None, f"{process.args[1]} exited:\n{process.log()}"
    for process in processes:
        process.signal(signal.SIGTERM)
    for process in processes:
        assert process.wait_exit(30) == 0, process.log()


@pytest.mark.slow
def test_workers_and_reaper_survive_their_backends_being_terminated(
    db_url: str,
    attempt_ledger: psycopg.Connection[Any],
    start_worker: Callable[..., WorkerProcess],
    start_reaper: Callable[..., WorkerProcess],
    start_enqueuer: Callable[[str], Enqueuer],
) -> None:
    conn = attempt_ledger
    workers = [start_worker(*WORKER_ARGS) for _ in range(2)]
    processes = [start_reaper("0.5"), *workers]
    for worker in workers:
        worker.wait_started()
    enqueuer = start_enqueuer(db_url)

    wait_all_connected(db_url)
    assert scalar(conn, TERMINATE) >= sum(ALWAYS.values())
    for _ in range(TERMINATIONS - 1):
        # The workers' reaper threads notice at their next pass (every 5 s): no need to wait
        # for them before the next round, only for work to go on.
        wait_for(lambda: working(db_url), RECOVERY_TIMEOUT, "workers and `pgq reap` back")
        wait_jobs_flowing(db_url)
        assert scalar(conn, TERMINATE) >= sum(ALWAYS.values()) - 2  # reaper threads
    wait_all_connected(db_url)
    wait_jobs_flowing(db_url)
    committed = enqueuer.finish()

    assert_all_succeeded(conn, committed)
    assert enqueuer.failed_batches == 0, "enqueueing never depended on pgq's connections"
    stop_all(processes)


@pytest.fixture
def cluster() -> Iterator[tuple[devdb.Server, str]]:
    """A throwaway PostgreSQL of this test's own, with a migrated database on it."""
    with (
        devdb.throwaway_cluster(port=devdb.free_port()) as server,
        devdb.scratch_database(server) as url,
    ):
        migrate.upgrade(url)
        yield server, url


def pg_ctl(server: devdb.Server, *args: str) -> None:
    """``pg_ctl -D <data> -w ARGS`` as the cluster's owner (postgres, when we are root)."""
    assert server.data_dir is not None
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    # -l: the server's output goes to the cluster's log file, never to our pipes (a
    # postmaster holding them open would block subprocess.run until it exits).
    command = [*as_user, devdb._pg_bin("pg_ctl"), "-D", str(server.data_dir / "data"), "-w"]
    done = subprocess.run(
        [*command, "-l", str(server.data_dir / "log"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"pg_ctl {' '.join(args)}: {done.stdout}{done.stderr}"


@pytest.mark.slow
def test_workers_and_reaper_survive_a_postgresql_restart_and_a_crash(
    cluster: tuple[devdb.Server, str],
    start_worker: Callable[..., WorkerProcess],
    start_reaper: Callable[..., WorkerProcess],
    start_enqueuer: Callable[[str], Enqueuer],
) -> None:
    server, url = cluster
    with psycopg.connect(url, autocommit=True) as setup:
        create_attempt_ledger(setup)
    workers = [start_worker(*WORKER_ARGS, url=url) for _ in range(2)]
    processes = [start_reaper("0.5", url=url), *workers]
    for worker in workers:
        worker.wait_started()
    enqueuer = start_enqueuer(url)
    wait_all_connected(url)
    wait_jobs_flowing(url)

    pg_ctl(server, "-m", "fast", "restart")
    wait_all_connected(url)
    wait_jobs_flowing(url)

    refused = [w.log().count("cannot connect") for w in workers]
    pg_ctl(server, "-m", "immediate", "stop")  # a crash: recovery runs at the next start
    for worker, seen in zip(workers, refused, strict=True):
        # The outage is real: each worker has failed to reconnect during it.
        wait_for(lambda w=worker, n=seen: w.log().count("cannot connect") > n, what="refusals")
    time.sleep(OUTAGE)  # the outage itself, not a wait for a condition
    pg_ctl(server, "restart")  # not running: starts it with the options it last had
    wait_all_connected(url)
    wait_jobs_flowing(url)
    committed = enqueuer.finish()

    with psycopg.connect(url, autocommit=True) as conn:
        assert_all_succeeded(conn, committed)
    assert enqueuer.failed_batches > 0, "some enqueues met the outage"
    stop_all(processes)


def ledger_rows(url: str) -> int:
    """Ledger rows so far; 0 while the server is away."""
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            return int(scalar(conn, "SELECT count(*) FROM attempt_ledger"))
    except psycopg.OperationalError:
        return 0
