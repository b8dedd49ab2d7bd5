"""pgq.web.queries against a real PostgreSQL: what each dashboard page reads, no browser.

Covers the overview's counts and chart buckets (with the database's time injected), the
job list's keyset pages and bounded id windows, the detail of a job with its errors and
columns a later migration adds, and failures grouped by task and message.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from tests.web_support import add_job, add_worker, error, seed_every_state

import pgq
from pgq import devdb, limits, migrate, scheduler, store
from pgq.errors import OptionError, QueueNameError, TaskNameError
from pgq.periodic import ScheduleRegistry, schedule
from pgq.registry import Registry
from pgq.web import queries

Conn = psycopg.Connection[Any]


def test_overview_counts_each_queue_from_queue_stats(conn: Conn) -> None:
    seed_every_state(conn)
    overview = queries.overview(conn)
    by_queue = {q.queue: q for q in overview.queues}
    assert set(by_queue) == {"default", "mail"}
    assert (by_queue["default"].ready, by_queue["default"].scheduled) == (1, 1)
    assert by_queue["default"].failed == 2  # the charge and the payroll job
    assert (by_queue["mail"].running, by_queue["mail"].scheduled) == (1, 1)
    assert len(overview.last_hour) == 60 and len(overview.last_day) == 24


def test_throughput_buckets_count_succeeded_and_failed_in_database_time(conn: Conn) -> None:
    now = datetime(2026, 1, 1, 12, 30, 30, tzinfo=UTC)
    for minutes_ago, state in (
        (0.2, "succeeded"),
        (0.3, "failed"),
        (2.0, "succeeded"),
        (90, "failed"),
    ):
        job = add_job(conn, state)
        conn.execute(
            "UPDATE pgq.jobs SET finished_at = %s WHERE id = %s",
            (now - timedelta(minutes=minutes_ago), job),
        )
    buckets = queries.throughput(conn, 60, 60, now=now)
    assert len(buckets) == 60
    assert buckets[-1].start == datetime(2026, 1, 1, 12, 30, tzinfo=UTC)
    assert (buckets[-1].succeeded, buckets[-1].failed) == (1, 1)
    assert (buckets[-3].succeeded, buckets[-3].failed) == (1, 0)  # 12:28
    assert sum(b.succeeded + b.failed for b in buckets) == 3  # 90 minutes ago is outside
    day = queries.throughput(conn, 3600, 24, now=now)
    assert (day[-2].succeeded, day[-2].failed) == (0, 1)  # 11:00, the job of 90 minutes ago
    assert sum(b.succeeded + b.failed for b in day) == 4


def test_jobs_page_is_newest_first_and_pages_by_id(conn: Conn) -> None:
    ids = [add_job(conn, "succeeded") for _ in range(7)]
    first = queries.list_jobs(conn, queries.JobFilter(), limit=3)
    assert [j.id for j in first.jobs] == ids[::-1][:3]
    assert first.next_before == ids[4]
    second = queries.list_jobs(conn, queries.JobFilter(), before=first.next_before, limit=3)
    assert [j.id for j in second.jobs] == ids[::-1][3:6]
    last = queries.list_jobs(conn, queries.JobFilter(), before=second.next_before, limit=3)
    assert [j.id for j in last.jobs] == [ids[0]]
    assert last.next_before is None


def test_jobs_page_filters_by_state_queue_and_task(conn: Conn) -> None:
    seeded = seed_every_state(conn)
    failed = queries.list_jobs(conn, queries.JobFilter(state="failed"))
    assert [j.id for j in failed.jobs] == [seeded.secret_job, seeded.failed]
    assert failed.jobs[1].last_error == "card declined"
    charge = queries.list_jobs(conn, queries.JobFilter(task="tests.web.charge"))
    assert [j.id for j in charge.jobs] == [seeded.cancelled, seeded.failed]
    mail = queries.list_jobs(conn, queries.JobFilter(queue="mail", state="running"))
    assert [j.id for j in mail.jobs] == [seeded.running]


def test_empty_table_gives_an_empty_page(conn: Conn) -> None:
    page = queries.list_jobs(conn, queries.JobFilter())
    assert page.jobs == [] and page.next_before is None


def test_a_rare_match_is_searched_in_bounded_windows(
    conn: Conn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queries, "SCAN_WINDOW", 10)
    monkeypatch.setattr(queries, "SCAN_WINDOWS_MAX", 2)
    rare = add_job(conn, "failed", task="tests.web.rare")
    conn.execute(
        "INSERT INTO pgq.jobs (queue, task) SELECT 'default', 'tests.web.common' "
        "FROM generate_series(1, 50)"
    )
    page = queries.list_jobs(conn, queries.JobFilter(task="tests.web.rare"))
    # 51 jobs, ids 1..51: the first page reads ids 32..51 and stops there.
    assert page.jobs == [] and page.searched_to == 32 and page.next_before == 32
    older = queries.list_jobs(conn, queries.JobFilter(task="tests.web.rare"), before=32)
    assert older.searched_to == 12
    oldest = queries.list_jobs(conn, queries.JobFilter(task="tests.web.rare"), before=12)
    assert [j.id for j in oldest.jobs] == [rare] and oldest.next_before is None


@pytest.mark.parametrize(
    ("params", "error_type"),
    [
        ({"state": "done"}, OptionError),
        ({"queue": "bad queue!"}, QueueNameError),
        ({"task": "x" * 300}, TaskNameError),
    ],
)
def test_a_bad_filter_names_the_value(params: dict[str, str], error_type: type) -> None:
    with pytest.raises(error_type):
        queries.JobFilter.parse(params)


def test_job_detail_has_args_errors_and_lease_in_database_time(conn: Conn) -> None:
    seeded = seed_every_state(conn)
    failed = queries.get_job(conn, seeded.failed)
    assert failed is not None
    assert failed.args == {"order": 3}
    assert [e.attempt for e in failed.errors] == [1, 2, 3]
    assert failed.errors[0].message == "card declined"
    assert failed.errors[0].traceback and "ValueError" in failed.errors[0].traceback
    assert failed.lease_left_seconds is None
    running = queries.get_job(conn, seeded.running)
    assert running is not None and running.worker_id == "worker-1"
    assert running.lease_left_seconds is not None and 0 < running.lease_left_seconds <= 30
    assert queries.get_job(conn, 10**12) is None
    with pytest.raises(OptionError):
        queries.get_job(conn, 0)


def test_job_detail_shows_a_column_a_later_migration_adds(pg_server: devdb.Server) -> None:
    # Another capability (results, workflows) adds columns; the page reads the whole row.
    with devdb.scratch_database(pg_server, prefix="pgq_webcols") as url:
        migrate.upgrade(url)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "ALTER TABLE pgq.jobs ADD COLUMN IF NOT EXISTS result jsonb, "
                "ADD COLUMN batch_id bigint"
            )
            job = add_job(conn, "succeeded")
            conn.execute(
                "UPDATE pgq.jobs SET result = '{\"total\": 7}', batch_id = 12 WHERE id = %s",
                (job,),
            )
            detail = queries.get_job(conn, job)
    assert detail is not None
    assert detail.has_result and detail.result == {"total": 7}
    assert detail.other["batch_id"] == 12


def test_failures_are_grouped_by_task_kind_and_message(conn: Conn) -> None:
    seeded = seed_every_state(conn)
    add_job(conn, "succeeded", task="tests.web.charge", errors=[error(1, "card declined")])
    groups = queries.failure_groups(conn)
    charge = next(g for g in groups if g.task == "tests.web.charge")
    assert (charge.kind, charge.message) == ("ValueError", "card declined")
    assert (charge.errors, charge.jobs, charge.failed_now) == (4, 2, 1)
    timeout = next(g for g in groups if g.kind == "TimeoutError")
    assert (timeout.jobs, timeout.failed_now, timeout.last_job_id) == (1, 0, seeded.retrying)
    assert [g.task for g in queries.failure_groups(conn, queue="mail")] == []


def test_the_overview_shows_waiting_jobs_and_paused_queues(conn: Conn) -> None:
    seed_every_state(conn)
    pgq.chain(pgq.JobSpec("tests.web.a"), pgq.JobSpec("tests.web.b")).enqueue(conn)
    limits.pause_queue(conn, "mail", reason="provider down")
    limits.pause_queue(conn, "empty")  # a paused queue without jobs is listed too
    by_queue = {q.queue: q for q in queries.overview(conn).queues}
    assert by_queue["default"].waiting == 1 and not by_queue["default"].paused
    assert by_queue["mail"].paused and by_queue["mail"].pause_reason == "provider down"
    assert by_queue["empty"].paused and by_queue["empty"].ready == 0


def test_a_workflow_lists_its_members_as_a_tree(conn: Conn) -> None:
    flow = pgq.chain(
        pgq.JobSpec("tests.web.encode"),
        pgq.group([pgq.JobSpec("tests.web.thumb", {"size": s}) for s in (1, 2)]),
        pgq.JobSpec("tests.web.notify"),
    ).enqueue(conn)
    encode, thumb1, thumb2, notify = flow.job_ids
    detail = queries.get_workflow(conn, flow.id)
    assert detail is not None and flow.id == encode
    assert [(m.id, m.depth, m.parent_ids) for m in detail.members] == [
        (encode, 0, []),
        (thumb1, 1, [encode]),
        (thumb2, 1, [encode]),
        (notify, 2, [thumb1, thumb2]),
    ]
    assert detail.counts["queued"] == 1 and detail.counts["waiting"] == 3
    live = queries.live_workflows(conn)
    assert [(w.workflow_id, w.total, w.waiting, w.queued) for w in live] == [(encode, 4, 3, 1)]
    assert queries.get_workflow(conn, notify + 1000) is None
    job = queries.get_job(conn, thumb1)
    assert job is not None and job.workflow_id == encode
    assert [p.id for p in job.parents] == [encode] and [c.id for c in job.children] == [notify]


@pgq.task(registry=Registry(), queue="reports")
def nightly_report(kind: str) -> None:
    pass


def test_schedules_show_their_ticks_last_job_and_overdue(conn: Conn) -> None:
    conn.execute("TRUNCATE pgq.schedules")
    every_minute = schedule(
        "minutely", task=nightly_report, every=timedelta(minutes=1), args={"kind": "m"},
        grace=timedelta(minutes=5), registry=ScheduleRegistry(),
    )  # fmt: skip
    scheduler.sync(conn, [every_minute])
    conn.execute("UPDATE pgq.schedules SET active_since = now() - interval '1 hour'")
    ticked = scheduler.run_once(conn, [every_minute])
    (row,) = queries.schedules(conn)
    assert (row.name, row.task, row.queue, row.active) == (
        "minutely",
        nightly_report.name,
        "reports",
        True,
    )
    assert row.last_job_id is not None and row.last_outcome == "queued"
    assert row.next_tick_at is not None and row.next_tick_at > ticked.now - timedelta(minutes=1)
    assert row.overdue  # active for an hour, never succeeded, grace 5 minutes
    assert row.grace_seconds == 300


def test_workers_with_their_running_jobs_and_orphaned_queued_jobs(conn: Conn) -> None:
    conn.execute("TRUNCATE pgq.workers")
    seeded = seed_every_state(conn)  # its running job is held by worker-1
    add_worker(conn, "worker-1")
    add_worker(conn, "worker-gone", seen_ago=120)
    page = queries.workers(conn)
    assert [(w.id, w.alive) for w in page.workers] == [("worker-1", True), ("worker-gone", False)]
    assert [j.id for j in page.running["worker-1"]] == [seeded.running]
    assert page.running["worker-gone"] == [] and page.unregistered == []
    orphaned = {(o.queue, o.task): o.queued for o in page.orphaned}
    assert orphaned[("default", "tests.web.task")] == 2  # no worker serves default
    assert ("mail", "tests.web.task") in orphaned  # worker-1 serves mail, not this task


@pgq.task(registry=Registry(), queue="stripe", concurrency_limit=1, concurrency_key="stripe")
def charge(order: int) -> None:
    pass


def test_limits_show_paused_queues_and_each_keys_use(conn: Conn) -> None:
    conn.execute("TRUNCATE pgq.concurrency_keys")
    for order in range(4):
        charge.enqueue(conn, order=order)
    for _ in range(2):  # a worker's promotion passes: the key's row, then its free slot
        store.fetch(conn, store.unblock_jobs(limit=100))
    limits.pause_queue(conn, "stripe", reason="card provider down")
    page = queries.limits_page(conn)
    assert [(p.queue, p.reason) for p in page.paused] == [("stripe", "card provider down")]
    (key,) = page.keys
    assert (key.kind, key.key, key.max, key.in_use, key.waiting) == (
        "concurrency",
        "stripe",
        1,
        1,
        3,
    )
    blocked = queries.list_jobs(conn, queries.JobFilter(state="blocked"))
    assert len(blocked.jobs) == 3
    detail = queries.get_job(conn, blocked.jobs[0].id)
    assert detail is not None and detail.concurrency_key == "stripe"
