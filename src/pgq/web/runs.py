"""Long actions started from the dashboard, run in a thread while the page shows progress.

"Retry all failed" can touch hundreds of thousands of jobs: ``pgq.admin.retry_failed``
does it in batches of one short transaction each, and reports after every batch. The
dashboard starts it here, answers at once with a progress page, and that page polls
the run's state. Runs live in this process's memory (the last ``RUNS_KEPT``); with several
dashboard processes, a progress page only finds runs its own process started.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import psycopg

from pgq import admin
from pgq.errors import PgqError

log = logging.getLogger("pgq.web")

RUNS_KEPT = 100


@dataclass(frozen=True, slots=True)
class Run:
    """A "retry all failed" run: its filter, totals so far, and how it ended."""

    id: int
    queue: str | None
    task: str | None
    total: int
    retried: int = 0
    skipped: int = 0
    done: bool = False
    error: str | None = None
    user: str | None = None


ConnectionSource = Callable[[], Any]  # a context manager giving a psycopg connection


class Runs:
    """The runs of one dashboard app."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: OrderedDict[int, Run] = OrderedDict()
        self._ids = itertools.count(1)

    def get(self, run_id: int) -> Run | None:
        with self._lock:
            return self._runs.get(run_id)

    def start_retry_failed(
        self,
        connection: ConnectionSource,
        *,
        queue: str | None,
        task: str | None,
        user: str | None,
    ) -> Run:
        """Count the failed jobs of the filter, then retry them in a thread; returns the run."""
        with connection() as conn:
            total = admin.count_failed(conn, queue=queue, task=task)
        with self._lock:
            run = Run(id=next(self._ids), queue=queue, task=task, total=total, user=user)
            self._runs[run.id] = run
            while len(self._runs) > RUNS_KEPT:
                self._runs.popitem(last=False)
        thread = threading.Thread(
            target=self._retry_failed, args=(connection, run.id), name=f"pgq-web-run-{run.id}"
        )
        thread.daemon = True
        thread.start()
        return run

    def _update(self, run_id: int, **changes: Any) -> None:
        with self._lock:
            if run_id in self._runs:
                self._runs[run_id] = replace(self._runs[run_id], **changes)

    def _retry_failed(self, connection: ConnectionSource, run_id: int) -> None:
        run = self.get(run_id)
        assert run is not None
        log.info(
            "retry of failed jobs started by %s (queue=%s, task=%s, %d jobs)",
            run.user or "anonymous",
            run.queue or "any",
            run.task or "any",
            run.total,
        )

        def progress(result: admin.RetryFailedResult) -> None:
            self._update(run_id, retried=result.retried, skipped=result.skipped)

        try:
            with connection() as conn:
                result = admin.retry_failed(conn, queue=run.queue, task=run.task, on_batch=progress)
        except (PgqError, psycopg.Error) as exc:
            log.warning("retry of failed jobs (run %d) stopped: %s", run_id, exc)
            self._update(run_id, done=True, error=" ".join(str(exc).split()))
            return
        self._update(run_id, retried=result.retried, skipped=result.skipped, done=True)
        log.info("retry of failed jobs (run %d): %d retried", run_id, result.retried)
