"""Procrastinate's side of the peers run (``make bench-peers``): its app and tasks.

Imported by the benchmark and by ``procrastinate --app benchmarks.apps.procrastinate_app.app
worker``; the database URL comes from ``$PGQ_BENCH_PEER_URL``. Only importable in the
peers' venv (.venv-peers), where procrastinate is installed.
"""

import os
import threading
from typing import Any

import psycopg
from procrastinate import App, JobContext, PsycopgConnector

from benchmarks.db import sql

PEER_URL_ENV = "PGQ_BENCH_PEER_URL"

app = App(connector=PsycopgConnector(conninfo=os.environ.get(PEER_URL_ENV, "")))

_lock = threading.Lock()
_ledger: list[psycopg.Connection[Any]] = []


@app.task(name="noop")
def noop(**_args: Any) -> None:
    return None


@app.task(name="record_start", pass_context=True)
def record_start(context: JobContext, **_args: Any) -> None:
    """Write the server's clock into the ledger first thing (see scenarios/latency.py)."""
    with _lock:
        if not _ledger:
            _ledger.append(psycopg.connect(os.environ[PEER_URL_ENV], autocommit=True))
        assert context.job.id is not None
        _ledger[0].execute(sql("ledger_insert"), {"job_id": context.job.id})
