"""The worker registry: pgq.workers rows, their refresh and removal, and the views on them.

A worker in this process (``Worker.run_async`` in a thread) enters pgq.workers at start,
refreshes its row with each heartbeat and leaves on a clean stop; the reaper removes the
rows of workers unseen for longer than the bound, with ``now`` moved by the test. The
views are checked on rows arranged by hand, the alive flag and the orphans included.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from worker_rows import last_seen, register, workers

import pgq
from pgq import reaper, store, worker_registry
from pgq.heartbeat import BEAT_INTERVAL_MAX, Heartbeat, Held
from pgq.registry import Registry
from pgq.runner import ClaimedJob
from pgq.worker import Worker, WorkerConfig
from pgq.worker_registry import STALE_AFTER

Conn = psycopg.Connection[Any]
WAIT_TIMEOUT = 30.0


def wait_until(condition: Callable[[], Any], what: str = "condition") -> Any:
    deadline = time.monotonic() + WAIT_TIMEOUT
    while not (result := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not true within {WAIT_TIMEOUT}s")
        time.sleep(0.02)
    return result


# --- the row a worker writes --------------------------------------------------------------


def test_a_heartbeat_upserts_the_row_and_then_only_refreshes_it(conn: Conn) -> None:
    register(conn, "w1", queues=("emails", "default"), tasks={"t.a": "emails"}, running=0)
    first = workers(conn)["w1"]
    assert {k: first[k] for k in ("hostname", "pid", "version", "queues", "tasks")} == {
        "hostname": "host-a",
        "pid": 4242,
        "version": pgq.__version__,
        "queues": ["emails", "default"],
        "tasks": {"t.a": "emails"},
    }
    assert (first["concurrency"], first["running"]) == (4, 0)
    assert first["stale_after_seconds"] == STALE_AFTER

    last_seen(conn, "w1", "5 seconds")
    register(conn, "w1", running=3)  # the same id: an update of last_seen_at and running

    again = workers(conn)["w1"]
    assert again["running"] == 3
    assert again["last_seen_at"] > first["last_seen_at"]
    assert (again["started_at"], again["queues"]) == (first["started_at"], first["queues"])


def test_a_worker_whose_row_was_removed_comes_back_with_its_next_beat(conn: Conn) -> None:
    register(conn, "w1")
    conn.execute("DELETE FROM pgq.workers")  # the reaper took it while the worker was cut off
    register(conn, "w1", running=1)
    assert workers(conn)["w1"]["running"] == 1


def test_extend_leases_without_a_worker_leaves_the_registry_alone(conn: Conn) -> None:
    store.fetch(conn, store.extend_leases(ids=[], tokens=[], leases=[]))
    assert workers(conn) == {}


def test_the_heartbeat_beats_at_least_every_beat_interval_max() -> None:
    now = datetime.now(UTC)
    job = ClaimedJob(1, "q", "t", {}, 1, 20, 1, 0, now, now)
    held = [Held(job, 3600.0)]
    heartbeat = Heartbeat(lambda s: asyncio.sleep(0, []), lambda: held, lambda r: None, 300.0)
    assert heartbeat.interval() == BEAT_INTERVAL_MAX
    held.clear()
    assert heartbeat.interval() == BEAT_INTERVAL_MAX, "idle with a 300 s lease"
    assert STALE_AFTER >= 3 * BEAT_INTERVAL_MAX


# --- a real worker ------------------------------------------------------------------------


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


def gated_registry(gate: threading.Event) -> Registry:
    registry = Registry()

    @pgq.task(name="reg.wait", queue="emails", registry=registry)
    def wait() -> None:
        gate.wait(WAIT_TIMEOUT)

    @pgq.task(name="reg.other", queue="reports", registry=registry)
    def other() -> None: ...

    return registry


def start(worker: Worker) -> threading.Thread:
    thread = threading.Thread(target=lambda: asyncio.run(worker.run_async()), daemon=True)
    thread.start()
    return thread


def test_a_worker_registers_refreshes_and_leaves_on_a_clean_stop(
    db_url: str, conn: Conn, gate: threading.Event
) -> None:
    config = WorkerConfig(db_url, queues=["emails"], concurrency=3, lease=3.0, run_reaper=False)
    worker = Worker(config, registry=gated_registry(gate))
    thread = start(worker)
    me = config.worker_id

    row = wait_until(lambda: workers(conn).get(me), "the worker's row")
    assert (row["queues"], row["concurrency"], row["running"]) == (["emails"], 3, 0)
    assert row["tasks"] == {"reg.wait": "emails", "reg.other": "reports"}
    assert row["hostname"] and row["pid"] > 0

    pgq.enqueue(conn, "reg.wait", queue="emails")
    # The next beats (a third of the 3 s lease) report the job running, and refresh the row.
    wait_until(lambda: workers(conn)[me]["running"] == 1, "running = 1")
    seen = workers(conn)[me]["last_seen_at"]
    wait_until(lambda: workers(conn)[me]["last_seen_at"] > seen, "a later beat")
    status = {w.id: w for w in worker_registry.list_workers(conn)}[me]
    assert (status.alive, status.running, status.held) == (True, 1, 1)

    gate.set()
    worker.stop()
    thread.join(WAIT_TIMEOUT)
    assert not thread.is_alive()
    assert me not in workers(conn)


# --- the reaper's bound -------------------------------------------------------------------


def db_now(conn: Conn) -> Any:
    row = conn.execute("SELECT now()").fetchone()
    assert row is not None
    return row[0]


def test_the_reaper_removes_a_worker_unseen_for_longer_than_the_bound(conn: Conn) -> None:
    register(conn, "dead")
    register(conn, "alive")
    seen = workers(conn)["dead"]["last_seen_at"]

    within = reaper.reap_once(conn, now=seen + timedelta(seconds=STALE_AFTER - 1))
    assert within.workers == []
    assert set(workers(conn)) == {"dead", "alive"}

    conn.execute(
        "UPDATE pgq.workers SET last_seen_at = %s WHERE id = 'alive'",
        (seen + timedelta(seconds=10),),
    )
    past = reaper.reap_once(conn, now=seen + timedelta(seconds=STALE_AFTER + 1))

    assert [(w.id, w.hostname, w.pid) for w in past.workers] == [("dead", "host-a", 4242)]
    assert past.as_dict()["workers_removed"] == ["dead"]
    assert set(workers(conn)) == {"alive"}


def test_a_reaper_locked_out_removes_no_worker(db_url: str, conn: Conn) -> None:
    register(conn, "dead")
    later = db_now(conn) + timedelta(seconds=STALE_AFTER + 1)
    with psycopg.connect(db_url, autocommit=True) as other, other.transaction():
        store.fetch(other, store.try_reap_lock(key=reaper.REAP_LOCK_KEY))
        result = reaper.reap_once(conn, now=later)
    assert (result.locked_out, result.workers) == (True, [])
    assert set(workers(conn)) == {"dead"}


# --- the views ----------------------------------------------------------------------------


def add_job(conn: Conn, queue: str, task: str, *, state: str = "queued", **cols: Any) -> None:
    names = "".join(f", {n}" for n in cols)
    values = "".join(f", %({n})s" for n in cols)
    conn.execute(
        f"INSERT INTO pgq.jobs (queue, task, state{names}) "
        f"VALUES (%(queue)s, %(task)s, %(state)s{values})",
        {"queue": queue, "task": task, "state": state, **cols},
    )


def test_worker_status_says_alive_last_seen_and_held_jobs(conn: Conn) -> None:
    register(conn, "w-live", running=2)
    register(conn, "w-dead")
    last_seen(conn, "w-dead", f"{STALE_AFTER + 5} seconds")
    add_job(conn, "default", "t.a", state="running", worker_id="w-live")
    add_job(conn, "default", "t.a", state="running", worker_id="w-live")
    add_job(conn, "default", "t.a", state="succeeded", worker_id="w-live")

    rows = {w.id: w for w in worker_registry.list_workers(conn)}

    assert (rows["w-live"].alive, rows["w-live"].running, rows["w-live"].held) == (True, 2, 2)
    assert rows["w-live"].last_seen_seconds < STALE_AFTER
    assert rows["w-live"].tasks == ["t.a"]
    assert (rows["w-dead"].alive, rows["w-dead"].held) == (False, 0)
    assert rows["w-dead"].last_seen_seconds >= STALE_AFTER + 5


def orphans(conn: Conn) -> dict[tuple[str, str], tuple[int, int]]:
    return {(o.queue, o.task): (o.queued, o.ready) for o in worker_registry.orphaned_jobs(conn)}


def test_orphaned_jobs_are_queued_jobs_no_live_worker_serves(conn: Conn) -> None:
    # Served: t.a on emails. t.a on default (a producer that enqueued by name) is not.
    register(conn, "w1", queues=("emails",), tasks={"t.a": "emails", "t.b": "emails"})
    register(conn, "w-dead", queues=("reports",), tasks={"t.r": "reports"})
    last_seen(conn, "w-dead", f"{STALE_AFTER + 1} seconds")
    add_job(conn, "emails", "t.a")
    add_job(conn, "default", "t.a")
    add_job(conn, "default", "t.a", run_at=db_now(conn) + timedelta(hours=1))
    add_job(conn, "emails", "t.unknown")
    add_job(conn, "reports", "t.r")  # its only worker is dead
    add_job(conn, "default", "t.a", state="failed")  # not queued: no orphan
    add_job(conn, "default", "t.a", state="running")

    assert orphans(conn) == {
        ("default", "t.a"): (2, 1),
        ("emails", "t.unknown"): (1, 1),
        ("reports", "t.r"): (1, 1),
    }
    oldest = {(o.queue, o.task): o.oldest_seconds for o in worker_registry.orphaned_jobs(conn)}
    assert all(seconds >= 0 for seconds in oldest.values())

    register(conn, "w-dead", queues=("reports",), tasks={"t.r": "reports"})  # it came back
    assert ("reports", "t.r") not in orphans(conn)


def test_without_any_worker_every_queued_job_is_orphaned(conn: Conn) -> None:
    add_job(conn, "default", "t.a")
    add_job(conn, "default", "t.a")
    assert orphans(conn) == {("default", "t.a"): (2, 2)}


def test_serving_names_the_queues_a_task_is_served_on(conn: Conn) -> None:
    register(conn, "w1", queues=("emails", "bulk"), tasks={"t.a": "emails"})
    register(conn, "w2", queues=("default",), tasks={"t.b": "default"})

    assert worker_registry.serving(conn, "t.a", "emails") == worker_registry.Serving(
        True, ["bulk", "emails"], 2
    )
    assert worker_registry.serving(conn, "t.a", "default") == worker_registry.Serving(
        False, ["bulk", "emails"], 2
    )
    assert worker_registry.serving(conn, "t.zzz", "default").queues == []


def test_behind_pgbouncer_the_registry_works_and_leaves_the_pool_clean(
    db_url: str,
    bouncer_url: str,
    conn: Conn,
    gate: threading.Event,
    pool_state: Callable[[], Any],
) -> None:
    # A 1 s lease beats every third of a second: more beats, each an upsert, than psycopg's
    # prepare_threshold (5), through PgBouncer's one shared server connection.
    config = WorkerConfig(
        bouncer_url, queues=["emails"], lease=1.0, run_reaper=False, pgbouncer=True
    )
    worker = Worker(config, registry=gated_registry(gate))
    thread = start(worker)
    me = config.worker_id
    pgq.enqueue(conn, "reg.wait", queue="emails")
    wait_until(lambda: workers(conn).get(me, {}).get("running") == 1, "running = 1")
    seen = workers(conn)[me]["last_seen_at"]
    for _ in range(6):
        wait_until(lambda: workers(conn)[me]["last_seen_at"] > seen, "a later beat")  # noqa: B023
        seen = workers(conn)[me]["last_seen_at"]

    gate.set()
    worker.stop()
    thread.join(WAIT_TIMEOUT)
    assert me not in workers(conn)
    assert pool_state().clean, pool_state()
