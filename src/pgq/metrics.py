"""Prometheus metrics for a worker: ``pgq work --metrics-port 9464``.

Two sources feed one ``/metrics`` page:

- ``WorkerMetrics``, the worker's ``pgq.events.WorkerEvents``, counts what this
  process does: jobs started, how each attempt ended, durations, queue lag, lease losses.
  Its labels are ``queue`` and ``task`` only, so the number of series stays bounded (never
  a job id or an argument).
- ``QueueGauges`` reads the ready, scheduled and running jobs per queue, the orphaned jobs
  (queued where no live worker serves their task) and the registered workers from the
  database when Prometheus scrapes, on a short connection of its own with a connect and a
  statement timeout. These describe the whole database, so every worker reports the same
  values: aggregate them with ``max``, not ``sum``.

prometheus_client serves the page from its own thread; a scrape never runs on, or waits
for, the worker's event loop.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg

from pgq import store
from pgq.db import connect
from pgq.doctor import Health, Thresholds, judge, read_health
from pgq.errors import MissingExtraError, PgqError
from pgq.events import WorkerEvents
from pgq.runner import ClaimedJob

try:
    from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
    from prometheus_client import start_http_server as _start_http_server
    from prometheus_client.core import GaugeMetricFamily, Metric
    from prometheus_client.registry import Collector
except ImportError as exc:  # an optional dependency: say how to get it
    raise MissingExtraError(
        "pgq.metrics needs prometheus_client: pip install 'pgq-jobs[metrics]'"
    ) from exc

log = logging.getLogger("pgq.metrics")

ADDR_DEFAULT = "0.0.0.0"  # like every Prometheus exporter: scraped from other hosts
GAUGES_CONNECT_TIMEOUT_DEFAULT = 2  # seconds (libpq's smallest connect_timeout)
GAUGES_QUERY_TIMEOUT_DEFAULT = 2.0  # seconds
# Jobs run from milliseconds to hours; lag from milliseconds (a woken worker) to a backlog.
DURATION_BUCKETS_DEFAULT = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600
)  # fmt: skip
LAG_BUCKETS_DEFAULT = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
LOST_REMEMBERED = 10_000  # recent (job, lease token) pairs kept to count each loss once

LABELS = ("queue", "task")
# job_finished outcome -> help text of its counter, pgq_jobs_<outcome>_total
OUTCOMES = {
    "succeeded": "Attempts that succeeded.",
    "retried": "Attempts that failed and were scheduled to run again (Retry, an exception, "
    "a timeout).",
    "failed": "Attempts that failed the job for good (Fail, or the last attempt failed).",
    "snoozed": "Attempts that snoozed (run again later, not counted as an attempt).",
    "cancelled": "Running jobs stopped by an operator's cancel.",
    "released": "Jobs given back to the queue unfinished (shutdown, or the lease was lost).",
}


@dataclass(frozen=True, slots=True)
class _Series:
    """The labelled children of one (queue, task), looked up once, not per job."""

    started: Any
    outcomes: dict[str, Any]
    duration: Any
    lag: Any
    lease_lost: Any


class WorkerMetrics(WorkerEvents):
    """Counters and histograms of one worker process; pass it as ``Worker(events=...)``.

    ``registry`` defaults to prometheus_client's global registry (which also carries the
    process metrics); tests pass a ``CollectorRegistry()`` of their own.
    """

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        def counter(name: str, doc: str) -> Counter:
            return Counter(name, doc, LABELS, registry=registry)

        self._started = counter("pgq_jobs_started", "Jobs claimed by this worker (attempts begun).")
        self._outcomes = {o: counter(f"pgq_jobs_{o}", doc) for o, doc in OUTCOMES.items()}
        self._duration = Histogram(
            "pgq_job_duration_seconds",
            "Seconds an attempt ran, per outcome except released.",
            LABELS,
            buckets=DURATION_BUCKETS_DEFAULT,
            registry=registry,
        )
        self._lag = Histogram(
            "pgq_queue_lag_seconds",
            "Seconds from a job's run_at to its claim, in database time.",
            LABELS,
            buckets=LAG_BUCKETS_DEFAULT,
            registry=registry,
        )
        self._lease_lost = counter("pgq_lease_lost", "Jobs whose lease this worker lost.")
        self._series: dict[tuple[str, str], _Series] = {}
        self._lost: dict[tuple[int, int], None] = {}  # insertion-ordered set

    def jobs_claimed(self, jobs: list[ClaimedJob]) -> None:
        for job in jobs:
            series = self._series_of(job)
            series.started.inc()
            series.lag.observe(max(0.0, job.lag))

    def job_finished(self, job: ClaimedJob, outcome: str, seconds: float) -> None:
        series = self._series_of(job)
        series.outcomes[outcome].inc()
        if outcome != "released":  # a release is no finished attempt (often 0s, never run)
            series.duration.observe(seconds)

    def lease_lost(self, job: ClaimedJob) -> None:
        # The worker may learn of one loss twice (at a heartbeat, then when the outcome's
        # write is fenced out): count each (job, lease token) once.
        key = (job.id, job.lease_token)
        if key in self._lost:
            return
        self._lost[key] = None
        if len(self._lost) > LOST_REMEMBERED:
            del self._lost[next(iter(self._lost))]
        self._series_of(job).lease_lost.inc()

    def _series_of(self, job: ClaimedJob) -> _Series:
        key = (job.queue, job.task)
        series = self._series.get(key)
        if series is None:
            # Every counter of a new (queue, task) starts at 0, so rate() sees its first one.
            series = self._series[key] = _Series(
                started=self._started.labels(*key),
                outcomes={o: c.labels(*key) for o, c in self._outcomes.items()},
                duration=self._duration.labels(*key),
                lag=self._lag.labels(*key),
                lease_lost=self._lease_lost.labels(*key),
            )
        return series


class QueueGauges(Collector):
    """Ready, scheduled, running and waiting jobs per queue, orphaned jobs per queue and task, and
    the registered workers, read from the database at each scrape.

    Queues in ``queues`` are always reported (0 when they have no live job), so an alert on
    one never sees it vanish. When the database cannot be read within the timeouts, the
    queue gauges are left out and ``pgq_database_up`` is 0.
    """

    def __init__(
        self,
        database_url: str,
        queues: Sequence[str] = (),
        *,
        connect_timeout: int = GAUGES_CONNECT_TIMEOUT_DEFAULT,
        query_timeout: float = GAUGES_QUERY_TIMEOUT_DEFAULT,
    ) -> None:
        self._url = database_url
        self._queues = list(queues)
        self._connect_timeout = connect_timeout
        self._query_timeout = query_timeout
        self._lock = threading.Lock()  # one database read at a time, however many scrapers

    def describe(self) -> Iterable[Metric]:
        # Without describe(), registering would call collect() and query the database.
        return [*_gauge_families(), *_health_gauges(None), *_limit_gauges([])]

    def collect(self) -> Iterable[Metric]:
        families = _gauge_families()
        ready, scheduled, running, oldest, paused, orphaned, alive, stale = families[:8]
        *scheduling, up, waiting = families[8:]
        readings = self.read()
        up.add_metric([], 0 if readings is None else 1)
        if readings is None:
            return [up]
        counts = {queue: (0, 0, 0, None, False, 0) for queue in self._queues}
        counts.update({row[0]: row[1:] for row in readings.queues})
        for queue, (
            n_ready,
            n_scheduled,
            n_running,
            oldest_s,
            is_paused,
            n_waiting,
        ) in counts.items():
            ready.add_metric([queue], n_ready)
            scheduled.add_metric([queue], n_scheduled)
            running.add_metric([queue], n_running)
            oldest.add_metric([queue], oldest_s or 0.0)
            paused.add_metric([queue], 1 if is_paused else 0)
            waiting.add_metric([queue], n_waiting)
        for queue, task, queued, *_ in readings.orphaned:
            orphaned.add_metric([queue, task], queued)
        alive.add_metric([], readings.workers[0])
        stale.add_metric([], readings.workers[1])
        last_success, last_tick, overdue = scheduling
        for name, success_at, tick_at, is_overdue in readings.schedules:
            last_success.add_metric([name], success_at)
            last_tick.add_metric([name], tick_at)
            overdue.add_metric([name], 1 if is_overdue else 0)
        return [*families, *_health_gauges(readings.health), *_limit_gauges(readings.limits)]

    def read(self) -> Readings | None:
        """What the gauges show, read in one transaction; None (logged) if unreadable."""
        # A scrape still stuck on the network must not pile up connections behind it.
        if not self._lock.acquire(timeout=self._connect_timeout + self._query_timeout):
            log.warning("metrics: an earlier scrape is still reading the database; skipped")
            return None
        try:
            return self._fetch()
        except (PgqError, psycopg.Error) as exc:
            log.warning("metrics: cannot read the queue gauges: %s", " ".join(str(exc).split()))
            return None
        finally:
            self._lock.release()

    def _fetch(self) -> Readings:
        timeout_ms = max(1, int(self._query_timeout * 1000))
        with (
            connect(
                self._url,
                autocommit=True,
                connect_timeout=self._connect_timeout,
                application_name="pgq metrics",
            ) as conn,
            conn.transaction(),
        ):
            store.fetch(conn, store.set_statement_timeout(milliseconds=timeout_ms))
            return Readings(
                queues=store.fetch(conn, store.select_queue_counts()),
                orphaned=store.fetch(conn, store.select_orphaned_jobs()),
                workers=store.fetch(conn, store.select_worker_counts())[0],
                health=read_health(conn),
                schedules=store.fetch(conn, store.select_schedule_gauges()),
                limits=store.fetch(conn, store.select_flow_limits(limit=LIMIT_SERIES_MAX)),
            )


@dataclass(frozen=True, slots=True)
class Readings:
    """One scrape's rows: ``sql/queue_counts_select.sql``, ``orphaned_jobs_select.sql``,
    ``worker_counts_select.sql`` (one row), the ``pgq.health`` row and
    ``schedule_gauges_select.sql``."""

    queues: list[store.Row]
    orphaned: list[store.Row]
    workers: store.Row
    health: Health
    schedules: list[store.Row] = field(default_factory=list)
    limits: list[store.Row] = field(default_factory=list)  # sql/flow_limits_select.sql


# Keys a scrape reports limits for: the ones with the most jobs waiting. A per-customer key
# could otherwise make a series per customer.
LIMIT_SERIES_MAX = 100


def _limit_gauges(rows: list[store.Row]) -> list[GaugeMetricFamily]:
    """The pgq.flow_limits rows as gauges labelled kind (concurrency, rate) and key."""
    labels = ("kind", "key")
    most = GaugeMetricFamily(
        "pgq_limit_max",
        "A limit: jobs of the key that may hold a slot at once, or starts per period.",
        labels=labels,
    )
    in_use = GaugeMetricFamily(
        "pgq_limit_in_use",
        "Jobs of the key holding a slot (concurrency), or starts in the last period (rate).",
        labels=labels,
    )
    waiting = GaugeMetricFamily(
        "pgq_limit_waiting_jobs", "Jobs of the key waiting blocked on its limit.", labels=labels
    )
    for kind, key, max_, _period, used, n_waiting in rows:
        most.add_metric([kind, key], max_)
        in_use.add_metric([kind, key], used)
        waiting.add_metric([kind, key], n_waiting)
    return [most, in_use, waiting]


def _gauge_families() -> list[GaugeMetricFamily]:
    def gauge(name: str, doc: str, labels: Sequence[str] = ("queue",)) -> GaugeMetricFamily:
        return GaugeMetricFamily(name, doc, labels=labels)

    return [
        gauge("pgq_queue_ready_jobs", "Queued jobs due now (run_at <= now()), all workers."),
        gauge("pgq_queue_scheduled_jobs", "Queued jobs due later (scheduled or in backoff)."),
        gauge("pgq_queue_running_jobs", "Jobs held by a worker now, all workers."),
        gauge(
            "pgq_queue_oldest_ready_seconds",
            "Seconds the oldest ready job has waited past its run_at; 0 when none is ready.",
        ),
        gauge("pgq_queue_paused", "1 while the queue is paused (pgq pause), else 0."),
        gauge(
            "pgq_orphaned_jobs",
            "Queued jobs no live worker serves (none claims from the queue with the task "
            "registered); they wait until one starts.",
            ("queue", "task"),
        ),
        gauge("pgq_workers_alive", "Registered workers seen within their stale bound.", ()),
        gauge(
            "pgq_workers_stale",
            "Registered workers unseen past their bound, not yet removed by the reaper.",
            (),
        ),
        gauge(
            "pgq_schedule_last_success_timestamp_seconds",
            "Unix time of the schedule's last successful run (0: never), active schedules.",
            ("schedule",),
        ),
        gauge(
            "pgq_schedule_last_tick_timestamp_seconds",
            "Unix time of the schedule's last tick enqueued (0: none yet).",
            ("schedule",),
        ),
        gauge(
            "pgq_schedule_overdue",
            "1 while the schedule has had no success within its grace (default two periods).",
            ("schedule",),
        ),
        gauge("pgq_database_up", "1 when this scrape could read the queue gauges, else 0.", ()),
        gauge(
            "pgq_queue_waiting_jobs",
            "Workflow jobs waiting for their parents (never claimed until released).",
        ),
    ]


def _health_gauges(health: Health | None) -> list[GaugeMetricFamily]:
    """The ``pgq.health`` gauges (what ``pgq doctor`` judges), filled from ``health``."""
    h = health
    plain = {
        "pgq_jobs_live_rows": ("Live rows in pgq.jobs (statistics).", "jobs_live_rows"),
        "pgq_jobs_dead_rows": (
            "Dead row versions in pgq.jobs, not yet removed by a vacuum (statistics).",
            "jobs_dead_rows",
        ),
        "pgq_jobs_changed_since_analyze": (
            "Rows of pgq.jobs changed since its last ANALYZE.",
            "jobs_changed_since_analyze",
        ),
        "pgq_jobs_vacuum_age_seconds": (
            "Seconds since pgq.jobs was last vacuumed (absent: never).",
            "vacuum_seconds_ago",
        ),
        "pgq_jobs_analyze_age_seconds": (
            "Seconds since pgq.jobs was last analyzed (absent: never).",
            "analyze_seconds_ago",
        ),
        "pgq_claim_index_bytes": ("Size of jobs_claim_idx in bytes.", "claim_index_bytes"),
    }
    families = []
    for name, (doc, column) in plain.items():
        family = GaugeMetricFamily(name, doc)
        value = getattr(h, column) if h is not None else None
        if value is not None:
            family.add_metric([], value)
        families.append(family)
    seconds = GaugeMetricFamily(
        "pgq_xmin_holder_seconds",
        "Age of the oldest transaction (holder=transaction) and prepared transaction "
        "(holder=prepared) holding back the xmin horizon; 0 when none.",
        labels=["holder"],
    )
    xids = GaugeMetricFamily(
        "pgq_xmin_holder_age_xids",
        "Transactions since the xmin held by the oldest transaction, replication slot "
        "(holder=slot) and prepared transaction; 0 when none.",
        labels=["holder"],
    )
    action = GaugeMetricFamily(
        "pgq_health_action",
        "1 when pgq doctor's check (default thresholds) needs action, else 0.",
        labels=["check"],
    )
    if h is not None:
        seconds.add_metric(["transaction"], h.oldest_xact_seconds or 0.0)
        seconds.add_metric(["prepared"], h.oldest_prepared_seconds or 0.0)
        xids.add_metric(["transaction"], h.oldest_xact_xmin_age or 0)
        xids.add_metric(["slot"], h.oldest_slot_xmin_age or 0)
        xids.add_metric(["prepared"], h.oldest_prepared_xmin_age or 0)
        for finding in judge(h, Thresholds()):
            action.add_metric([finding.check], 1 if finding.status == "action" else 0)
    return [*families, seconds, xids, action]


@dataclass(eq=False)
class MetricsServer:
    """A running ``/metrics`` endpoint: pass ``events`` to the worker, ``close()`` to stop."""

    events: WorkerMetrics
    port: int
    _server: Any = field(repr=False)
    _thread: threading.Thread = field(repr=False)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def serve_metrics(
    port: int,
    database_url: str,
    *,
    queues: Sequence[str] = (),
    addr: str = ADDR_DEFAULT,
    registry: CollectorRegistry = REGISTRY,
) -> MetricsServer:
    """Serve Prometheus metrics on ``http://addr:port/metrics`` from a daemon thread.

    ``queues`` are reported in the gauges even when empty; port 0 picks a free port
    (``.port`` tells which). Raises PgqError when the port cannot be bound. Example::

        server = serve_metrics(9464, url, queues=["default"])
        Worker(config, events=server.events).run()
    """
    try:
        httpd, thread = _start_http_server(port, addr, registry)
    except OSError as exc:
        raise PgqError(
            f"cannot serve metrics on {addr}:{port}: {exc.strerror or exc}; "
            "choose another --metrics-port"
        ) from None
    try:
        events = WorkerMetrics(registry)
        registry.register(QueueGauges(database_url, queues))
    except Exception:
        httpd.shutdown()
        httpd.server_close()
        raise
    bound = int(httpd.server_address[1])
    log.info("serving Prometheus metrics on http://%s:%d/metrics", addr, bound)
    return MetricsServer(events, bound, httpd, thread)
