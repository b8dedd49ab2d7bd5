"""`pgq work`: run workers for the tasks of one or more application modules."""

from __future__ import annotations

import importlib
import logging
import os
import sys
from typing import Annotated

import typer

from pgq import options
from pgq.children import POOL_DEFAULT, POOLS
from pgq.cli import DatabaseUrl, app, fail
from pgq.db import (
    DIRECT_URL_ENV,
    PGBOUNCER_ENV,
    connect,
    pgbouncer_mode,
    redact,
    resolve_database_url,
    resolve_direct_url,
)
from pgq.errors import PgqError
from pgq.migrate import check_schema, foreign_revisions_message
from pgq.registry import LEASE_DEFAULT, REGISTRY
from pgq.worker import (
    CONCURRENCY_DEFAULT,
    GRACE_DEFAULT,
    POLL_INTERVAL_DEFAULT,
    POLL_INTERVAL_POLL_ONLY_DEFAULT,
    Worker,
    WorkerConfig,
)

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@app.command()
def work(
    apps: Annotated[
        list[str],
        typer.Option(
            "--app",
            envvar="PGQ_APP",
            metavar="MODULE",
            help="Module that registers tasks with @pgq.task, e.g. myapp.jobs. Repeatable; "
            "$PGQ_APP may list several, comma-separated.",
        ),
    ] = [],  # noqa: B006
    queues: Annotated[
        list[str],
        typer.Option(
            "--queue",
            "-q",
            metavar="QUEUE",
            help="Queue to work on. Repeatable. Default: every queue the registered tasks use.",
            show_default=False,
        ),
    ] = [],  # noqa: B006
    concurrency: Annotated[
        int,
        typer.Option(
            min=1, max=1000, metavar="N", help="How many jobs run at once in this process."
        ),
    ] = CONCURRENCY_DEFAULT,
    lease: Annotated[
        float,
        typer.Option(
            min=1.0,
            metavar="SECONDS",
            help="Seconds a claimed job stays ours without a heartbeat. A task's own "
            "lease= wins; heartbeats renew every lease a third of the shortest one held.",
        ),
    ] = LEASE_DEFAULT,
    poll_interval: Annotated[
        float | None,
        typer.Option(
            min=0.01,
            metavar="SECONDS",
            help="Seconds between polls when no notification arrives (the fallback "
            "to LISTEN, and how scheduled jobs are found). Default: "
            f"{POLL_INTERVAL_DEFAULT}, or {POLL_INTERVAL_POLL_ONLY_DEFAULT} when "
            "the worker does not LISTEN (--pgbouncer without --direct-url).",
            show_default=False,
        ),
    ] = None,
    grace: Annotated[
        float,
        typer.Option(
            min=0.0,
            metavar="SECONDS",
            help="Seconds running jobs get to finish after SIGTERM/SIGINT; the rest "
            "are given back to the queue, not counted as an attempt.",
        ),
    ] = GRACE_DEFAULT,
    burst: Annotated[
        bool, typer.Option("--burst", help="Exit 0 once nothing is due and nothing is running.")
    ] = False,
    reaper: Annotated[
        bool,
        typer.Option(
            "--reaper/--no-reaper",
            help="Also run the reaper in this process (only one "
            "process in the cluster does its work at a time).",
        ),
    ] = True,
    schedules: Annotated[
        bool,
        typer.Option(
            "--schedules/--no-schedules",
            help="Also enqueue the due ticks of the app's recurring jobs (@pgq.periodic, "
            "pgq.schedule) from this process; any number of workers may, each tick "
            "makes one job.",
        ),
    ] = True,
    keep_missing_schedules: Annotated[
        bool,
        typer.Option(
            "--keep-missing-schedules",
            help="Leave active the schedules in the database that this app does not "
            "define (several apps with different schedules share the database). "
            "Default: mark them inactive at start.",
        ),
    ] = False,
    log_level: Annotated[
        str, typer.Option(metavar="LEVEL", help="DEBUG, INFO, WARNING or ERROR.")
    ] = "INFO",
    metrics_port: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=65535,
            metavar="PORT",
            help="Serve Prometheus metrics on this port (http://0.0.0.0:PORT/metrics), "
            "e.g. 9464. Needs prometheus_client (the metrics extra of pgq). Default: off.",
            show_default=False,
        ),
    ] = None,
    pgbouncer: Annotated[
        bool | None,
        typer.Option(
            "--pgbouncer/--no-pgbouncer",
            help="The database URL goes through PgBouncer in transaction pooling mode: no "
            "prepared statements or session settings, and LISTEN only on --direct-url. "
            f"Default: ${PGBOUNCER_ENV} (1 or 0), else off.",
            show_default=False,
        ),
    ] = None,
    direct_url: Annotated[
        str | None,
        typer.Option(
            "--direct-url",
            envvar=DIRECT_URL_ENV,
            metavar="URL",
            help="PostgreSQL URL without the pooler, for LISTEN (wake-ups within "
            "milliseconds). Default: none in PgBouncer mode (the worker polls), else the "
            "database URL.",
            show_default=False,
        ),
    ] = None,
    pool: Annotated[
        str,
        typer.Option(
            metavar="KIND",
            help="Where sync tasks run: thread (this process's threads) or process (child "
            "processes that a timeout or cancel stops; docs/workers.md, 'Process pool').",
        ),
    ] = POOL_DEFAULT,
    max_jobs_per_child: Annotated[
        int | None,
        typer.Option(
            min=1,
            metavar="N",
            help="--pool process: replace a child process after it ran N jobs. Default: never.",
            show_default=False,
        ),
    ] = None,
    max_child_memory: Annotated[
        float | None,
        typer.Option(
            min=1.0,
            metavar="MB",
            help="--pool process: replace a child process whose resident memory is over MB "
            "megabytes after a job. Default: no limit.",
            show_default=False,
        ),
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Run a worker: claim due jobs, run them, retry failures; stop gracefully on SIGTERM."""
    _configure_logging(log_level)
    try:
        url = resolve_database_url(database_url)
        listen_url = resolve_direct_url(direct_url)
        pooled = pgbouncer_mode() if pgbouncer is None else pgbouncer
        _import_apps(apps)
        if len(REGISTRY) == 0:
            fail(
                "no task is registered: pass --app with the module that defines your "
                "@pgq.task functions (or set PGQ_APP)"
            )
        for queue in queues:
            options.check_queue(queue)
        _check_pool(pool, max_jobs_per_child, max_child_memory)
        with connect(url, pgbouncer=pooled) as conn:
            check_schema(conn)
    except PgqError as exc:
        fail(str(exc))
    config = WorkerConfig(
        url,
        queues or None,
        concurrency,
        lease,
        poll_interval,
        grace,
        burst,
        run_reaper=reaper,
        run_scheduler=schedules,
        deactivate_missing_schedules=not keep_missing_schedules,
        pgbouncer=pooled,
        listen_url=listen_url,
        pool=pool,
        apps=_app_names(apps),
        max_jobs_per_child=max_jobs_per_child,
        max_child_memory=max_child_memory,
    )
    logging.getLogger("pgq.worker").info("connecting to %s", redact(url))
    if (foreign := foreign_revisions_message()) is not None:
        logging.getLogger("pgq.worker").warning("%s", foreign)
    events = None
    if metrics_port is not None:
        try:
            from pgq.metrics import serve_metrics
        except ImportError:
            fail("--metrics-port needs prometheus_client: pip install 'pgq-jobs[metrics]'")
        events = serve_metrics(metrics_port, url, queues=queues or REGISTRY.queues()).events
    worker = Worker(config, events=events)
    worker.run()
    if worker.abandoned_threads:
        # Sync tasks that ignored the shutdown are still in their threads; their jobs were
        # given back, and Python would wait for the threads forever at exit.
        logging.shutdown()
        os._exit(0)


def _check_pool(pool: str, max_jobs: int | None, max_memory: float | None) -> None:
    if pool not in POOLS:
        fail(f"--pool {pool!r} is not one of {', '.join(POOLS)}")
    if pool != "process":
        for given, name in ((max_jobs, "--max-jobs-per-child"), (max_memory, "--max-child-memory")):
            if given is not None:
                fail(f"{name} applies to child processes: add --pool process")


def _app_names(apps: list[str]) -> list[str]:
    return [name.strip() for entry in apps for name in entry.split(",") if name.strip()]


def _import_apps(apps: list[str]) -> None:
    names = _app_names(apps)
    if not names:
        fail("no --app given: pass the module that defines your tasks, e.g. --app myapp.jobs")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like `python -m`, so --app finds the project
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as exc:  # the app's own import-time errors too, in one line
            fail(f"cannot import --app {name!r}: {type(exc).__name__}: {exc}")


def _configure_logging(level: str) -> None:
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        fail(f"--log-level {level!r} is not one of DEBUG, INFO, WARNING, ERROR")
    logging.basicConfig(level=numeric, format=LOG_FORMAT, stream=sys.stderr)
