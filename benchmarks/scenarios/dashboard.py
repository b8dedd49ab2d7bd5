"""The dashboard on a big table: each page's server time, and no sequential scan of jobs.

The table of benchmarks/views_population.sql (1,000,000 jobs finished over 7 days, 100,000
queued, 100 running, in 5 queues and 20 tasks), vacuumed and analysed as autovacuum would
leave it. The dashboard (``pgq.web.create_app``) is served by a real uvicorn in this
process; each page is loaded LOADS times after a warm-up load, and its figure is the
median of the ``Server-Timing`` the app reports (the time from the request reaching the
app to its response headers; the client's round trip is reported beside it). Target: a
median under 150 ms for every page.

1,000 workflows in progress (a group of 5 jobs and a callback each) are added for the
workflow pages. Then every statement each page runs is recorded during one more load and
explained with its parameters: no plan may contain a Seq Scan on pgq.jobs.
"""

from __future__ import annotations

import contextlib
import http.client
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg

from benchmarks.db import connect, fetch, fresh_database
from benchmarks.harness import Context, Result, Skipped

NAME = "dashboard"
LOADS, LOADS_QUICK = 20, 3
TARGET_MS = 150.0
POPULATION_SQL = Path(__file__).resolve().parents[1] / "views_population.sql"
# Page -> path on the population above. Job 500096 is a failed one (i % 100 = 96).
PAGES = {
    "overview": "/",
    "jobs": "/jobs",
    "jobs_older": "/jobs?before=500000",
    "jobs_failed": "/jobs?state=failed",
    "jobs_running": "/jobs?state=running",
    "jobs_queued_q1": "/jobs?state=queued&queue=q1",
    "jobs_task": "/jobs?task=task.3",
    "jobs_task_absent": "/jobs?task=no.such.task",
    "job": "/jobs/500096",
    "failures": "/failures",
    "failures_q3": "/failures?queue=q3",
    "workers": "/workers",
    "limits": "/limits",
    "schedules": "/schedules",
    "workflows": "/workflows",
    "workflow": "/workflows/{workflow}",  # one of the WORKFLOWS below, half done
}
# Live workflows beside the population: a group of 5 jobs and a callback each.
WORKFLOWS, WORKFLOWS_QUICK = 1000, 50


def run(ctx: Context) -> Iterator[Result]:
    try:
        import pgq.web
    except ImportError as exc:
        raise Skipped(f"the web extra is not installed: {exc}") from None
    loads = ctx.size(LOADS, LOADS_QUICK)
    with fresh_database(ctx.server) as url:
        ctx.log("dashboard: loading 1,100,100 jobs")
        with connect(url) as conn:
            conn.execute(POPULATION_SQL.read_bytes())
            workflow = add_workflows(conn, ctx.size(WORKFLOWS, WORKFLOWS_QUICK))
            fetch(conn, "job_vacuum_analyze")
        paths = {page: path.format(workflow=workflow) for page, path in PAGES.items()}
        app = pgq.web.create_app(url)
        with serve(app) as base, connect(url) as conn:
            for page, path in paths.items():
                yield _timed(page, base + path, loads)
            yield _plans(conn, base, paths)


def _timed(page: str, url: str, loads: int) -> Result:
    get(url)  # warm-up: the pool's connection, the plan cache, the pages in shared buffers
    server_ms, round_trip_ms = [], []
    for _ in range(loads):
        started = time.perf_counter()
        status, timing = get(url)
        round_trip_ms.append((time.perf_counter() - started) * 1000)
        if status != 200:
            raise RuntimeError(f"{url} answered {status}")
        server_ms.append(timing)
    median = statistics.median(server_ms)
    return Result(
        NAME,
        page,
        loads,
        median / 1000,
        {
            "median_ms": median,
            "max_ms": max(server_ms),
            "round_trip_median_ms": statistics.median(round_trip_ms),
        },
        target=f"median < {TARGET_MS:.0f} ms",
        met=median < TARGET_MS,
    )


def add_workflows(conn: psycopg.Connection[Any], n: int) -> int:
    """``n`` workflows of a group of 5 jobs and a callback; returns the id of one in the
    middle, its first job marked succeeded (so it shows progress)."""
    import pgq

    ids = []
    for i in range(n):
        members = [pgq.JobSpec("bench.asset", {"asset": k}, queue="assets") for k in range(5)]
        done = pgq.group(members).then(pgq.JobSpec("bench.notify", {"flow": i})).enqueue(conn)
        ids.append(done.id)
    middle = ids[len(ids) // 2]
    fetch(conn, "dashboard_job_succeed", {"id": middle})
    return middle


def _plans(conn: psycopg.Connection[Any], base: str, paths: dict[str, str]) -> Result:
    statements = 0
    scans: list[str] = []
    started = time.perf_counter()
    for page, path in paths.items():
        for statement in page_statements(lambda p=path: get(base + p)):
            statements += 1
            plan = explain(conn, statement.query, statement.params)
            scans += [f"{page}: {statement.name}: {scan}" for scan in seq_scans_of_jobs(plan)]
    return Result(
        NAME,
        "plans",
        statements,
        time.perf_counter() - started,
        {"pages": len(paths), "seq_scans_of_jobs": scans},
        target="no Seq Scan on pgq.jobs",
        met=not scans,
    )


# --- shared with tests/integration/test_web_plans.py and the dashboard's tests ------------


def page_statements(load: Callable[[], object]) -> list[Any]:
    """The pgq statements (``pgq.store.Statement``) run while ``load()`` runs, in order.

    Every pgq statement goes through ``pgq.store.fetch``, looked up at call time, so
    wrapping it sees them all, in whichever thread the dashboard runs them."""
    from pgq import store

    seen: list[store.Statement] = []
    real_fetch = store.fetch

    def fetch(conn: Any, statement: store.Statement) -> list[store.Row]:
        seen.append(statement)
        return real_fetch(conn, statement)

    store.fetch = fetch  # type: ignore[assignment]
    try:
        load()
    finally:
        store.fetch = real_fetch  # type: ignore[assignment]
    return seen


def explain(conn: psycopg.Connection[Any], query: bytes, params: dict[str, Any]) -> dict[str, Any]:
    """The ``EXPLAIN (FORMAT JSON)`` plan of ``query`` with ``params``."""
    row = conn.execute(b"EXPLAIN (FORMAT JSON) " + query, params).fetchone()
    assert row is not None
    plan: dict[str, Any] = row[0][0]["Plan"]
    return plan


def seq_scans_of_jobs(plan: dict[str, Any]) -> list[str]:
    """Every node of an EXPLAIN (FORMAT JSON) plan that reads pgq.jobs sequentially."""
    found = []
    if plan.get("Node Type") == "Seq Scan" and plan.get("Relation Name") == "jobs":
        found.append("Seq Scan on pgq.jobs")
    for child in plan.get("Plans", []):
        found += seq_scans_of_jobs(child)
    return found


@contextlib.contextmanager
def serve(app: Any, *, root_path: str = "") -> Iterator[str]:
    """Serve the ASGI ``app`` with uvicorn in a thread, on a free local port; yields its
    base URL."""
    import uvicorn

    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", root_path=root_path, lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="pgq-dashboard", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    if not server.started:
        raise RuntimeError("uvicorn did not start")
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def get(url: str) -> tuple[int, float]:
    """GET ``url``; its status and the app's Server-Timing in milliseconds."""
    host, _, path = url.removeprefix("http://").partition("/")
    conn = http.client.HTTPConnection(host, timeout=60)
    try:
        conn.request("GET", "/" + path)
        response = conn.getresponse()
        response.read()
        timing = response.getheader("server-timing", "app;dur=nan")
        return response.status, float(timing.partition("dur=")[2])
    finally:
        conn.close()
