"""`pgq workers` (the worker registry) and `pgq doctor` (queue health), for people (a table)
and scripts (``--json``)."""

from __future__ import annotations

from dataclasses import asdict

import typer
from rich.table import Table
from rich.text import Text

from pgq import doctor as health_checks
from pgq import worker_registry
from pgq.cli import DatabaseUrl, app
from pgq.cli.ops import AsJson, _console, _database, _print_json, _seconds, _when

WORKERS_COLUMNS = (
    *("worker", "host", "pid", "version", "queues", "tasks"),
    *("concurrency", "running", "started", "last seen", "alive"),
)
_TEXT = {"worker", "host", "queues", "started", "last seen", "alive"}
EXIT_NEEDS_ACTION = 1


@app.command()
def workers(database_url: DatabaseUrl = None, as_json: AsJson = False) -> None:
    """Registered workers: host, pid, queues, tasks, jobs running, last heartbeat, alive.

    A worker unseen for longer than its bound is listed as not alive until the reaper
    removes it. Orphaned jobs (queued where no live worker serves their task) follow.
    """
    with _database(database_url) as conn:
        rows = worker_registry.list_workers(conn)
        orphans = worker_registry.orphaned_jobs(conn)
    if as_json:
        _print_json(
            {"workers": [asdict(row) for row in rows], "orphaned": [asdict(o) for o in orphans]}
        )
        return
    table = _table(WORKERS_COLUMNS)
    for w in rows:
        table.add_row(
            Text(w.id),
            Text(w.hostname),
            str(w.pid),
            w.version,
            Text(",".join(w.queues)),
            str(len(w.tasks)),
            str(w.concurrency),
            str(w.running),
            _when(w.started_at),
            f"{_seconds(w.last_seen_seconds)} ago",
            "yes" if w.alive else "NO",
        )
    _console.print(table if rows else "no registered workers")
    for o in orphans:
        _console.print(
            Text(
                f"orphaned: {o.queued} queued job(s) of task {o.task} on queue {o.queue} "
                f"(oldest {_seconds(o.oldest_seconds)}): no live worker serves them"
            )
        )


@app.command()
def doctor(database_url: DatabaseUrl = None, as_json: AsJson = False) -> None:
    """Check what ages the queue: dead rows in pgq.jobs, autovacuum and statistics, the
    oldest transaction, replication slot and prepared transaction holding back vacuum,
    and the claim index's size against the queued jobs. Each finding says what to do.

    Exits 1 when a finding needs action, 0 otherwise (warnings included).
    """
    with _database(database_url) as conn:
        report = health_checks.check_health(conn)
    if as_json:
        _print_json(report.as_dict())
    else:
        table = Table(box=None, header_style="bold", pad_edge=False)
        table.add_column("check", no_wrap=True)
        table.add_column("status", no_wrap=True)
        table.add_column("finding", overflow="fold", ratio=3)
        table.add_column("what to do", overflow="fold", ratio=3)
        for f in report.findings:
            status = f.status.upper() if f.status != "ok" else "ok"
            table.add_row(f.check, status, Text(f.summary), Text(f.advice or ""))
        _console.print(table)
    if report.needs_action:
        raise typer.Exit(EXIT_NEEDS_ACTION)


def _table(columns: tuple[str, ...]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for name in columns:
        if name in _TEXT:
            table.add_column(name, overflow="fold")
        else:
            table.add_column(name, justify="right", no_wrap=True)
    return table
