"""What the dashboard's tests share: a real uvicorn serving the app in a thread (the
benchmark's ``serve``), a plain HTTP client that shows every status (redirects included),
and rows in every state."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

import psycopg
from benchmarks.scenarios.dashboard import serve as serve  # shared with the benchmark

Conn = psycopg.Connection[Any]
WAIT_TIMEOUT = 15.0


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: str
    cookies: dict[str, str]


def request(
    method: str,
    url: str,
    *,
    form: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    cookies: dict[str, str] | None = None,
) -> Reply:
    """One HTTP request, redirects not followed, any status returned."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    sent = dict(headers or {})
    body = None
    if form is not None:
        body = urlencode(form)
        sent["Content-Type"] = "application/x-www-form-urlencoded"
    if cookies:
        sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    try:
        conn.request(method, path, body=body, headers=sent)
        response = conn.getresponse()
        got = {k.lower(): v for k, v in response.getheaders()}
        set_cookies = {}
        for name, value in response.getheaders():
            if name.lower() == "set-cookie":
                pair = value.split(";", 1)[0]
                key, _, val = pair.partition("=")
                set_cookies[key] = val
        return Reply(response.status, got, response.read().decode(), set_cookies)
    finally:
        conn.close()


def wait_until(condition: Callable[[], bool], timeout: float = WAIT_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.02)


def add_job(
    conn: Conn,
    state: str = "queued",
    *,
    queue: str = "default",
    task: str = "tests.web.task",
    args: dict[str, Any] | None = None,
    attempts: int = 0,
    max_attempts: int = 3,
    errors: list[dict[str, Any]] | None = None,
    finished_ago: float = 60.0,
    run_in: float = 0.0,
) -> int:
    """One job row in ``state``, as the worker would have left it; returns its id."""
    finished = state in ("succeeded", "failed", "cancelled")
    running = state == "running"
    row = conn.execute(
        """
        INSERT INTO pgq.jobs (queue, task, args, state, attempts, max_attempts, errors,
                              run_at, started_at, finished_at, worker_id, lease_token,
                              lease_expires_at)
        VALUES (%(queue)s, %(task)s, %(args)s, %(state)s, %(attempts)s, %(max_attempts)s,
                %(errors)s, now() + make_interval(secs => %(run_in)s),
                CASE WHEN %(started)s THEN now() - interval '2 minutes' END,
                CASE WHEN %(finished)s THEN now() - make_interval(secs => %(ago)s) END,
                CASE WHEN %(running)s THEN 'worker-1' END,
                CASE WHEN %(started)s THEN 1 ELSE 0 END,
                CASE WHEN %(running)s THEN now() + interval '30 seconds' END)
        RETURNING id
        """,
        {
            "queue": queue,
            "task": task,
            "args": json.dumps(args or {}),
            "state": state,
            "attempts": attempts,
            "max_attempts": max_attempts,
            "errors": json.dumps(errors or []),
            "run_in": run_in,
            "started": finished or running,
            "finished": finished,
            "running": running,
            "ago": finished_ago,
        },
    ).fetchone()
    assert row is not None
    return int(row[0])


def error(
    attempt: int, message: str, kind: str = "ValueError", ago: float = 60.0
) -> dict[str, Any]:
    """An ``errors`` entry as the worker writes it, with a traceback."""
    return {
        "attempt": attempt,
        "at": (datetime.now(UTC) - timedelta(seconds=ago)).isoformat(),
        "kind": kind,
        "message": message,
        "traceback": (
            f'Traceback (most recent call last):\n  File "app.py", line 3\n{kind}: {message}\n'
        ),
        "worker_id": "worker-1",
    }


@dataclass
class Seeded:
    queued: int
    scheduled: int
    running: int
    succeeded: int
    failed: int
    cancelled: int
    retrying: int
    secret_job: int


def seed_every_state(conn: Conn) -> Seeded:
    """Jobs in every state, two queues, errors with tracebacks, and a job with private args."""
    return Seeded(
        queued=add_job(conn, "queued", args={"order": 1}),
        scheduled=add_job(conn, "queued", run_in=3600, queue="mail"),
        running=add_job(conn, "running", attempts=1, queue="mail", task="tests.web.send"),
        succeeded=add_job(conn, "succeeded", attempts=1, args={"order": 2}),
        failed=add_job(
            conn,
            "failed",
            attempts=3,
            task="tests.web.charge",
            args={"order": 3},
            errors=[
                error(1, "card declined"),
                error(2, "card declined"),
                error(3, "card declined"),
            ],
        ),
        cancelled=add_job(conn, "cancelled", task="tests.web.charge"),
        retrying=add_job(
            conn, "queued", attempts=1, run_in=30, errors=[error(1, "timeout", "TimeoutError")]
        ),
        secret_job=add_job(
            conn,
            "failed",
            attempts=3,
            task="private.payroll",
            args={"salary": "SECRET-SALARY-42"},
            errors=[error(3, "bank down")],
        ),
    )


def add_worker(
    conn: Conn,
    worker_id: str,
    *,
    queues: tuple[str, ...] = ("mail",),
    tasks: tuple[str, ...] = ("tests.web.send",),
    seen_ago: float = 1.0,
) -> None:
    """A row of pgq.workers as a running worker's heartbeat leaves it."""
    conn.execute(
        """
        INSERT INTO pgq.workers (id, hostname, pid, version, queues, tasks, concurrency,
                                 last_seen_at, running, stale_after_seconds)
        VALUES (%s, 'host-1', 4242, '0.1.0', %s, %s, 10,
                now() - make_interval(secs => %s), 1, 30)
        """,
        (worker_id, list(queues), json.dumps(dict.fromkeys(tasks, queues[0])), seen_ago),
    )
