"""The worker registry: who is working, and which queued jobs nobody will run.

Every worker (``pgq work``, or a [`Worker`][pgq.worker.Worker] in your own process) keeps
a row in ``pgq.workers``: its id (the ``worker_id`` on the jobs it holds), host, pid, pgq
version, the queues it claims from, its registered tasks with their default queues, its
concurrency and the jobs running in it. It writes the row when it starts, refreshes it
with every heartbeat (the same statement that extends its leases, at least every
``BEAT_INTERVAL_MAX`` seconds) and deletes it on a clean exit. A worker that dies leaves
its row behind; once unseen for ``STALE_AFTER`` seconds it counts as dead, and the reaper
deletes the row on its next pass.

A job is *orphaned* when it is queued and no live worker serves its (queue, task): none
claims from that queue with that task registered. Such jobs wait until one starts; a
producer that enqueues by name without the task's own defaults (queue ``default``) is the
usual cause. [`orphaned_jobs`][pgq.worker_registry.orphaned_jobs] lists them, ``pgq stats``
counts them, ``pgq enqueue`` warns, and ``pgq_orphaned_jobs`` is their Prometheus gauge.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

import pgq
from pgq import store
from pgq.heartbeat import BEAT_INTERVAL_MAX
from pgq.registry import Task

# Seconds a worker may go unseen before it counts as dead: three heartbeats missed (so one
# failed beat, or a slow one, never makes a live worker look dead), and at least 30 s.
STALE_AFTER = max(30.0, 3 * BEAT_INTERVAL_MAX)

Connection = psycopg.Connection[Any]


@dataclass(frozen=True, slots=True)
class Presence:
    """What a worker writes about itself in ``pgq.workers``; fixed for its lifetime."""

    worker_id: str
    queues: tuple[str, ...]
    tasks: dict[str, str]  # task name -> the queue it enqueues to by default
    concurrency: int
    hostname: str = ""
    pid: int = 0
    stale_after: float = STALE_AFTER

    @classmethod
    def of(
        cls, worker_id: str, queues: Iterable[str], tasks: Iterable[Task], concurrency: int
    ) -> Presence:
        """This process's presence: its host name and pid, the queues and tasks given."""
        return cls(
            worker_id,
            tuple(queues),
            {task.name: task.queue for task in tasks},
            concurrency,
            hostname=socket.gethostname(),
            pid=os.getpid(),
        )

    def row(self, running: int) -> dict[str, Any]:
        """The registry upsert's parameters (``store.extend_leases(worker=...)``)."""
        return {
            "worker_id": self.worker_id,
            "hostname": self.hostname,
            "pid": self.pid,
            "version": pgq.__version__,
            "queues": store.text_array(self.queues),
            "tasks": json.dumps(self.tasks, sort_keys=True),
            "concurrency": self.concurrency,
            "running": running,
            "stale_after": self.stale_after,
        }


@dataclass(frozen=True, slots=True)
class WorkerStatus:
    """One row of the ``pgq.worker_status`` view.

    ``running``: jobs running in it at its last heartbeat; ``held``: jobs in state running
    under its id now (claimed ahead of a slot too); ``alive``: seen within its bound.
    """

    id: str
    hostname: str
    pid: int
    version: str
    queues: list[str]
    tasks: list[str]
    concurrency: int
    running: int
    held: int
    started_at: datetime
    last_seen_at: datetime
    last_seen_seconds: float
    alive: bool


@dataclass(frozen=True, slots=True)
class OrphanedJobs:
    """One row of the ``pgq.orphaned_jobs`` view: queued jobs of a (queue, task) that no
    live worker serves; ``ready`` of them are due now."""

    queue: str
    task: str
    queued: int
    ready: int
    oldest_created_at: datetime
    oldest_seconds: float


@dataclass(frozen=True, slots=True)
class Serving:
    """Who serves one task: ``served`` on the queue asked about, the ``queues`` live workers
    serve it on, and how many workers are ``alive`` at all."""

    served: bool
    queues: list[str]
    alive: int


@dataclass(frozen=True, slots=True)
class StaleWorker:
    """A worker row the reaper removed: unseen since ``last_seen_at``."""

    id: str
    hostname: str
    pid: int
    last_seen_at: datetime


def list_workers(conn: Connection) -> list[WorkerStatus]:
    """Every registered worker, alive or not yet removed, by host and start time."""
    return [WorkerStatus(*row) for row in store.fetch(conn, store.select_worker_status())]


def orphaned_jobs(conn: Connection) -> list[OrphanedJobs]:
    """Queued jobs that no live worker serves, per (queue, task), by queue and task."""
    return [OrphanedJobs(*row) for row in store.fetch(conn, store.select_orphaned_jobs())]


def serving(conn: Connection, task: str, queue: str) -> Serving:
    """Whether a live worker serves ``task`` on ``queue`` (what ``pgq enqueue`` checks)."""
    rows = store.fetch(conn, store.select_worker_serving(task=task, queue=queue))
    served, queues, alive = rows[0]
    return Serving(bool(served), list(queues), int(alive))


def remove_stale_workers(conn: Connection, now: datetime | None = None) -> list[StaleWorker]:
    """Delete the rows of workers unseen for longer than their bound before ``now``
    (default: the database's ``now()``). The reaper calls it on each pass."""
    return [StaleWorker(*row) for row in store.fetch(conn, store.delete_stale_workers(now=now))]
