"""Flow-control commands: `pgq pause`, `pgq resume` and `pgq limits`.

Exit codes as in ``pgq.cli.ops``: 0 done, 1 nothing to do (resuming a queue that was not
paused), 2 usage or database errors.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer
from rich.text import Text

from pgq import limits
from pgq.cli import DatabaseUrl, app, fail
from pgq.cli.ops import (
    EXIT_SOME_SKIPPED,
    AsJson,
    _database,
    _print_json,
    _print_table,
    _table,
    _when,
)

QueueArgument = Annotated[str, typer.Argument(metavar="QUEUE", help="The queue's name.")]


@app.command()
def pause(
    queue: QueueArgument,
    reason: Annotated[
        str | None,
        typer.Option("--reason", metavar="TEXT", help="Why (kept with the pause)."),
    ] = None,
    database_url: DatabaseUrl = None,
    as_json: AsJson = False,
) -> None:
    """Stop every worker from claiming jobs of QUEUE, until `pgq resume QUEUE`.

    Running jobs finish; new jobs wait in the queue. Workers see the pause at once (or
    within their poll interval), and it lasts across worker and database restarts.
    """
    with _database(database_url) as conn:
        paused = limits.pause_queue(conn, queue, reason)
    if as_json:
        _print_json(asdict(paused))
        return
    why = f" ({paused.reason})" if paused.reason else ""
    typer.echo(f"paused queue {paused.queue} since {_when(paused.paused_at)}{why}")


@app.command()
def resume(queue: QueueArgument, database_url: DatabaseUrl = None, as_json: AsJson = False) -> None:
    """Let workers claim jobs of QUEUE again (after `pgq pause`)."""
    with _database(database_url) as conn:
        lifted = limits.resume_queue(conn, queue)
    if as_json:
        _print_json({"queue": queue, "resumed": lifted is not None})
    elif lifted is not None:
        typer.echo(f"resumed queue {queue} (paused since {_when(lifted.paused_at)})")
    if lifted is None:
        fail(f"queue {queue} is not paused", EXIT_SOME_SKIPPED)


@app.command("limits")
def show_limits(
    limit: Annotated[
        int,
        typer.Option("--limit", min=1, max=10_000, metavar="N", help="Show at most N limits."),
    ] = limits.FLOW_LIMITS_MAX,
    database_url: DatabaseUrl = None,
    as_json: AsJson = False,
) -> None:
    """Every limit in use: concurrency and rate limits with their use and the jobs waiting
    on them (most waiting first), then the paused queues."""
    with _database(database_url) as conn:
        rows = limits.flow_limits(conn, limit)
        pauses = limits.paused_queues(conn)
    if as_json:
        _print_json({"limits": [asdict(r) for r in rows], "paused": [asdict(p) for p in pauses]})
        return
    table = _table("kind", "key", "limit", "in use", "waiting")
    for r in rows:
        shown = str(r.max) if r.period_seconds is None else f"{r.max}/{r.period_seconds:g}s"
        table.add_row(r.kind, Text(r.key), shown, str(r.in_use), str(r.waiting))
    _print_table(table, rows, "no limit in use")
    for p in pauses:
        why = f" ({p.reason})" if p.reason else ""
        typer.echo(f"paused: {p.queue} since {_when(p.paused_at)}{why}")
