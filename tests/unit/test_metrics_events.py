"""pgq.metrics without a database: the worker events as counters and histograms, each test
with a CollectorRegistry of its own, and the HTTP endpoint on a free port."""

from __future__ import annotations

import logging
import socket
import urllib.request
from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry

from pgq.errors import PgqError
from pgq.metrics import OUTCOMES, QueueGauges, WorkerMetrics, serve_metrics
from pgq.runner import ClaimedJob

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def claimed(
    job_id: int = 1,
    queue: str = "default",
    task: str = "app.send",
    lag: float = 0.5,
    token: int = 1,
) -> ClaimedJob:
    return ClaimedJob(
        id=job_id,
        queue=queue,
        task=task,
        args={"secret": "s3cr3t"},
        attempt=1,
        max_attempts=3,
        lease_token=token,
        priority=0,
        run_at=T0,
        enqueued_at=T0,
        lag=lag,
    )


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> WorkerMetrics:
    return WorkerMetrics(registry)


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)  # type: ignore[no-any-return]


def unreachable_url() -> str:
    """A URL where nothing listens: connecting fails at once, no database needed."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"postgresql://postgres:hunter2@127.0.0.1:{port}/nothing"


def test_claims_count_as_started_and_their_lag_is_observed(
    metrics: WorkerMetrics, registry: CollectorRegistry
) -> None:
    metrics.jobs_claimed([claimed(1, lag=0.2), claimed(2, lag=3.0), claimed(3, task="app.other")])

    labels = {"queue": "default", "task": "app.send"}
    assert sample(registry, "pgq_jobs_started_total", **labels) == 2
    assert sample(registry, "pgq_queue_lag_seconds_count", **labels) == 2
    assert sample(registry, "pgq_queue_lag_seconds_sum", **labels) == pytest.approx(3.2)
    assert sample(registry, "pgq_queue_lag_seconds_bucket", le="0.25", **labels) == 1
    assert sample(registry, "pgq_queue_lag_seconds_bucket", le="5.0", **labels) == 2
    assert sample(registry, "pgq_jobs_started_total", queue="default", task="app.other") == 1


def test_a_negative_lag_counts_as_zero(metrics: WorkerMetrics, registry: CollectorRegistry) -> None:
    metrics.jobs_claimed([claimed(lag=-0.001)])  # cannot happen in DB time; never below 0

    labels = {"queue": "default", "task": "app.send"}
    assert sample(registry, "pgq_queue_lag_seconds_sum", **labels) == 0
    assert sample(registry, "pgq_queue_lag_seconds_bucket", le="0.01", **labels) == 1


@pytest.mark.parametrize("outcome", sorted(OUTCOMES))
def test_each_outcome_has_its_counter_and_only_it_moves(
    metrics: WorkerMetrics, registry: CollectorRegistry, outcome: str
) -> None:
    metrics.job_finished(claimed(), outcome, 1.5)

    labels = {"queue": "default", "task": "app.send"}
    counts = {o: sample(registry, f"pgq_jobs_{o}_total", **labels) for o in OUTCOMES}
    assert counts == {o: (1.0 if o == outcome else 0.0) for o in OUTCOMES}
    assert sample(registry, "pgq_jobs_started_total", **labels) == 0


def test_durations_are_observed_per_queue_and_task_except_for_releases(
    metrics: WorkerMetrics, registry: CollectorRegistry
) -> None:
    metrics.job_finished(claimed(1), "succeeded", 0.3)
    metrics.job_finished(claimed(2), "failed", 12.0)
    metrics.job_finished(claimed(3), "released", 0.0)  # given back, never a finished attempt
    metrics.job_finished(claimed(4, queue="mail"), "retried", 0.02)

    labels = {"queue": "default", "task": "app.send"}
    assert sample(registry, "pgq_job_duration_seconds_count", **labels) == 2
    assert sample(registry, "pgq_job_duration_seconds_sum", **labels) == pytest.approx(12.3)
    assert sample(registry, "pgq_job_duration_seconds_bucket", le="0.5", **labels) == 1
    assert sample(registry, "pgq_job_duration_seconds_bucket", le="30.0", **labels) == 2
    mail = {"queue": "mail", "task": "app.send"}
    assert sample(registry, "pgq_job_duration_seconds_count", **mail) == 1


def test_a_lease_loss_is_counted_once_per_claim(
    metrics: WorkerMetrics, registry: CollectorRegistry
) -> None:
    metrics.lease_lost(claimed(1, token=7))  # noticed by a heartbeat
    metrics.lease_lost(claimed(1, token=7))  # and again when the outcome's write is fenced
    metrics.lease_lost(claimed(1, token=9))  # a later claim of the same job, lost again
    metrics.lease_lost(claimed(2, token=7))

    assert sample(registry, "pgq_lease_lost_total", queue="default", task="app.send") == 3


def test_every_counter_of_a_new_queue_and_task_starts_at_zero(
    metrics: WorkerMetrics, registry: CollectorRegistry
) -> None:
    metrics.jobs_claimed([claimed()])

    labels = {"queue": "default", "task": "app.send"}
    for outcome in OUTCOMES:
        assert sample(registry, f"pgq_jobs_{outcome}_total", **labels) == 0
    assert sample(registry, "pgq_lease_lost_total", **labels) == 0


def test_labels_are_queue_and_task_only(
    metrics: WorkerMetrics, registry: CollectorRegistry
) -> None:
    job = claimed(4217)
    metrics.jobs_claimed([job])
    metrics.job_finished(job, "succeeded", 0.1)
    metrics.lease_lost(job)

    names = set()
    for family in registry.collect():
        for s in family.samples:
            assert set(s.labels) - {"le"} == {"queue", "task"}, s
            assert "4217" not in s.labels.values() and "s3cr3t" not in str(s.labels)
            names.add(family.name)
    assert all(name.startswith("pgq_") for name in names)


def test_queue_gauges_never_query_at_registration_and_report_a_database_that_is_down(
    registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    url = unreachable_url()
    registry.register(QueueGauges(url, ["default"]))  # would raise if it tried to connect

    with caplog.at_level(logging.WARNING, logger="pgq.metrics"):
        scraped = {s.name: s.value for family in registry.collect() for s in family.samples}

    assert scraped == {"pgq_database_up": 0}  # no queue gauges rather than wrong ones
    [record] = caplog.records
    assert "cannot read the queue gauges" in record.getMessage()
    assert "hunter2" not in record.getMessage()


def test_serve_metrics_answers_over_http_on_a_free_port(registry: CollectorRegistry) -> None:
    server = serve_metrics(0, unreachable_url(), queues=["default"], registry=registry)
    try:
        server.events.jobs_claimed([claimed()])
        url = f"http://127.0.0.1:{server.port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
    finally:
        server.close()

    assert 'pgq_jobs_started_total{queue="default",task="app.send"} 1.0' in text
    assert "pgq_database_up 0.0" in text


def test_serve_metrics_on_a_port_in_use_raises_a_clear_error(registry: CollectorRegistry) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(PgqError) as raised:
            serve_metrics(port, unreachable_url(), addr="127.0.0.1", registry=registry)

    assert str(raised.value) == (
        f"cannot serve metrics on 127.0.0.1:{port}: Address already in use; "
        "choose another --metrics-port"
    )
    assert list(registry.collect()) == []  # nothing registered when nothing is served
