"""pgq.admin against a real PostgreSQL: retry and cancel in every state, batches, and races.

The races are stepped by hand: another connection changes the job in an open transaction
(holding the row lock), the operator's statement runs in a thread and blocks on that lock,
the test waits until PostgreSQL shows it waiting, then commits the other transaction.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest

from pgq import admin, store
from pgq.errors import OptionError, QueueNameError

Conn = psycopg.Connection[Any]
WAIT_TIMEOUT = 10.0
STATES = ("queued", "running", "succeeded", "failed", "cancelled")


def add_job(
    conn: Conn,
    state: str = "queued",
    *,
    queue: str = "default",
    task: str = "tests.task",
    attempts: int = 0,
    max_attempts: int = 3,
    unique_key: str | None = None,
    errors: list[dict[str, Any]] | None = None,
) -> int:
    finished = state in ("succeeded", "failed", "cancelled")
    row = conn.execute(
        """
        INSERT INTO pgq.jobs (queue, task, state, attempts, max_attempts, unique_key, errors,
                              finished_at, worker_id, lease_token, lease_expires_at)
        VALUES (%s, %s, %s, %s, %s, %s, %s, CASE WHEN %s THEN now() - interval '1 minute' END,
                CASE WHEN %s = 'running' THEN 'w-1' END, %s,
                CASE WHEN %s = 'running' THEN now() + interval '30 seconds' END)
        RETURNING id
        """,
        (
            queue,
            task,
            state,
            attempts,
            max_attempts,
            unique_key,
            json.dumps(errors or []),
            finished,
            state,
            1 if state == "running" else 0,
            state,
        ),
    ).fetchone()
    assert row is not None
    return int(row[0])


def job(conn: Conn, job_id: int) -> dict[str, Any]:
    cur = conn.execute("SELECT * FROM pgq.jobs WHERE id = %s", (job_id,))
    names = [d.name for d in cur.description or []]
    row = cur.fetchone()
    assert row is not None
    return dict(zip(names, row, strict=True))


def db_now(conn: Conn) -> datetime:
    return conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index,no-any-return]


# --- retry ----------------------------------------------------------------------------------


def test_retry_requeues_a_failed_job_keeping_its_history(conn: Conn) -> None:
    errors = [{"attempt": 3, "at": "2026-01-01T00:00:00+00:00", "kind": "exception"}]
    job_id = add_job(conn, "failed", attempts=3, max_attempts=3, errors=errors)
    at = db_now(conn) + timedelta(seconds=5)

    result = admin.retry_jobs(conn, [job_id], now=at)

    assert (result.retried, result.skipped) == ([job_id], {})
    row = job(conn, job_id)
    assert row["state"] == "queued"
    assert row["run_at"] == at
    assert row["finished_at"] is None
    assert (row["attempts"], row["max_attempts"]) == (3, 4)  # exactly one more attempt
    assert row["errors"] == errors


def test_retry_keeps_max_attempts_when_attempts_are_left(conn: Conn) -> None:
    job_id = add_job(conn, "failed", attempts=2, max_attempts=10)  # e.g. pgq.Fail
    admin.retry_jobs(conn, [job_id])
    assert (job(conn, job_id)["attempts"], job(conn, job_id)["max_attempts"]) == (2, 10)


def test_retry_requeues_a_cancelled_job_and_clears_its_cancel_request(conn: Conn) -> None:
    job_id = add_job(conn, "cancelled", attempts=1)
    conn.execute("UPDATE pgq.jobs SET cancel_requested = true WHERE id = %s", (job_id,))
    assert admin.retry_jobs(conn, [job_id]).retried == [job_id]
    assert (job(conn, job_id)["state"], job(conn, job_id)["cancel_requested"]) == ("queued", False)


@pytest.mark.parametrize("state", ["queued", "running", "succeeded"])
def test_retry_leaves_live_and_succeeded_jobs_alone(conn: Conn, state: str) -> None:
    job_id = add_job(conn, state, attempts=1)
    before = job(conn, job_id)

    result = admin.retry_jobs(conn, [job_id])

    assert result.retried == []
    assert result.skipped == {job_id: f"is {state}; only failed or cancelled jobs can be retried"}
    assert job(conn, job_id) == before


def test_retry_reports_unknown_ids_and_acts_on_the_others(conn: Conn) -> None:
    job_id = add_job(conn, "failed", attempts=3)
    result = admin.retry_jobs(conn, [424242, job_id, job_id])
    assert (result.retried, result.skipped) == ([job_id], {424242: "not found"})


def test_retry_skips_a_job_whose_unique_key_is_live(conn: Conn) -> None:
    failed = add_job(conn, "failed", attempts=3, unique_key="k")
    add_job(conn, "queued", unique_key="k")

    result = admin.retry_jobs(conn, [failed])

    assert result.skipped == {
        failed: "its unique key 'k' is held by a queued, blocked or running job"
    }
    assert job(conn, failed)["state"] == "failed"


def test_retry_of_two_jobs_with_one_key_requeues_only_the_newest(conn: Conn) -> None:
    older = add_job(conn, "failed", attempts=3, unique_key="k")
    newer = add_job(conn, "cancelled", unique_key="k")

    result = admin.retry_jobs(conn, [older, newer])

    assert result.retried == [newer]
    assert list(result.skipped) == [older]
    assert job(conn, older)["state"] == "failed"


def test_retry_works_in_batches(conn: Conn, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = [add_job(conn, "failed", attempts=3) for _ in range(7)]
    statements = _count_statements(monkeypatch, "job_retry_many")

    assert sorted(admin.retry_jobs(conn, ids, batch_size=3).retried) == ids
    assert statements == [3, 3, 1]


def _count_statements(monkeypatch: pytest.MonkeyPatch, name: str) -> list[int]:
    """Record the number of ids each run of statement ``name`` carries."""
    sizes: list[int] = []
    real_fetch = store.fetch

    def fetch(conn: Conn, statement: store.Statement) -> list[store.Row]:
        if statement.name == name:
            sizes.append(len(statement.params["ids"]))
        return real_fetch(conn, statement)

    monkeypatch.setattr(store, "fetch", fetch)
    return sizes


# --- retry --failed -----------------------------------------------------------------------


def test_retry_failed_filters_by_queue_and_task(conn: Conn) -> None:
    wanted = add_job(conn, "failed", queue="mail", task="mail.send", attempts=3)
    other_task = add_job(conn, "failed", queue="mail", task="mail.other", attempts=3)
    other_queue = add_job(conn, "failed", queue="reports", task="mail.send", attempts=3)
    not_failed = add_job(conn, "cancelled", queue="mail", task="mail.send")

    result = admin.retry_failed(conn, queue="mail", task="mail.send")

    assert (result.retried, result.skipped, result.batches) == (1, 0, 1)
    states = {i: job(conn, i)["state"] for i in (wanted, other_task, other_queue, not_failed)}
    assert states == {
        wanted: "queued",
        other_task: "failed",
        other_queue: "failed",
        not_failed: "cancelled",
    }


def test_retry_failed_runs_in_batches_and_reports_progress(conn: Conn) -> None:
    ids = [add_job(conn, "failed", attempts=3) for _ in range(25)]
    add_job(conn, "failed", attempts=3, unique_key="k")
    add_job(conn, "running", unique_key="k")
    progress: list[tuple[int, int]] = []

    result = admin.retry_failed(
        conn, batch_size=10, on_batch=lambda r: progress.append((r.batches, r.retried))
    )

    assert (result.retried, result.skipped, result.batches) == (25, 1, 3)
    assert progress == [(1, 10), (2, 20)]  # after each full batch
    assert {job(conn, i)["state"] for i in ids} == {"queued"}


def test_retry_failed_with_nothing_to_do(conn: Conn) -> None:
    add_job(conn, "succeeded")
    result = admin.retry_failed(conn)
    assert (result.retried, result.skipped, result.batches) == (0, 0, 0)


# --- cancel ---------------------------------------------------------------------------------


def test_cancel_cancels_a_queued_job_now(conn: Conn) -> None:
    job_id = add_job(conn, "queued")
    at = db_now(conn) + timedelta(seconds=1)

    result = admin.cancel_jobs(conn, [job_id], now=at)

    assert (result.cancelled, result.cancel_requested, result.skipped) == ([job_id], [], {})
    row = job(conn, job_id)
    assert (row["state"], row["finished_at"], row["cancel_requested"]) == ("cancelled", at, False)


def test_cancel_asks_the_worker_to_stop_a_running_job(conn: Conn) -> None:
    job_id = add_job(conn, "running", attempts=1)

    result = admin.cancel_jobs(conn, [job_id])

    assert (result.cancelled, result.cancel_requested) == ([], [job_id])
    row = job(conn, job_id)
    assert (row["state"], row["cancel_requested"], row["finished_at"]) == ("running", True, None)
    # The worker's heartbeat is what carries the request to it.
    beat = store.extend_leases(ids=[job_id], tokens=[1], leases=[30.0])
    assert store.fetch(conn, beat) == [(job_id, True)]


@pytest.mark.parametrize("state", ["succeeded", "failed", "cancelled"])
def test_cancel_leaves_finished_jobs_alone(conn: Conn, state: str) -> None:
    job_id = add_job(conn, state, attempts=1)
    before = job(conn, job_id)

    result = admin.cancel_jobs(conn, [job_id, 777777])

    assert result.skipped == {
        job_id: f"is {state}; only queued, blocked, waiting or running jobs can be cancelled",
        777777: "not found",
    }
    assert job(conn, job_id) == before


# --- listing and reading ------------------------------------------------------------------


def test_list_jobs_filters_and_orders_newest_first(conn: Conn) -> None:
    a = add_job(conn, "failed", queue="a", task="t1", errors=[{"message": "first"}])
    conn.execute(
        'UPDATE pgq.jobs SET errors = errors || \'[{"message": "last"}]\' WHERE id = %s', (a,)
    )
    b = add_job(conn, "failed", queue="a", task="t2")
    c = add_job(conn, "queued", queue="b", task="t1")

    assert [j.id for j in admin.list_jobs(conn)] == [c, b, a]
    assert [j.id for j in admin.list_jobs(conn, state="failed")] == [b, a]
    assert [j.id for j in admin.list_jobs(conn, queue="a", task="t1")] == [a]
    assert [j.id for j in admin.list_jobs(conn, limit=1)] == [c]
    assert admin.list_jobs(conn, task="t1", state="failed")[0].last_error == "last"


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"state": "done"}, OptionError),
        ({"queue": "no spaces"}, QueueNameError),
        ({"limit": 0}, OptionError),
        ({"limit": 10_001}, OptionError),
    ],
)
def test_list_jobs_rejects_bad_filters(conn: Conn, kwargs: dict[str, Any], error: type) -> None:
    with pytest.raises(error):
        admin.list_jobs(conn, **kwargs)


def test_get_job_returns_everything_or_none(conn: Conn) -> None:
    errors = [{"attempt": 1, "message": "boom", "traceback": "Traceback ..."}]
    job_id = add_job(conn, "failed", attempts=1, unique_key="u", errors=errors)

    found = admin.get_job(conn, job_id)

    assert found is not None
    assert (found.id, found.state, found.unique_key, found.errors) == (
        job_id,
        "failed",
        "u",
        errors,
    )
    assert found.args == {}
    assert admin.get_job(conn, job_id + 1) is None


@pytest.mark.parametrize("bad", [0, -1, 2**63, True, "1"])
def test_job_ids_are_checked(conn: Conn, bad: Any) -> None:
    with pytest.raises(OptionError, match="job id"):
        admin.retry_jobs(conn, [bad])


def test_queue_stats_reads_the_view(conn: Conn) -> None:
    add_job(conn, "queued", queue="a")
    add_job(conn, "failed", queue="b")
    stats = admin.queue_stats(conn)
    assert [(s.queue, s.ready, s.failed) for s in stats] == [("a", 1, 0), ("b", 0, 1)]


# --- races ----------------------------------------------------------------------------------


def in_thread(action: Callable[[], Any]) -> Callable[[], Any]:
    """Start ``action`` in a thread; return a function that waits for and returns its result."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = action()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def result() -> Any:
        thread.join(WAIT_TIMEOUT)
        assert not thread.is_alive(), "the operator's statement never finished"
        if "error" in box:
            raise box["error"]
        return box["result"]

    return result


def wait_until_blocked(conn: Conn, waiting: int = 1) -> None:
    """Poll until ``waiting`` backends of this database wait for a lock (bounded)."""
    deadline = time.monotonic() + WAIT_TIMEOUT
    query = (
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    while time.monotonic() < deadline:
        if conn.execute(query).fetchone()[0] >= waiting:  # type: ignore[index]
            return
        time.sleep(0.01)
    raise AssertionError("the operator's statement never waited for the row lock")


@pytest.fixture
def other(db_url: str) -> Any:
    """A second connection (not autocommit): a worker or another operator."""
    with psycopg.connect(db_url) as connection:
        yield connection


@pytest.fixture
def operator(db_url: str) -> Any:
    with psycopg.connect(db_url, autocommit=True) as connection:
        yield connection


def claim(conn: Conn, task: str = "tests.task") -> list[store.Row]:
    statement = store.claim_jobs(
        queues=["default"], tasks=[task], leases=[30.0], limit=10, worker_id="w-race"
    )
    return store.fetch(conn, statement)


def test_retry_never_resurrects_a_job_requeued_and_claimed_meanwhile(
    conn: Conn, other: Conn, operator: Conn
) -> None:
    job_id = add_job(conn, "failed", attempts=3)
    # Another operator retries the job and a worker claims it, in one open transaction.
    store.fetch(other, store.retry_jobs(ids=[job_id]))
    assert [row[0] for row in claim(other)] == [job_id]

    result = in_thread(lambda: admin.retry_jobs(operator, [job_id]))
    wait_until_blocked(conn)
    other.commit()

    assert result().skipped == {job_id: "is running; only failed or cancelled jobs can be retried"}
    row = job(conn, job_id)
    assert (row["state"], row["lease_token"], row["worker_id"]) == ("running", 1, "w-race")


def test_retry_failed_never_resurrects_a_job_that_succeeded_meanwhile(
    conn: Conn, other: Conn, operator: Conn
) -> None:
    job_id = add_job(conn, "failed", attempts=3)
    store.fetch(other, store.retry_jobs(ids=[job_id]))
    (claimed,) = claim(other)
    finish = store.finish_jobs(
        ids=[job_id], tokens=[claimed[6]], outcomes=["succeeded"], delays=[0.0], errors=[None]
    )
    assert store.fetch(other, finish) == [(job_id, "succeeded")]

    result = in_thread(lambda: admin.retry_failed(operator))
    wait_until_blocked(conn)
    other.commit()

    assert result().retried == 0
    assert job(conn, job_id)["state"] == "succeeded"


def test_cancel_of_a_job_claimed_meanwhile_becomes_a_cancel_request(
    conn: Conn, other: Conn, operator: Conn
) -> None:
    job_id = add_job(conn, "queued")
    assert [row[0] for row in claim(other)] == [job_id]

    result = in_thread(lambda: admin.cancel_jobs(operator, [job_id]))
    wait_until_blocked(conn)
    other.commit()

    outcome = result()
    assert (outcome.cancelled, outcome.cancel_requested) == ([], [job_id])
    row = job(conn, job_id)
    assert (row["state"], row["cancel_requested"]) == ("running", True)


def test_cancel_of_a_job_finished_meanwhile_changes_nothing(
    conn: Conn, other: Conn, operator: Conn
) -> None:
    job_id = add_job(conn, "running", attempts=1)
    finish = store.finish_jobs(
        ids=[job_id], tokens=[1], outcomes=["succeeded"], delays=[0.0], errors=[None]
    )
    assert store.fetch(other, finish) == [(job_id, "succeeded")]

    result = in_thread(lambda: admin.cancel_jobs(operator, [job_id]))
    wait_until_blocked(conn)
    other.commit()

    assert result().skipped == {
        job_id: "is succeeded; only queued, blocked, waiting or running jobs can be cancelled"
    }
    row = job(conn, job_id)
    assert (row["state"], row["cancel_requested"]) == ("succeeded", False)


def test_retry_runs_again_when_a_job_takes_the_unique_key_meanwhile(
    conn: Conn, other: Conn, operator: Conn
) -> None:
    failed = add_job(conn, "failed", attempts=3, unique_key="k")
    # The application enqueues a new job with the same key; not committed yet.
    newer = add_job(other, "queued", unique_key="k")

    result = in_thread(lambda: admin.retry_jobs(operator, [failed]))
    wait_until_blocked(conn)  # on the unique index entry of the uncommitted job
    other.commit()

    assert result().skipped == {
        failed: "its unique key 'k' is held by a queued, blocked or running job"
    }
    assert (job(conn, failed)["state"], job(conn, newer)["state"]) == ("failed", "queued")
