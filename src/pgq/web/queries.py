"""The dashboard's query layer: what each page shows, read with cheap statements.

Every function takes a psycopg connection and returns plain dataclasses; nothing here
knows about HTTP or HTML, so the tests call these directly. No statement counts or skips
over the whole job table: queue figures come from the ``pgq.queue_stats`` view, charts
from the recently finished rows, the job list is keyset-paginated within bounded id
windows, failures come from the ``pgq.recent_failures`` view.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import psycopg

from pgq import admin, limits, options, store, worker_registry
from pgq.errors import ValidationError
from pgq.scheduler import ScheduleStatus, schedule_status
from pgq.web import store as web_store

Connection = psycopg.Connection[Any]

PAGE_SIZE_DEFAULT = 50
# A jobs page reads at most SCAN_WINDOW ids per statement and SCAN_WINDOWS_MAX statements:
# a filter whose matches are rare (a task that ran once last week) costs a bounded scan,
# and the page then offers to search older ids rather than reading the whole table.
SCAN_WINDOW = 100_000
SCAN_WINDOWS_MAX = 4
FAILURE_GROUPS_LIMIT = 200
WORKFLOWS_LIMIT = 100
WORKFLOW_MEMBERS_LIMIT = 1000  # a workflow page lists at most this many jobs
RELATIVES_LIMIT = 100  # parents, and children, listed on a job's page
RUNNING_LIMIT = 1000  # running jobs listed on the workers page
LIMIT_KEYS_LIMIT = 500  # concurrency keys listed on the limits page
# The charts: the last hour by minute, the last day by hour.
HOUR_CHART = (60, 60)  # bucket width in seconds, buckets
DAY_CHART = (3600, 24)


@dataclass(frozen=True, slots=True)
class Bucket:
    """Jobs that succeeded and failed in the time bucket starting at ``start``."""

    start: datetime
    succeeded: int
    failed: int


@dataclass(frozen=True, slots=True)
class QueueRow:
    """One queue on the overview: the ``pgq.queue_stats`` view's figures and its pause."""

    queue: str
    ready: int
    scheduled: int
    waiting: int
    running: int
    failed: int
    succeeded_last_hour: int
    oldest_ready_seconds: float | None
    per_minute_last_5m: float
    paused_at: datetime | None
    pause_reason: str | None

    @property
    def paused(self) -> bool:
        return self.paused_at is not None


@dataclass(frozen=True, slots=True)
class Overview:
    """The overview page: one row per queue, and the throughput of the last hour and day."""

    queues: list[QueueRow]
    last_hour: list[Bucket]
    last_day: list[Bucket]


@dataclass(frozen=True, slots=True)
class JobFilter:
    """The jobs page's filters, validated; None means any."""

    state: str | None = None
    queue: str | None = None
    task: str | None = None

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> JobFilter:
        """The filter from a page's query parameters (empty means any).

        Raises ValidationError (an OptionError or QueueNameError) naming the bad value."""
        state = params.get("state") or None
        queue = params.get("queue") or None
        task = params.get("task") or None
        return cls(
            state=admin.check_state(state) if state is not None else None,
            queue=options.check_queue(queue) if queue is not None else None,
            task=options.check_task_name(task) if task is not None else None,
        )

    def params(self) -> dict[str, str]:
        """The filter as query parameters (only those set)."""
        pairs = {"state": self.state, "queue": self.queue, "task": self.task}
        return {name: value for name, value in pairs.items() if value is not None}


@dataclass(frozen=True, slots=True)
class JobRow:
    """One row of the jobs page."""

    id: int
    queue: str
    task: str
    state: str
    priority: int
    attempts: int
    max_attempts: int
    run_at: datetime
    created_at: datetime
    finished_at: datetime | None
    worker_id: str | None
    last_error: str | None


@dataclass(frozen=True, slots=True)
class JobPage:
    """One page of jobs, newest first.

    ``next_before`` is where the next (older) page starts, None at the oldest job.
    ``searched_to`` is the lowest id this page looked at: when the page is not full and
    ``next_before`` is set, no job between ``searched_to`` and ``before`` matched.
    """

    jobs: list[JobRow]
    before: int | None
    next_before: int | None
    searched_to: int | None


@dataclass(frozen=True, slots=True)
class Relative:
    """A job a job waits for (a parent) or that waits for it (a child)."""

    id: int
    task: str
    state: str


@dataclass(frozen=True, slots=True)
class JobError:
    """One failed attempt of a job, as the worker or the reaper recorded it."""

    attempt: int | None
    at: datetime | None
    kind: str | None
    message: str | None
    traceback: str | None
    worker_id: str | None


# The columns the detail page lays out itself; any other column (one a later migration
# adds) is listed as it is.
KNOWN_COLUMNS = frozenset(
    {
        *("id", "queue", "task", "state", "priority", "attempts", "max_attempts", "run_at"),
        *("created_at", "started_at", "finished_at", "worker_id", "lease_token"),
        *("lease_expires_at", "cancel_requested", "unique_key", "args", "errors", "result"),
        *("workflow_id", "parents_pending", "has_dependents", "waited", "concurrency_key"),
    }
)


@dataclass(frozen=True, slots=True)
class JobDetail:
    """Everything about one job, with the database's clock at the time it was read."""

    id: int
    queue: str
    task: str
    state: str
    priority: int
    attempts: int
    max_attempts: int
    run_at: datetime
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    worker_id: str | None
    lease_token: int
    lease_expires_at: datetime | None
    cancel_requested: bool
    unique_key: str | None
    args: Any
    errors: list[JobError]
    now: datetime
    has_result: bool = False
    result: Any = None
    workflow_id: int | None = None
    concurrency_key: str | None = None
    parents: list[Relative] = field(default_factory=list)
    children: list[Relative] = field(default_factory=list)
    other: dict[str, Any] = field(default_factory=dict)

    @property
    def lease_left_seconds(self) -> float | None:
        """Seconds until the lease lapses (negative: lapsed), in database time."""
        if self.state != "running" or self.lease_expires_at is None:
            return None
        return (self.lease_expires_at - self.now).total_seconds()


@dataclass(frozen=True, slots=True)
class FailureGroup:
    """The last 24 hours' errors of one task with one exception type and message."""

    task: str
    kind: str | None
    message: str | None
    errors: int
    jobs: int
    failed_now: int
    last_at: datetime
    last_job_id: int


def overview(conn: Connection, *, now: datetime | None = None) -> Overview:
    """The queues (``pgq.queue_stats``) and the throughput charts' buckets."""
    return Overview(
        queues=[QueueRow(*row) for row in store.fetch(conn, web_store.select_queues())],
        last_hour=throughput(conn, *HOUR_CHART, now=now),
        last_day=throughput(conn, *DAY_CHART, now=now),
    )


def throughput(
    conn: Connection, width: int, buckets: int, *, now: datetime | None = None
) -> list[Bucket]:
    """Succeeded and failed jobs in each of the last ``buckets`` buckets of ``width`` seconds."""
    statement = web_store.select_throughput(width=width, buckets=buckets, now=now)
    return [Bucket(*row) for row in store.fetch(conn, statement)]


def list_jobs(
    conn: Connection,
    job_filter: JobFilter,
    *,
    before: int | None = None,
    limit: int = PAGE_SIZE_DEFAULT,
) -> JobPage:
    """The newest ``limit`` jobs with an id below ``before`` (None: from the newest job)
    that match ``job_filter``; at most ``SCAN_WINDOWS_MAX * SCAN_WINDOW`` ids are read."""
    if before is None:
        newest = store.fetch(conn, web_store.select_job_id_max())[0][0]
        if newest is None:
            return JobPage(jobs=[], before=None, next_before=None, searched_to=None)
        before = newest + 1
    else:
        before = admin.check_job_id(before)
    jobs: list[JobRow] = []
    upper = before
    for _ in range(SCAN_WINDOWS_MAX):
        floor = max(1, upper - SCAN_WINDOW)
        jobs += _jobs_between(conn, job_filter, upper, floor, limit + 1 - len(jobs))
        upper = floor
        if len(jobs) > limit or floor == 1:
            break
    if len(jobs) > limit:
        jobs = jobs[:limit]
        return JobPage(jobs=jobs, before=before, next_before=jobs[-1].id, searched_to=None)
    return JobPage(
        jobs=jobs, before=before, next_before=upper if upper > 1 else None, searched_to=upper
    )


def _jobs_between(
    conn: Connection, job_filter: JobFilter, before: int, floor: int, limit: int
) -> list[JobRow]:
    statement = web_store.select_jobs_page(
        before=before,
        floor=floor,
        state=job_filter.state,
        queue=job_filter.queue,
        task=job_filter.task,
        limit=limit,
    )
    return [JobRow(*row) for row in store.fetch(conn, statement)]


def get_job(conn: Connection, job_id: int) -> JobDetail | None:
    """The job with id ``job_id`` and all its errors (oldest first), or None.

    Raises OptionError when ``job_id`` is not a positive 64-bit integer."""
    rows = store.fetch(conn, web_store.select_job(job_id=admin.check_job_id(job_id)))
    if not rows:
        return None
    row, now = rows[0]
    relatives = store.fetch(
        conn, web_store.select_job_relatives(job_id=job_id, limit=RELATIVES_LIMIT)
    )
    return JobDetail(
        id=row["id"],
        queue=row["queue"],
        task=row["task"],
        state=row["state"],
        priority=row["priority"],
        attempts=row["attempts"],
        max_attempts=row["max_attempts"],
        run_at=_time(row["run_at"]),
        created_at=_time(row["created_at"]),
        started_at=_time_or_none(row["started_at"]),
        finished_at=_time_or_none(row["finished_at"]),
        worker_id=row["worker_id"],
        lease_token=row["lease_token"],
        lease_expires_at=_time_or_none(row["lease_expires_at"]),
        cancel_requested=row["cancel_requested"],
        unique_key=row["unique_key"],
        args=row["args"],
        errors=[_job_error(error) for error in row["errors"] or []],
        now=now,
        has_result="result" in row,
        result=row.get("result"),
        workflow_id=row.get("workflow_id"),
        concurrency_key=row.get("concurrency_key"),
        parents=[Relative(*r[1:]) for r in relatives if r[0] == "parent"],
        children=[Relative(*r[1:]) for r in relatives if r[0] == "child"],
        other={name: value for name, value in row.items() if name not in KNOWN_COLUMNS},
    )


def failure_groups(
    conn: Connection, *, queue: str | None = None, limit: int = FAILURE_GROUPS_LIMIT
) -> list[FailureGroup]:
    """The last 24 hours' errors grouped by task, exception type and message, newest first.

    Raises QueueNameError for a bad ``queue`` name."""
    queue = options.check_queue(queue) if queue is not None else None
    statement = web_store.select_failure_groups(queue=queue, limit=limit)
    return [FailureGroup(*row) for row in store.fetch(conn, statement)]


@dataclass(frozen=True, slots=True)
class WorkflowProgress:
    """An unfinished workflow's members counted by state (the ``pgq.workflow_progress``
    view); its id is the id of its first job."""

    workflow_id: int
    total: int
    waiting: int
    queued: int
    running: int
    succeeded: int
    failed: int
    cancelled: int
    created_at: datetime

    @property
    def done(self) -> int:
        return self.succeeded + self.failed + self.cancelled


@dataclass(frozen=True, slots=True)
class WorkflowMember:
    """One job of a workflow, with the jobs it waits for and its depth in the tree (0: it
    waits for nothing)."""

    id: int
    queue: str
    task: str
    state: str
    attempts: int
    max_attempts: int
    created_at: datetime
    finished_at: datetime | None
    last_error: str | None
    parent_ids: list[int]
    depth: int = 0


@dataclass(frozen=True, slots=True)
class WorkflowDetail:
    """A workflow's jobs, oldest first, and their counts by state."""

    workflow_id: int
    members: list[WorkflowMember]
    counts: dict[str, int]
    truncated: bool


def live_workflows(conn: Connection, *, limit: int = WORKFLOWS_LIMIT) -> list[WorkflowProgress]:
    """The newest ``limit`` workflows that still have a waiting, queued or running job."""
    statement = web_store.select_workflows_live(limit=limit)
    return [WorkflowProgress(*row) for row in store.fetch(conn, statement)]


def get_workflow(conn: Connection, workflow_id: int) -> WorkflowDetail | None:
    """The workflow whose first job is ``workflow_id``, or None.

    Raises OptionError when ``workflow_id`` is not a positive 64-bit integer."""
    statement = web_store.select_workflow_members(
        workflow_id=admin.check_job_id(workflow_id), limit=WORKFLOW_MEMBERS_LIMIT + 1
    )
    rows = store.fetch(conn, statement)
    if not rows:
        return None
    members = [WorkflowMember(*row) for row in rows[:WORKFLOW_MEMBERS_LIMIT]]
    depths: dict[int, int] = {}
    for index, member in enumerate(members):  # oldest first: parents come before children
        depth = 1 + max((depths.get(p, 0) for p in member.parent_ids), default=-1)
        depths[member.id] = depth
        members[index] = replace(member, depth=depth)
    counts = {state: 0 for state in admin.JOB_STATES}
    for member in members:
        counts[member.state] = counts.get(member.state, 0) + 1
    return WorkflowDetail(
        workflow_id=workflow_id,
        members=members,
        counts=counts,
        truncated=len(rows) > WORKFLOW_MEMBERS_LIMIT,
    )


def schedules(conn: Connection) -> list[ScheduleStatus]:
    """Every schedule, active ones first, by name (one row per schedule: no job scan): the
    rows `pgq schedules` prints."""
    return schedule_status(conn)


@dataclass(frozen=True, slots=True)
class RunningJob:
    """A job running now, with how long it has run and how long its lease has left."""

    id: int
    queue: str
    task: str
    worker_id: str | None
    attempt: int
    started_at: datetime | None
    running_seconds: float | None
    lease_left_seconds: float | None
    cancel_requested: bool


@dataclass(frozen=True, slots=True)
class WorkersPage:
    """Every registered worker with the jobs it runs, the running jobs of no registered
    worker, and the queued jobs no live worker serves."""

    workers: list[worker_registry.WorkerStatus]
    running: dict[str, list[RunningJob]]
    unregistered: list[RunningJob]
    orphaned: list[worker_registry.OrphanedJobs]
    truncated: bool


def workers(conn: Connection) -> WorkersPage:
    """The workers page: the registry (``pgq.worker_status``), the running jobs
    (``pgq.running_jobs``) by worker, and ``pgq.orphaned_jobs``."""
    registered = worker_registry.list_workers(conn)
    rows = store.fetch(conn, web_store.select_running(limit=RUNNING_LIMIT + 1))
    running: dict[str, list[RunningJob]] = {w.id: [] for w in registered}
    unregistered = []
    for job in (RunningJob(*row) for row in rows[:RUNNING_LIMIT]):
        if job.worker_id in running:
            running[job.worker_id].append(job)
        else:
            unregistered.append(job)
    return WorkersPage(
        workers=registered,
        running=running,
        unregistered=unregistered,
        orphaned=worker_registry.orphaned_jobs(conn),
        truncated=len(rows) > RUNNING_LIMIT,
    )


@dataclass(frozen=True, slots=True)
class FlowLimit:
    """One concurrency or rate limit (``kind``): its maximum (jobs at once, or starts per
    ``period_seconds``), its use now and the jobs waiting blocked on it."""

    kind: str
    key: str
    max: int
    period_seconds: float | None
    in_use: int
    waiting: int


@dataclass(frozen=True, slots=True)
class LimitsPage:
    """The limits page: paused queues, and the limits in use (those with waiting jobs
    first)."""

    paused: list[limits.QueuePause]
    keys: list[FlowLimit]
    truncated: bool


def limits_page(conn: Connection) -> LimitsPage:
    """Paused queues (``pgq.queue_pauses``) and each limit's use (``pgq.flow_limits``)."""
    rows = store.fetch(conn, web_store.select_limits(limit=LIMIT_KEYS_LIMIT + 1))
    return LimitsPage(
        paused=limits.paused_queues(conn),
        keys=[FlowLimit(*row) for row in rows[:LIMIT_KEYS_LIMIT]],
        truncated=len(rows) > LIMIT_KEYS_LIMIT,
    )


def _job_error(error: Any) -> JobError:
    if not isinstance(error, dict):  # written by something else than pgq: show it as text
        return JobError(None, None, None, str(error), None, None)
    attempt = error.get("attempt")
    at = error.get("at")
    return JobError(
        attempt=attempt if isinstance(attempt, int) else None,
        at=_parse_time(at) if isinstance(at, str) else None,
        kind=_text(error.get("kind")),
        message=_text(error.get("message")),
        traceback=_text(error.get("traceback")),
        worker_id=_text(error.get("worker_id")),
    )


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _parse_time(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _time(text: str) -> datetime:
    parsed = _parse_time(text)
    if parsed is None:
        raise ValidationError(f"the database returned {text!r}, which is not a time")
    return parsed


def _time_or_none(text: str | None) -> datetime | None:
    return None if text is None else _time(text)
