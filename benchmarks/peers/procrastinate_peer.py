"""Procrastinate through its own public API: ``defer``, ``batch_defer``, ``procrastinate worker``.

Its ``defer`` runs on its own connection pool and commits by itself (it cannot join the
caller's transaction), so each deferred job is its own transaction. Its worker runs with
default settings (concurrency 1) and ``--one-shot`` (exit once nothing is left). First
claim and last completion come from its ``procrastinate_events`` table (database time).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any

from procrastinate import App, PsycopgConnector

from benchmarks.db import Span, connect, one

NAME = "procrastinate"
APP_PATH = "benchmarks.apps.procrastinate_app.app"
PEER_URL_ENV = "PGQ_BENCH_PEER_URL"  # read by benchmarks/apps/procrastinate_app.py


class Peer:
    name = NAME
    url_env = PEER_URL_ENV

    def __init__(self, url: str) -> None:
        # An app of its own for this database, deferring by task name (procrastinate's way
        # to defer from code that does not import the tasks): the worker's app module
        # reads its URL once, at import.
        self.url = url
        self.app = App(connector=PsycopgConnector(conninfo=url))

    @contextlib.contextmanager
    def opened(self) -> Iterator[Peer]:
        with self.app.open():
            yield self

    def install(self) -> None:
        with self.app.open():
            self.app.schema_manager.apply_schema()

    def enqueue_one(self, i: int) -> int:
        return int(self.app.configure_task("noop").defer(i=i))

    def enqueue_ledger(self) -> int:
        return int(self.app.configure_task("record_start").defer())

    def enqueue_many(self, n: int, start: int = 0) -> list[int]:
        jobs = [{"i": i} for i in range(start, start + n)]
        return list(self.app.configure_task("noop").batch_defer(*jobs))

    def worker_command(self, drain: bool) -> list[str]:
        command = [sys.executable, "-m", "procrastinate", "--app", APP_PATH, "worker"]
        return [*command, "--one-shot"] if drain else command

    def span(self, first: int, last: int) -> Span:
        with connect(self.url) as conn:
            done, seconds = one(conn, "procrastinate_drain_span", {"first": first, "last": last})
        return Span(int(done), float(seconds or 0.0))


def version() -> Any:
    from importlib.metadata import version as installed

    return installed("procrastinate")
