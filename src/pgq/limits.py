"""Flow control across every worker: paused queues (and, below, the limits on jobs).

A paused queue is a row in ``pgq.queue_pauses``. Workers read the table once per poll
interval, and again at once when ``pause_queue`` / ``resume_queue`` notify them, and leave
the paused queues out of their claim: the claim statement is the same as without pauses,
so queues nobody paused pay nothing. Jobs already running finish; jobs enqueued into a
paused queue wait in it. A pause lives in the database, so it outlives worker and
database restarts until someone resumes the queue.

Every function takes a psycopg connection; with autocommit (what the CLI uses) each call
is its own transaction, else the change takes effect when the caller commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from pgq import options, store
from pgq.errors import OptionError

# The NOTIFY payload of a pause or resume on the 'pgq' channel. '!' is not allowed in a
# queue name, so it cannot be mistaken for an enqueue's wake-up.
PAUSE_PAYLOAD = "!pause"
REASON_MAX_CHARS = 500

Connection = psycopg.Connection[Any]


@dataclass(frozen=True, slots=True)
class QueuePause:
    """A paused queue: since when, and why (the reason given to ``pause_queue``)."""

    queue: str
    paused_at: datetime
    reason: str | None


def pause_queue(conn: Connection, queue: str, reason: str | None = None) -> QueuePause:
    """Pause ``queue`` on every worker: none claims a job of it until ``resume_queue``.

    Running jobs finish; new jobs wait in the queue. Pausing a paused queue keeps its
    ``paused_at`` (and replaces the reason when one is given). Raises QueueNameError for a
    bad name, OptionError for a reason longer than 500 characters. Example::

        with psycopg.connect(url, autocommit=True) as conn:
            pgq.pause_queue(conn, "emails", reason="provider down")
    """
    queue = options.check_queue(queue)
    if reason is not None and (not isinstance(reason, str) or len(reason) > REASON_MAX_CHARS):
        raise OptionError(f"a pause reason must be text of at most {REASON_MAX_CHARS} characters")
    (row,) = store.fetch(conn, store.pause_queue(queue=queue, reason=reason))
    return QueuePause(*row[:3])


def resume_queue(conn: Connection, queue: str) -> QueuePause | None:
    """Resume ``queue``: workers claim from it again at once. Returns the pause lifted, or
    None when ``queue`` was not paused."""
    queue = options.check_queue(queue)
    rows = store.fetch(conn, store.resume_queue(queue=queue))
    return QueuePause(*rows[0][:3]) if rows else None


def paused_queues(conn: Connection) -> list[QueuePause]:
    """Every paused queue, oldest pause first."""
    return [QueuePause(*row) for row in store.fetch(conn, store.list_queue_pauses())]
