"""Operator commands: `pgq stats`, `jobs`, `show`, `retry`, `cancel` and `enqueue`.

Each prints a readable table, or JSON with ``--json``, and calls ``pgq.admin`` (or
``pgq.enqueue``) to do the work. Exit codes, the same for every command:

- 0: done;
- 1: some of the job ids given could not be acted on (not found, or in a state the action
  does not apply to); each is named on stderr, the others were acted on;
- 2: usage error or bad input (a job id that is not a number, bad JSON), the database cannot
  be reached, or the pgq schema is missing or older than this pgq.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any

import psycopg
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from pgq import admin, options, worker_registry
from pgq.cli import DatabaseUrl, app, fail
from pgq.db import connect, resolve_database_url
from pgq.enqueue import enqueue as enqueue_job
from pgq.errors import PgqError
from pgq.migrate import check_schema

AsJson = Annotated[
    bool, typer.Option("--json", help="Print JSON (for scripts) instead of a table.")
]
QueueFilter = Annotated[
    str | None, typer.Option("--queue", "-q", metavar="QUEUE", help="Only this queue.")
]
TaskFilter = Annotated[
    str | None, typer.Option("--task", "-t", metavar="TASK", help="Only this task name.")
]
EXIT_SOME_SKIPPED = 1
STATS_COLUMNS = (
    *("queue", "ready", "scheduled", "waiting", "running", "failed"),
    *("ok (1h)", "oldest ready", "per min (5m)", "orphaned", "paused"),
)
_TEXT_COLUMNS = {"queue", "task", "state", "last error", "schedule", "expression", "last outcome"}
_TIME_COLUMNS = {"when", "next tick", "last tick", "last success"}

_JOB_ID = re.compile(r"[0-9]+")
# markup off: job data (task names, error messages) must print as written, brackets and all.
# Piped output is not squeezed into rich's 80-column default.
_console = Console(
    markup=False, highlight=False, emoji=False, width=None if sys.stdout.isatty() else 160
)


@app.command()
def stats(database_url: DatabaseUrl = None, as_json: AsJson = False) -> None:
    """Per queue: ready, scheduled, waiting (for workflow parents), running, failed,
    succeeded in the last hour, lag, rate, and orphaned jobs (queued where no live worker
    serves their task)."""
    with _database(database_url) as conn:
        rows = admin.queue_stats(conn)
        orphans = worker_registry.orphaned_jobs(conn)
    per_queue: dict[str, int] = {}
    for orphan in orphans:
        per_queue[orphan.queue] = per_queue.get(orphan.queue, 0) + orphan.queued
    if as_json:
        _print_json([{**asdict(row), "orphaned": per_queue.get(row.queue, 0)} for row in rows])
        return
    table = _table(*STATS_COLUMNS)
    for r in rows:
        oldest = "-" if r.oldest_ready_seconds is None else _seconds(r.oldest_ready_seconds)
        table.add_row(
            Text(r.queue),
            *(str(n) for n in (r.ready, r.scheduled, r.waiting, r.running, r.failed)),
            str(r.succeeded_last_hour),
            oldest,
            f"{r.per_minute_last_5m:.1f}",
            str(per_queue.get(r.queue, 0)),
            "paused" if r.paused else "",
        )
    _print_table(table, rows, "no queues with jobs")
    for orphan in orphans:
        _console.print(
            f"orphaned: {_count(orphan.queued, 'job')} of task {orphan.task} on queue "
            f"{orphan.queue}, oldest {_seconds(orphan.oldest_seconds)} old: no live worker "
            f"serves {'it' if orphan.queued == 1 else 'them'} (see pgq workers)"
        )


@app.command()
def jobs(
    state: Annotated[
        str | None,
        typer.Option(
            "--state",
            "-s",
            metavar="STATE",
            help="Only jobs in this state: " + ", ".join(admin.JOB_STATES),
        ),
    ] = None,
    queue: QueueFilter = None,
    task: TaskFilter = None,
    limit: Annotated[
        int,
        typer.Option("--limit", "-n", metavar="N", help="At most this many jobs, newest first."),
    ] = admin.LIST_LIMIT_DEFAULT,
    database_url: DatabaseUrl = None,
    as_json: AsJson = False,
) -> None:
    """List jobs, newest first."""
    with _database(database_url) as conn:
        rows = admin.list_jobs(conn, state=state, queue=queue, task=task, limit=limit)
    if as_json:
        _print_json([asdict(row) for row in rows])
        return
    # "when" is what matters for the state: due at (queued), started (running), finished.
    table = _table("id", "queue", "task", "state", "attempts", "when", "last error")
    for j in rows:
        table.add_row(
            str(j.id),
            Text(j.queue),
            Text(j.task),
            j.state + (" (cancel requested)" if j.cancel_requested else ""),
            f"{j.attempts}/{j.max_attempts}",
            _when(j.finished_at or (j.started_at if j.state == "running" else j.run_at)),
            Text(j.last_error or ""),
        )
    _print_table(table, rows, "no jobs match")


@app.command()
def show(
    job_id: Annotated[str, typer.Argument(metavar="ID", help="The job's id.")],
    database_url: DatabaseUrl = None,
    as_json: AsJson = False,
) -> None:
    """Show one job: its fields, arguments, result and every error it recorded."""
    (parsed,) = _job_ids([job_id])
    with _database(database_url) as conn:
        job = admin.get_job(conn, parsed)
    if job is None:
        fail(f"job {parsed}: not found", EXIT_SOME_SKIPPED)
    if as_json:
        _print_json(asdict(job))
        return
    _print_job(job)


@app.command()
def retry(
    job_ids: Annotated[
        list[str] | None,
        typer.Argument(metavar="ID", help="Jobs to retry.", show_default=False),
    ] = None,
    failed: Annotated[
        bool, typer.Option("--failed", help="Retry every failed job (of --queue / --task).")
    ] = False,
    queue: QueueFilter = None,
    task: TaskFilter = None,
    batch_size: Annotated[
        int,
        typer.Option(metavar="N", help="Jobs per statement (and transaction) with --failed."),
    ] = admin.BATCH_SIZE_DEFAULT,
    database_url: DatabaseUrl = None,
    as_json: AsJson = False,
) -> None:
    """Queue failed or cancelled jobs again, now. Attempts and errors stay visible.

    A job that had used all its attempts gets one more (max_attempts = attempts + 1).
    """
    if failed == bool(job_ids):
        fail("give job ids, or --failed to retry every failed job (not both)")
    if not failed and (queue or task):
        fail("--queue and --task select jobs for --failed; give them with --failed")
    if failed:
        _retry_failed(database_url, queue, task, batch_size, as_json)
        return
    ids = _job_ids(job_ids or [])
    with _database(database_url) as conn:
        result = admin.retry_jobs(conn, ids)
    if as_json:
        _print_json(
            {
                "retried": result.retried,
                "skipped": _skipped_json(result.skipped),
                "resumed": result.resumed,
                "kept_cancelled": result.kept_cancelled,
            }
        )
    else:
        if result.retried:
            typer.echo(f"retried {_count(result.retried, 'job')}: {_id_list(result.retried)}")
        _echo_resumed(result.resumed, result.kept_cancelled)
    _exit_if_skipped(result.skipped)


@app.command()
def cancel(
    job_ids: Annotated[list[str], typer.Argument(metavar="ID", help="Jobs to cancel.")],
    workflow: Annotated[
        bool,
        typer.Option(
            "--workflow",
            help="Each ID names a workflow (its id or any of its jobs'): cancel all of its "
            "jobs that have not finished.",
        ),
    ] = False,
    database_url: DatabaseUrl = None,
    as_json: AsJson = False,
) -> None:
    """Cancel queued (and waiting) jobs; ask the workers of running jobs to stop them.

    A running job stays running until its worker's next heartbeat sees the request. Jobs
    waiting for a cancelled job in a workflow are cancelled with it.
    """
    ids = _job_ids(job_ids)
    with _database(database_url) as conn:
        result = _cancel_workflows(conn, ids) if workflow else admin.cancel_jobs(conn, ids)
    if as_json:
        _print_json(
            {
                "cancelled": result.cancelled,
                "cancel_requested": result.cancel_requested,
                "skipped": _skipped_json(result.skipped),
            }
        )
    else:
        if result.cancelled:
            typer.echo(f"cancelled {_count(result.cancelled, 'job')}: {_id_list(result.cancelled)}")
        if result.cancel_requested:
            typer.echo(
                f"asked the workers to stop {_count(result.cancel_requested, 'running job')} "
                f"(at their next heartbeat): {_id_list(result.cancel_requested)}"
            )
    _exit_if_skipped(result.skipped)


@app.command()
def enqueue(
    task: Annotated[
        str, typer.Argument(metavar="TASK", help="Task name, as registered with @pgq.task.")
    ],
    args: Annotated[
        str,
        typer.Option(
            "--args", "-a", metavar="JSON", help='Keyword arguments as a JSON object: {"id": 42}.'
        ),
    ] = "{}",
    queue: Annotated[
        str | None,
        typer.Option(
            "--queue",
            "-q",
            metavar="QUEUE",
            help="Queue. Default: default (the CLI does not know the task's own queue).",
        ),
    ] = None,
    delay: Annotated[
        float | None,
        typer.Option(metavar="SECONDS", help="Seconds to wait before the job may run."),
    ] = None,
    priority: Annotated[
        int | None, typer.Option(metavar="N", help="Higher runs first. Default: 0.")
    ] = None,
    max_attempts: Annotated[
        int | None, typer.Option(metavar="N", help="Attempts before it fails. Default: 20.")
    ] = None,
    unique_key: Annotated[
        str | None,
        typer.Option(metavar="KEY", help="Skip if a queued or running job holds this key."),
    ] = None,
    database_url: DatabaseUrl = None,
    as_json: AsJson = False,
) -> None:
    """Enqueue one job and commit.

    The CLI does not import your application, so a task's registered defaults (queue,
    priority, max_attempts) do not apply here: pass them as options. It warns on stderr
    (and still enqueues) when no live worker serves the task on that queue.
    """
    kwargs = _parse_args(args)
    queue_name = queue or options.QUEUE_DEFAULT
    with _database(database_url, autocommit=False) as conn:
        job_id = enqueue_job(
            conn,
            task,
            kwargs,
            queue=queue_name,
            delay=delay,
            priority=priority,
            max_attempts=max_attempts,
            unique_key=unique_key,
        )
        conn.commit()
        serving = _serving(conn, task, queue_name)
    if serving is not None and not serving.served:
        _warn_unserved(task, queue_name, serving)
    if as_json:
        served = None if serving is None else serving.served
        _print_json({"id": job_id, "task": task, "queue": queue_name, "served": served})
    elif job_id is None:
        typer.echo(f"not enqueued: a queued or running job holds unique key {unique_key!r}")
    else:
        typer.echo(f"enqueued job {job_id} (task {task}, queue {queue_name})")


# --- helpers --------------------------------------------------------------------------------


def _cancel_workflows(conn: Any, ids: list[int]) -> admin.CancelResult:
    from pgq import workflows

    total = admin.CancelResult()
    for job_id in ids:
        result = workflows.cancel_workflow(conn, job_id)
        if result is None:
            total.skipped[job_id] = "not found, or not part of a workflow"
            continue
        total.cancelled += result.cancelled
        total.cancel_requested += result.cancel_requested
    return total


def _serving(conn: Any, task: str, queue: str) -> worker_registry.Serving | None:
    """Who serves the task just enqueued (committed already), or None when the registry
    cannot be read (a role without SELECT on pgq.workers): the enqueue stands, unchecked."""
    try:
        return worker_registry.serving(conn, task, queue)
    except psycopg.Error as exc:
        conn.rollback()
        typer.echo(
            f"pgq: warning: enqueued, but cannot check for a worker serving it: "
            f"{' '.join(str(exc).split())}",
            err=True,
        )
        return None


def _warn_unserved(task: str, queue: str, serving: worker_registry.Serving) -> None:
    """Tell the person who just enqueued that no worker will pick the job up yet."""
    if serving.queues:
        hint = (
            f"live workers run {task} on queue {', '.join(serving.queues)}: pass "
            f"--queue {serving.queues[0]}, or start a worker for queue {queue}"
        )
    elif serving.alive:
        hint = f"no live worker registers {task}: start one with --app on the module defining it"
    else:
        hint = "no worker is running: start `pgq work --app ...` for it"
    typer.echo(
        f"pgq: warning: no live worker serves task {task} on queue {queue}; the job waits "
        f"until one does ({hint})",
        err=True,
    )


@contextlib.contextmanager
def _database(database_url: str | None, *, autocommit: bool = True) -> Iterator[Any]:
    """A connection to a database with the current pgq schema; any failure → one line, exit 2."""
    try:
        conn = connect(resolve_database_url(database_url), autocommit=autocommit)
    except PgqError as exc:
        fail(str(exc))
    try:
        with conn:
            check_schema(conn)
            yield conn
    except PgqError as exc:
        fail(str(exc))
    except psycopg.Error as exc:
        fail(f"the database reported: {' '.join(str(exc).split())}")


def _retry_failed(
    database_url: str | None, queue: str | None, task: str | None, batch_size: int, as_json: bool
) -> None:
    try:
        admin.check_batch_size(batch_size)  # before the bar starts drawing
    except PgqError as exc:
        fail(str(exc))
    with _database(database_url) as conn:
        total = admin.count_failed(conn, queue=queue, task=task)
        with _progress_bar("retrying failed jobs", total) as advance:
            result = admin.retry_failed(
                conn, queue=queue, task=task, batch_size=batch_size, on_batch=advance
            )
            advance(result)
    if as_json:
        _print_json(asdict(result))
        return
    typer.echo(f"retried {_count(result.retried, 'failed job')}")
    if result.skipped:
        typer.echo(f"left {result.skipped} failed: a queued or running job holds their unique key")
    _echo_resumed(result.resumed, result.kept_cancelled)


def _echo_resumed(resumed: int, kept: int) -> None:
    if resumed:
        typer.echo(f"resumed {_count(resumed, 'workflow job')}: waiting for their parents again")
    if kept:
        typer.echo(
            f"left {_count(kept, 'workflow job')} cancelled: another of their parents is "
            "running or failed; retry again once it has finished (pgq workflow ID shows it)"
        )


@contextlib.contextmanager
def _progress_bar(what: str, total: int) -> Iterator[Callable[[admin.RetryFailedResult], None]]:
    """A progress bar on stderr (its last state only, when stderr is not a terminal)."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=Console(stderr=True)) as progress:
        bar = progress.add_task(what, total=total)

        def advance(so_far: admin.RetryFailedResult) -> None:
            progress.update(bar, completed=so_far.retried + so_far.skipped)

        yield advance


def _job_ids(raw: list[str]) -> list[int]:
    ids = []
    for text in raw:
        if not _JOB_ID.fullmatch(text.strip()):
            fail(f"job id {text!r} is not a number")
        try:
            ids.append(admin.check_job_id(int(text)))
        except PgqError as exc:
            fail(str(exc))
    return ids


def _parse_args(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:
        fail(f'--args is not valid JSON ({exc}); pass an object such as {{"order_id": 42}}')
    if not isinstance(value, dict):
        fail(f"--args must be a JSON object of keyword arguments, not {type(value).__name__}")
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _exit_if_skipped(skipped: dict[int, str]) -> None:
    for job_id, reason in skipped.items():
        typer.echo(f"pgq: job {job_id}: {reason}", err=True)
    if skipped:
        raise typer.Exit(EXIT_SOME_SKIPPED)


def _skipped_json(skipped: dict[int, str]) -> list[dict[str, Any]]:
    return [{"id": job_id, "reason": reason} for job_id, reason in skipped.items()]


def _print_job(job: admin.Job) -> None:
    table = Table.grid(padding=(0, 2))
    skip = {"args", "errors", "result"}
    for name, value in asdict(job).items():
        if name not in skip:
            shown = _when(value) if isinstance(value, datetime) else str(value)
            shown = "-" if value is None else shown
            table.add_row(name, Text(shown))
    table.add_row("args", Text(json.dumps(job.args, ensure_ascii=False)))
    if job.state == "succeeded":
        table.add_row("result", Text(json.dumps(job.result, ensure_ascii=False)))
    _console.print(table)
    _console.print(f"\nerrors ({len(job.errors)}):" if job.errors else "\nno errors")
    for error in job.errors:
        _console.print(
            f"- attempt {error.get('attempt')} at {_when_text(error.get('at'))} on worker "
            f"{error.get('worker_id')}: {error.get('kind')}: {error.get('message')}"
        )
        if error.get("traceback"):
            _console.print(Text(str(error["traceback"]).rstrip()), style="dim")


def _table(*columns: str) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for name in columns:
        if name in _TIME_COLUMNS:
            table.add_column(name, no_wrap=True)
        elif name in _TEXT_COLUMNS:
            table.add_column(name, overflow="fold", min_width=7)
        else:
            table.add_column(name, justify="right", no_wrap=True)
    return table


def _print_table(table: Table, rows: list[Any], empty: str) -> None:
    _console.print(table if rows else empty)


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, default=_json_value, ensure_ascii=False, indent=2))


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _when(value: datetime | None) -> str:
    """A time for people: this machine's local time to the second, with its zone (JSON
    keeps the database's offset)."""
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z") if value is not None else "-"


def _when_text(value: Any) -> str:
    """:func:`_when` of a time stored as ISO text in a job's JSON (an error's ``at``)."""
    try:
        return _when(datetime.fromisoformat(str(value)))
    except ValueError:
        return str(value)


def _seconds(value: float) -> str:
    if value < 120:
        return f"{value:.1f}s"
    return f"{value / 60:.1f}m" if value < 7200 else f"{value / 3600:.1f}h"


def _count(items: list[int] | int, noun: str) -> str:
    n = items if isinstance(items, int) else len(items)
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _id_list(ids: list[int]) -> str:
    shown = ", ".join(str(i) for i in ids[:20])
    return shown + (f" and {len(ids) - 20} more" if len(ids) > 20 else "")
