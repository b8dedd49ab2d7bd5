"""Helpers for the metrics and cancel acceptance tests: scraping /metrics, and the
``observe_events`` table the tasks of ``apps/observe_tasks.py`` write."""

from __future__ import annotations

import socket
import urllib.request
from typing import Any

import psycopg
from prometheus_client.parser import text_string_to_metric_families

APP = "observe_tasks"
Labels = frozenset[tuple[str, str]]
Samples = dict[tuple[str, Labels], float]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scrape(port: int) -> Samples:
    """GET /metrics over HTTP and index every sample by its name and labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def series(samples: Samples, name: str) -> dict[Labels, float]:
    return {labels: v for (sample, labels), v in samples.items() if sample == name}


def create_events_table(conn: psycopg.Connection[Any]) -> None:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS observe_events (id bigserial, job_id bigint, event text)"
    )
    conn.execute("TRUNCATE observe_events RESTART IDENTITY")


def events_of(conn: psycopg.Connection[Any], job_id: int) -> list[str]:
    """What the job's task wrote, in order."""
    rows = conn.execute("SELECT event FROM observe_events WHERE job_id = %s ORDER BY id", (job_id,))
    return [row[0] for row in rows]


def states(conn: psycopg.Connection[Any], ids: list[int]) -> list[str]:
    rows = conn.execute("SELECT state::text FROM pgq.jobs WHERE id = ANY(%s) ORDER BY id", (ids,))
    return [row[0] for row in rows]
