"""`pgq workers`: the worker registry, for people (a table) and scripts (``--json``)."""

from __future__ import annotations

from dataclasses import asdict

from rich.table import Table
from rich.text import Text

from pgq import worker_registry
from pgq.cli import DatabaseUrl, app
from pgq.cli.ops import AsJson, _console, _database, _print_json, _seconds, _when

WORKERS_COLUMNS = (
    *("worker", "host", "pid", "version", "queues", "tasks"),
    *("concurrency", "running", "started", "last seen", "alive"),
)
_TEXT = {"worker", "host", "queues", "started", "last seen", "alive"}


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


def _table(columns: tuple[str, ...]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for name in columns:
        if name in _TEXT:
            table.add_column(name, overflow="fold")
        else:
            table.add_column(name, justify="right", no_wrap=True)
    return table
