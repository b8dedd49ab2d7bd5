"""`pgq reap` and `pgq prune`: the reaper on its own, and retention on demand."""

from __future__ import annotations

import json
import logging
import math
import re
import signal
import sys
import threading
import time
from typing import Annotated, Any

import psycopg
import typer

from pgq import reaper
from pgq.cli import DatabaseUrl, app, fail
from pgq.db import connect, redact, resolve_database_url
from pgq.errors import PgqError
from pgq.migrate import check_schema

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
DURATION_HELP = "plain seconds or a number with s, m, h or d, e.g. 90, 15m, 12h, 7d"
PROGRESS_EVERY = 2.0  # seconds between progress lines of a long prune
PRUNE_LOCK_WAIT_MAX = 30.0  # seconds `pgq prune` waits for another pruner to finish a batch
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([smhd]?)")

JsonOutput = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


def parse_duration(text: str, *, allow_never: bool = False) -> float | None:
    """Seconds in ``text`` (``90``, ``30s``, ``15m``, ``12h``, ``7d``); ``never`` is None.

    Raises ValueError with a message that says what is accepted.
    """
    cleaned = text.strip().lower()
    if allow_never and cleaned == "never":
        return None
    match = _DURATION.fullmatch(cleaned)
    seconds = float(match[1]) * DURATION_UNITS[match[2]] if match else math.nan
    if not math.isfinite(seconds):
        never = ", or 'never'" if allow_never else ""
        raise ValueError(f"{text!r} is not a duration: use {DURATION_HELP}{never}")
    return seconds


@app.command()
def reap(
    once: Annotated[
        bool, typer.Option("--once", help="Run one pass, print what it did, and exit.")
    ] = False,
    interval: Annotated[
        str, typer.Option(metavar="DURATION", help=f"Time between passes: {DURATION_HELP}.")
    ] = "5s",
    json_output: JsonOutput = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Take back jobs whose worker died: retry them with backoff, or fail them at max_attempts.

    Every `pgq work` already runs the reaper (one process at a time does the work).

    Run it alone with this command. Without --once it runs until SIGTERM/Ctrl-C.

    It also prunes finished jobs past their retention every minute (`pgq prune`).
    """
    seconds = _duration("--interval", interval)
    if not seconds:
        fail("--interval must be more than 0 seconds")
    url = _checked_url(database_url)
    if once:
        with _connection(url) as conn:
            result = _guard(lambda: reaper.reap_once(conn))
        _print_reap(result, json_output)
        return
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, stream=sys.stderr)
    logging.getLogger("pgq.reaper").info("reaping %s every %gs", redact(url), seconds)
    config = reaper.ReaperConfig(interval=seconds)
    on_pass = _print_pass_json if json_output else None
    _run_until_signal(lambda stop: reaper.run(url, config, stop, on_pass=on_pass))


@app.command()
def prune(
    succeeded_after: Annotated[
        str,
        typer.Option(
            metavar="DURATION", help="Delete succeeded jobs finished longer ago than this."
        ),
    ] = "1d",
    cancelled_after: Annotated[
        str,
        typer.Option(
            metavar="DURATION", help="Delete cancelled jobs finished longer ago than this."
        ),
    ] = "7d",
    failed_after: Annotated[
        str,
        typer.Option(metavar="DURATION", help="Delete failed jobs finished longer ago than this."),
    ] = "30d",
    batch_size: Annotated[
        int,
        typer.Option(min=1, max=100_000, metavar="N", help="Rows deleted per transaction."),
    ] = reaper.PRUNE_BATCH_SIZE_DEFAULT,
    json_output: JsonOutput = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Delete finished jobs older than their state's retention, in short batches.

    Durations: seconds, or a number with s, m, h or d (12h); 'never' keeps a state.

    Running and queued jobs are never deleted.

    Progress goes to stderr, totals to stdout.
    """
    config = reaper.ReaperConfig(
        prune_batch_size=batch_size,
        succeeded_retention=_duration("--succeeded-after", succeeded_after, allow_never=True),
        cancelled_retention=_duration("--cancelled-after", cancelled_after, allow_never=True),
        failed_retention=_duration("--failed-after", failed_after, allow_never=True),
    )
    url = _checked_url(database_url)
    progress = _Progress()
    with _connection(url) as conn:
        result = _guard(lambda: _prune_all(conn, config, progress))
    progress.done()
    if json_output:
        typer.echo(json.dumps(result.as_dict()))
        return
    parts = ", ".join(f"{result.deleted.get(s, 0)} {s}" for s in reaper.FINISHED_STATES)
    typer.echo(f"deleted {result.total} finished jobs ({parts}) in {result.batches} batches")


def _prune_all(
    conn: psycopg.Connection[Any], config: reaper.ReaperConfig, progress: _Progress
) -> reaper.PruneResult:
    """prune_once until done, waiting (a bounded time) while another process prunes."""
    deleted = dict.fromkeys(reaper.FINISHED_STATES, 0)
    batches = 0
    deadline = time.monotonic() + PRUNE_LOCK_WAIT_MAX
    while True:
        result = reaper.prune_once(conn, config, on_batch=progress.batch)
        batches += result.batches
        for state, count in result.deleted.items():
            deleted[state] += count
        if not result.locked_out:
            return reaper.PruneResult(deleted, batches)
        if time.monotonic() > deadline:
            fail(
                f"another process held the prune lock for {PRUNE_LOCK_WAIT_MAX:g}s "
                f"(after {sum(deleted.values())} rows were deleted); try again later"
            )
        time.sleep(0.5)


class _Progress:
    """A line on stderr every few seconds while a prune runs, so long runs show life."""

    def __init__(self) -> None:
        self.deleted = 0
        self.batches = 0
        self._last = time.monotonic()
        self._printed = False

    def batch(self, state: str, count: int) -> None:
        self.deleted += count
        self.batches += 1
        if time.monotonic() - self._last >= PROGRESS_EVERY:
            self._last = time.monotonic()
            self._printed = True
            typer.echo(
                f"pruning: {self.deleted} deleted in {self.batches} batches (now {state})",
                err=True,
            )

    def done(self) -> None:
        if self._printed:
            typer.echo(f"pruning: done, {self.deleted} deleted", err=True)


def _run_until_signal(target: Any) -> None:
    """Run ``target(stop)`` in a thread; SIGTERM/SIGINT set ``stop``; exit 0 when it returns.

    The loop runs in a thread so the signal handler (which runs in the main thread) never
    has to take a lock the interrupted code might hold.
    """
    stop = threading.Event()
    thread = threading.Thread(target=target, args=(stop,), name="pgq-reaper", daemon=True)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    thread.start()
    while thread.is_alive():
        thread.join(0.5)
    logging.getLogger("pgq.reaper").info("reaper stopped")


def _print_reap(result: reaper.ReapResult, json_output: bool) -> None:
    if json_output:
        typer.echo(json.dumps(result.as_dict()))
    elif result.locked_out:
        typer.echo("another process is reaping right now; this pass did nothing")
    else:
        typer.echo(
            f"reaped {len(result.jobs)} jobs: {result.count('queued')} requeued, "
            f"{result.count('failed')} failed, {result.count('cancelled')} cancelled"
        )


def _print_pass_json(reaped: reaper.ReapResult, pruned: reaper.PruneResult | None) -> None:
    # One line per pass that did something, for a log shipper.
    if reaped.jobs or (pruned is not None and pruned.total):
        line = {"reap": reaped.as_dict(), "prune": pruned.as_dict() if pruned else None}
        print(json.dumps(line), flush=True)


def _duration(option: str, text: str, *, allow_never: bool = False) -> float | None:
    try:
        return parse_duration(text, allow_never=allow_never)
    except ValueError as exc:
        fail(f"{option}: {exc}")


def _checked_url(database_url: str | None) -> str:
    """The resolved URL, after checking that the schema is there and current."""
    try:
        url = resolve_database_url(database_url)
        with connect(url) as conn:
            check_schema(conn)
    except PgqError as exc:
        fail(str(exc))
    return url


def _connection(url: str) -> psycopg.Connection[Any]:
    try:
        return connect(url, autocommit=True, application_name=reaper.APPLICATION_NAME)
    except PgqError as exc:
        fail(str(exc))


def _guard(action: Any) -> Any:
    """Run ``action()``; a database error becomes the CLI's one-line message."""
    try:
        return action()
    except psycopg.Error as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        fail(f"database error: {reason}; check the database and run the command again")
