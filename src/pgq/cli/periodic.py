"""Recurring-job commands: `pgq check` (for CI) and `pgq schedules` (what runs when).

Exit codes: `pgq check` exits 0 when the app is sound, 1 when it found problems (each on
stderr, naming its module, task or schedule), 2 on usage errors; `pgq schedules` exits 0,
or 2 when the database cannot be read.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer
from rich.text import Text

from pgq import checks, scheduler
from pgq.cli import DatabaseUrl, app
from pgq.cli.ops import AsJson, _console, _database, _print_json, _seconds, _table, _when

EXIT_PROBLEMS = 1
SCHEDULE_COLUMNS = (
    *("schedule", "task", "expression", "timezone", "next tick", "last tick"),
    *("last outcome", "last success", "skipped", "overdue"),
)


@app.command()
def check(
    apps: Annotated[
        list[str],
        typer.Option(
            "--app",
            envvar="PGQ_APP",
            metavar="MODULE",
            help="Module that defines tasks and schedules, as for `pgq work`. Repeatable.",
        ),
    ] = [],  # noqa: B006
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            metavar="URL",
            help="Also check this database: its pgq schema matches this pgq, and no host "
            "revision sits in pgq's migrations folder. Default: no database check.",
            show_default=False,
        ),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Load the app and check every task and schedule: cron syntax, time zones, options,
    and that each schedule's args bind to its function. Exit 1 on any problem (for CI)."""
    report = checks.check_app(apps, database_url)
    if as_json:
        _print_json(report.as_dict())
    elif report.ok:
        typer.echo(
            f"pgq check: {', '.join(report.apps)}: {report.tasks} task(s), "
            f"{report.schedules} schedule(s), no problems"
        )
    for problem in report.problems:
        typer.echo(f"pgq: check: {problem}", err=True)
    if not report.ok:
        raise typer.Exit(EXIT_PROBLEMS)


@app.command()
def schedules(database_url: DatabaseUrl = None, as_json: AsJson = False) -> None:
    """Recurring jobs: expression, next tick, last tick, last outcome and success, overdue."""
    with _database(database_url) as conn:
        rows = scheduler.schedule_status(conn)
    if as_json:
        _print_json([asdict(row) for row in rows])
        return
    table = _table(*SCHEDULE_COLUMNS)
    for r in rows:
        outcome = r.last_outcome or "-"
        if r.last_outcome_at is not None:
            outcome += f" {_when(r.last_outcome_at)}"
        table.add_row(
            Text(r.name if r.active else f"{r.name} (inactive)"),
            Text(r.task),
            Text(r.expression),
            r.timezone,
            _when(r.next_tick_at),
            _when(r.last_tick_at),
            Text(outcome),
            _when(r.last_success_at),
            str(r.skipped_ticks),
            f"OVERDUE (grace {_seconds(r.grace_seconds)})" if r.overdue else "no",
        )
    _console.print(table if rows else "no schedules: define them with @pgq.periodic")
