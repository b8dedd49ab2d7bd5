"""The dashboard's statements: one thin function per ``sql/dashboard_*.sql`` file.

Like ``pgq.store``, no policy: each function names its statement and binds its
parameters; ``pgq.store.fetch`` runs it. The dashboard also runs ``pgq.store``'s own
statements through ``pgq.admin`` (queue statistics, retry, cancel).
"""

from __future__ import annotations

from typing import Any

from pgq.store import Statement


def select_throughput(*, width: int, buckets: int, now: Any = None) -> Statement:
    """``(start, succeeded, failed)`` for each of the last ``buckets`` buckets of ``width``
    seconds, oldest first, the current (partial) bucket last."""
    return Statement("dashboard_throughput", locals())


def select_job_id_max() -> Statement:
    """``(max_id,)``: the newest job id, NULL when there is no job."""
    return Statement("dashboard_job_id_max", {})


def select_jobs_page(
    *,
    before: int,
    floor: int,
    state: str | None,
    queue: str | None,
    task: str | None,
    limit: int,
) -> Statement:
    """Jobs with ``before > id >= floor`` matching the filters (None = any), newest first:
    ``(id, queue, task, state, priority, attempts, max_attempts, run_at, created_at,
    finished_at, worker_id, last_error)``."""
    return Statement("dashboard_jobs_page", locals())


def select_job(*, job_id: int) -> Statement:
    """``(row as a JSON object, now())`` of one job, or no row."""
    return Statement("dashboard_job_get", locals())


def select_failure_groups(*, queue: str | None, limit: int) -> Statement:
    """The last 24 hours' errors grouped: ``(task, kind, message, errors, jobs, failed_now,
    last_at, last_job_id)``, newest group first."""
    return Statement("dashboard_failures_grouped", locals())


def setup_session() -> Statement:
    """The settings of each dashboard connection (no JIT); a session SET, so never sent
    behind PgBouncer in transaction pooling mode."""
    return Statement("dashboard_session_setup", {})


def select_queues() -> Statement:
    """``(queue, ready, scheduled, waiting, running, failed, succeeded_last_hour,
    oldest_ready_seconds, per_minute_last_5m, paused_at, pause_reason)`` per queue."""
    return Statement("dashboard_queues", {})


def select_workflows_live(*, limit: int) -> Statement:
    """The newest unfinished workflows: ``(workflow_id, total, waiting, queued, running,
    succeeded, failed, cancelled, created_at)``."""
    return Statement("dashboard_workflows_live", locals())


def select_workflow_members(*, workflow_id: int, limit: int) -> Statement:
    """A workflow's jobs, oldest first: ``(id, queue, task, state, attempts, max_attempts,
    created_at, finished_at, last_error, parent_ids)``."""
    return Statement("dashboard_workflow_members", locals())


def select_job_relatives(*, job_id: int, limit: int) -> Statement:
    """``(relation, id, task, state)`` of a job's parents (relation 'parent') and children
    ('child')."""
    return Statement("dashboard_job_relatives", locals())


def select_running(*, limit: int) -> Statement:
    """``(id, queue, task, worker_id, attempt, started_at, running_seconds,
    lease_left_seconds, cancel_requested)`` of the running jobs, longest running first."""
    return Statement("dashboard_running_select", locals())


def select_limits(*, limit: int) -> Statement:
    """``(kind, key, max, period_seconds, in_use, waiting)`` per concurrency or rate key
    (the ``pgq.flow_limits`` view), keys with waiting jobs first."""
    return Statement("dashboard_limits", locals())
