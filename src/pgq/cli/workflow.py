"""`pgq workflow ID`: a workflow's jobs step by step, with their states (``--json`` for
scripts). Cancelling a workflow is ``pgq cancel --workflow ID`` (cli/ops.py)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer
from rich.text import Text

from pgq import workflows
from pgq.cli import DatabaseUrl, app, fail
from pgq.cli.ops import (
    EXIT_SOME_SKIPPED,
    AsJson,
    _console,
    _database,
    _job_ids,
    _print_json,
    _when,
)

SHOWN_PER_STEP_DEFAULT = 20  # jobs listed per step; the rest are counted by state


@app.command()
def workflow(
    job_id: Annotated[
        str, typer.Argument(metavar="ID", help="The workflow's id, or any of its jobs' ids.")
    ],
    show_all: Annotated[
        bool,
        typer.Option(
            "--all", help=f"List every job of each step, not the first {SHOWN_PER_STEP_DEFAULT}."
        ),
    ] = False,
    database_url: DatabaseUrl = None,
    as_json: AsJson = False,
) -> None:
    """Show a workflow (a chain or group): its jobs step by step, their states, and
    how many are in each state."""
    (parsed,) = _job_ids([job_id])
    with _database(database_url) as conn:
        tree = workflows.get_workflow(conn, parsed)
    if tree is None:
        fail(f"job {parsed}: not found, or not part of a workflow", EXIT_SOME_SKIPPED)
    if as_json:
        _print_json({"id": tree.id, "counts": tree.counts, "jobs": [asdict(j) for j in tree.jobs]})
        return
    counts = ", ".join(f"{n} {state}" for state, n in tree.counts.items() if n)
    _console.print(Text(f"workflow {tree.id}: {len(tree.jobs)} jobs ({counts})"))
    for number, step in enumerate(tree.steps(), start=1):
        _print_step(number, step, None if show_all else SHOWN_PER_STEP_DEFAULT)


def _print_step(number: int, jobs: list[workflows.WorkflowJob], limit: int | None) -> None:
    _console.print(Text(f"step {number}" + (f" ({len(jobs)} jobs)" if len(jobs) > 1 else "")))
    # Unfinished and failed jobs first: they are what an operator looks for.
    order = {"failed": 0, "running": 1, "queued": 2, "waiting": 3, "cancelled": 4}
    ranked = sorted(jobs, key=lambda j: (order.get(j.state, 5), j.id))
    shown = ranked if limit is None else ranked[:limit]
    for job in shown:
        _console.print(Text(f"  {_job_line(job)}"))
    hidden = ranked[len(shown) :]
    if hidden:
        states: dict[str, int] = {}
        for job in hidden:
            states[job.state] = states.get(job.state, 0) + 1
        summary = ", ".join(f"{n} {state}" for state, n in states.items())
        _console.print(Text(f"  ... and {len(hidden)} more ({summary}); --all lists them"))


def _job_line(job: workflows.WorkflowJob) -> str:
    line = f"{job.id}  {job.task}  {job.state}"
    if job.state == "waiting" and job.parents_pending:
        line += f" (for {job.parents_pending} of {len(job.parents)} parents)"
    elif job.finished_at is not None:
        line += f" {_when(job.finished_at)}"
    if job.state in ("failed", "cancelled") and job.last_error:
        line += f": {job.last_error}"
    return line
