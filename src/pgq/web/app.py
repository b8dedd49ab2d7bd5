"""The dashboard's ASGI app: routes, rendering, authentication, actions and error pages.

Pages are rendered on the server (Jinja2) and refreshed in place by htmx, vendored in
``static/``: nothing is fetched from elsewhere at run time, and every page works without
JavaScript (it just does not refresh itself). Reads go through ``pgq.web.queries``,
actions through ``pgq.admin``; both are sync psycopg code, run in Starlette's thread pool
on connections from a small pool opened at the first request.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlencode

import jinja2
import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pgq import admin, db, limits, options, store
from pgq.errors import DatabaseUnavailableError, PgqError, ValidationError
from pgq.web import charts, queries
from pgq.web import store as web_store
from pgq.web.auth import CSRF_COOKIE, CSRF_FIELD, Auth, Csrf
from pgq.web.runs import Runs

log = logging.getLogger("pgq.web")

HERE = Path(__file__).parent
POOL_SIZE_DEFAULT = 4
POOL_TIMEOUT_DEFAULT = 5.0  # seconds a request waits for a connection before a 503 page
REFRESH_SECONDS_DEFAULT = 5
FORM_BYTES_MAX = 16 * 1024
SECURITY_HEADERS = {
    # Everything the pages need is served from here; nothing inline runs.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
READ_ONLY = (
    "This dashboard is read-only. Start it with --allow-actions (and credentials, see the "
    "dashboard docs) to retry, cancel or pause from here."
)
BAD_CSRF = (
    "The form's security token is missing or does not match this browser's cookie. "
    "Reload the page and try again."
)
T = TypeVar("T")
Endpoint = Callable[[Request], Awaitable[Response]]


def create_app(
    database_url: str | None = None,
    *,
    allow_actions: bool = False,
    auth: Auth | None = None,
    hide_args_for: Iterable[str] = (),
    csrf_secret: bytes | None = None,
    pool_size: int = POOL_SIZE_DEFAULT,
    refresh_seconds: int = REFRESH_SECONDS_DEFAULT,
) -> Starlette:
    """The dashboard as an ASGI app, to serve alone or mount under a prefix.

    Args:
        database_url: the PostgreSQL URL (None: $PGQ_DATABASE_URL, else $DATABASE_URL).
        allow_actions: offer retry, cancel and "retry all failed"; needs ``auth``. Without
            it every POST is refused with 403.
        auth: who may see the dashboard: a callable taking the Starlette request and
            returning the user's name, or None to refuse it (401). See
            [`basic_auth`][pgq.web.basic_auth] and [`token_auth`][pgq.web.token_auth],
            or read what your own middleware put on the request. None: no
            authentication (read-only only).
        hide_args_for: task name patterns (``fnmatch``, e.g. ``"billing.*"``) whose
            arguments and results are never shown.
        csrf_secret: the key CSRF tokens are signed with (None: $PGQ_DASHBOARD_SECRET, else
            a random one per process; give one to share between processes).
        pool_size: database connections the dashboard may hold.
        refresh_seconds: how often the live parts of a page refresh themselves.

    Raises:
        PgqError: actions asked for without ``auth``, or a database URL that is not valid.

    Example:
        ```python
        from fastapi import FastAPI
        import pgq.web

        app = FastAPI()
        app.mount("/pgq", pgq.web.create_app("postgresql://app@db/app"))
        ```
    """
    if allow_actions and auth is None:
        raise PgqError(
            "dashboard actions need authentication: pass auth= (pgq.web.basic_auth, "
            "pgq.web.token_auth or your own check), or for `pgq dashboard --allow-actions` "
            "set $PGQ_DASHBOARD_TOKEN or $PGQ_DASHBOARD_USER and $PGQ_DASHBOARD_PASSWORD"
        )
    dashboard = Dashboard(
        db.resolve_database_url(database_url),
        allow_actions=allow_actions,
        auth=auth,
        hide_args_for=tuple(hide_args_for),
        csrf=Csrf(csrf_secret),
        pool_size=pool_size,
        refresh_seconds=refresh_seconds,
    )
    return dashboard.app()


class Dashboard:
    """One dashboard: its settings, its connection pool, its routes."""

    def __init__(
        self,
        url: str,
        *,
        allow_actions: bool,
        auth: Auth | None,
        hide_args_for: tuple[str, ...],
        csrf: Csrf,
        pool_size: int,
        refresh_seconds: int,
    ) -> None:
        self._url = url
        self.allow_actions = allow_actions
        self._auth = auth
        self._hide_args_for = hide_args_for
        self._csrf = csrf
        self._pool_size = pool_size
        self.refresh_seconds = refresh_seconds
        self._pool: ConnectionPool[Any] | None = None
        self._pool_lock = threading.Lock()
        self.runs = Runs()
        self._templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self._templates.filters.update(when=format_time, ago=format_seconds, pretty=pretty_json)
        self._templates.globals.update(bar_chart=charts.bar_chart, states=admin.JOB_STATES)

    # --- the app ------------------------------------------------------------------------

    def app(self) -> Starlette:
        page, action = self._page, self._action
        routes = [
            Route("/", page(self.overview), name="overview"),
            Route("/jobs", page(self.jobs), name="jobs"),
            Route("/jobs/{job_id}", page(self.job), name="job"),
            Route("/failures", page(self.failures), name="failures"),
            Route("/runs/{run_id}", page(self.run), name="run"),
            Route("/schedules", page(self.schedules), name="schedules"),
            Route("/workers", page(self.workers), name="workers"),
            Route("/limits", page(self.limits), name="limits"),
            Route("/workflows", page(self.workflows), name="workflows"),
            Route("/workflows/{workflow_id}", page(self.workflow), name="workflow"),
            Route("/jobs/{job_id}/retry", action(self.retry_job), methods=["POST"]),
            Route("/jobs/{job_id}/cancel", action(self.cancel_job), methods=["POST"]),
            Route("/failures/retry", action(self.retry_failed), methods=["POST"]),
            Route("/queues/{queue}/pause", action(self.pause_queue), methods=["POST"]),
            Route("/queues/{queue}/resume", action(self.resume_queue), methods=["POST"]),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ]
        app = Starlette(
            routes=routes,
            exception_handlers={
                HTTPException: self._http_error,
                ValidationError: self._bad_input,
                DatabaseUnavailableError: self._database_down,
                PoolTimeout: self._database_down,
                psycopg.OperationalError: self._database_down,
                psycopg.errors.UndefinedTable: self._no_schema,
                psycopg.errors.UndefinedColumn: self._no_schema,
                psycopg.errors.InvalidSchemaName: self._no_schema,
                Exception: self._server_error,
            },
            middleware=[Middleware(ServerTiming)],
            lifespan=self._lifespan,
        )
        app.state.pgq_dashboard = self
        return app

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        # Only when served alone: a host app does not run a mounted app's lifespan, so the
        # pool is opened at the first request either way, and closed here or at exit.
        yield
        self.close()

    def close(self) -> None:
        """Close the connection pool (the next request opens a new one)."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled autocommit connection."""
        with self._get_pool().connection() as conn:
            yield conn

    def _get_pool(self) -> ConnectionPool[Any]:
        with self._pool_lock:
            if self._pool is None:
                pgbouncer = db.pgbouncer_mode()
                kwargs = db.connection_options(
                    {"autocommit": True, "application_name": "pgq dashboard"}, pgbouncer
                )
                self._pool = ConnectionPool(
                    self._url,
                    min_size=1,
                    max_size=self._pool_size,
                    kwargs=kwargs,
                    timeout=POOL_TIMEOUT_DEFAULT,
                    check=ConnectionPool.check_connection,
                    configure=None if pgbouncer else _setup_connection,
                    name="pgq-dashboard",
                    open=False,
                )
                self._pool.open(wait=False)
            return self._pool

    async def read(self, query: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``query(conn, *args, **kwargs)`` on a pooled connection, in a worker thread."""

        def call() -> T:
            with self.connection() as conn:
                return query(conn, *args, **kwargs)

        return await run_in_threadpool(call)

    def hides_args(self, task: str) -> bool:
        return any(fnmatch.fnmatchcase(task, pattern) for pattern in self._hide_args_for)

    # --- authentication, CSRF and rendering ---------------------------------------------

    def _page(self, endpoint: Endpoint) -> Endpoint:
        async def authenticated(request: Request) -> Response:
            self._authenticate(request)
            return await endpoint(request)

        return authenticated

    def _action(self, endpoint: Endpoint) -> Endpoint:
        async def checked(request: Request) -> Response:
            self._authenticate(request)
            if not self.allow_actions:
                raise HTTPException(403, READ_ONLY)
            form = await read_form(request)
            request.state.form = form
            if not self._csrf.check(request.cookies.get(CSRF_COOKIE), form.get(CSRF_FIELD)):
                raise HTTPException(403, BAD_CSRF)
            return await endpoint(request)

        return checked

    def _authenticate(self, request: Request) -> None:
        request.state.user = None
        if self._auth is None:
            return
        user = self._auth(request)
        if user is None:
            challenge = getattr(self._auth, "challenge", None)
            headers = {"WWW-Authenticate": challenge} if challenge else None
            raise HTTPException(401, "Sign in to see the pgq dashboard.", headers=headers)
        request.state.user = user

    def render(
        self, request: Request, template: str, status: int = 200, **context: Any
    ) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        cookie = request.cookies.get(CSRF_COOKIE)
        new_cookie = Csrf.new_cookie_value() if self.allow_actions and not cookie else None
        cookie = cookie or new_cookie
        html = self._templates.get_template(template).render(
            root=root,
            url=lambda path, **params: url(root, path, **params),
            actions=self.allow_actions,
            csrf_field=CSRF_FIELD,
            csrf_token=self._csrf.token_for(cookie) if self.allow_actions and cookie else "",
            user=getattr(request.state, "user", None),
            refresh=self.refresh_seconds,
            path=request.url.path,
            hides_args=self.hides_args,
            **context,
        )
        response = HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)
        if new_cookie is not None:
            response.set_cookie(
                CSRF_COOKIE,
                new_cookie,
                path=root or "/",
                httponly=True,
                samesite="strict",
                secure=request.url.scheme == "https",
            )
        return response

    def redirect(self, request: Request, path: str, **params: Any) -> RedirectResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return RedirectResponse(url(root, path, **params), status_code=303)

    # --- pages --------------------------------------------------------------------------

    async def overview(self, request: Request) -> Response:
        overview = await self.read(queries.overview)
        notice = QUEUE_NOTICES.get(request.query_params.get("notice") or "")
        return self.render(request, "overview.html", overview=overview, notice=notice,
                           page="overview")  # fmt: skip

    async def workers(self, request: Request) -> Response:
        found = await self.read(queries.workers)
        return self.render(request, "workers.html", workers=found, page="workers")

    async def limits(self, request: Request) -> Response:
        found = await self.read(queries.limits_page)
        return self.render(request, "limits.html", limits=found, page="limits")

    async def schedules(self, request: Request) -> Response:
        rows = await self.read(queries.schedules)
        return self.render(request, "schedules.html", schedules=rows, page="schedules")

    async def workflows(self, request: Request) -> Response:
        lookup = request.query_params.get("id", "").strip()
        if lookup:
            return self.redirect(request, f"/workflows/{parse_job_id(lookup)}")
        live = await self.read(queries.live_workflows)
        return self.render(request, "workflows.html", workflows=live, page="workflows")

    async def workflow(self, request: Request) -> Response:
        workflow_id = parse_job_id(request.path_params["workflow_id"])
        detail = await self.read(queries.get_workflow, workflow_id)
        if detail is None:
            raise HTTPException(404, f"There is no workflow {workflow_id}: no job of one has "
                                     "this id, or its jobs were pruned.")  # fmt: skip
        return self.render(request, "workflow.html", workflow=detail, page="workflows")

    async def jobs(self, request: Request) -> Response:
        params = request.query_params
        lookup = params.get("id", "").strip().lstrip("#")
        if lookup:
            return self.redirect(request, f"/jobs/{parse_job_id(lookup)}")
        job_filter = queries.JobFilter.parse(params)
        before = parse_job_id(params["before"]) if params.get("before") else None
        page = await self.read(queries.list_jobs, job_filter, before=before)
        return self.render(request, "jobs.html", jobs=page, job_filter=job_filter,
                           first_page=before is None, page="jobs")  # fmt: skip

    async def job(self, request: Request) -> Response:
        job_id = parse_job_id(request.path_params["job_id"])
        job = await self.read(queries.get_job, job_id)
        if job is None:
            raise HTTPException(404, f"There is no job {job_id}: it never existed, or it "
                                     "finished and was pruned.")  # fmt: skip
        notice = request.query_params.get("notice")
        return self.render(request, "job.html", job=job, notice=NOTICES.get(notice or ""),
                           page="jobs")  # fmt: skip

    async def failures(self, request: Request) -> Response:
        queue = request.query_params.get("queue") or None
        groups = await self.read(queries.failure_groups, queue=queue)
        return self.render(request, "failures.html", groups=groups, queue=queue,
                           page="failures")  # fmt: skip

    async def run(self, request: Request) -> Response:
        raw = request.path_params["run_id"]
        run = self.runs.get(int(raw)) if raw.isdigit() and len(raw) < 12 else None
        if run is None:
            raise HTTPException(404, f"There is no run {raw} in this dashboard process.")
        return self.render(request, "run.html", run=run, page="failures")

    # --- actions ------------------------------------------------------------------------

    async def retry_job(self, request: Request) -> Response:
        job_id = parse_job_id(request.path_params["job_id"])
        result = await self.read(admin.retry_jobs, [job_id])
        log.info("job %d: retry by %s: %s", job_id, _who(request), _outcome(result))
        if job_id in result.skipped and result.skipped[job_id] == "not found":
            raise HTTPException(404, f"There is no job {job_id}.")
        notice = "retried" if result.retried else "retry_skipped"
        return self.redirect(request, f"/jobs/{job_id}", notice=notice)

    async def cancel_job(self, request: Request) -> Response:
        job_id = parse_job_id(request.path_params["job_id"])
        result = await self.read(admin.cancel_jobs, [job_id])
        log.info("job %d: cancel by %s: %s", job_id, _who(request), _outcome(result))
        if job_id in result.skipped and result.skipped[job_id] == "not found":
            raise HTTPException(404, f"There is no job {job_id}.")
        notice = (
            "cancelled"
            if result.cancelled
            else "cancel_requested"
            if result.cancel_requested
            else "cancel_skipped"
        )
        return self.redirect(request, f"/jobs/{job_id}", notice=notice)

    async def retry_failed(self, request: Request) -> Response:
        form: dict[str, str] = request.state.form
        job_filter = queries.JobFilter.parse(
            {"queue": form.get("queue", ""), "task": form.get("task", "")}
        )
        run = await run_in_threadpool(
            self.runs.start_retry_failed,
            self.connection,
            queue=job_filter.queue,
            task=job_filter.task,
            user=_who(request),
        )
        return self.redirect(request, f"/runs/{run.id}")

    async def pause_queue(self, request: Request) -> Response:
        queue = options.check_queue(request.path_params["queue"])
        reason = request.state.form.get("reason", "").strip() or None
        reason = reason and f"{reason} (by {_who(request)}, dashboard)"
        await self.read(limits.pause_queue, queue, reason)
        log.info("queue %s: paused by %s", queue, _who(request))
        return self.redirect(request, "/", notice="paused")

    async def resume_queue(self, request: Request) -> Response:
        queue = options.check_queue(request.path_params["queue"])
        lifted = await self.read(limits.resume_queue, queue)
        log.info(
            "queue %s: resume by %s: %s", queue, _who(request), "done" if lifted else "not paused"
        )
        return self.redirect(request, "/", notice="resumed" if lifted else "not_paused")

    # --- errors -------------------------------------------------------------------------

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        response = self._error_page(request, exc.status_code, exc.detail)
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    async def _bad_input(self, request: Request, exc: Exception) -> Response:
        return self._error_page(request, 400, str(exc))

    async def _database_down(self, request: Request, exc: Exception) -> Response:
        log.warning("dashboard: the database cannot be reached: %s", _redacted(exc, self._url))
        return self._error_page(
            request,
            503,
            "The database cannot be reached. The dashboard shows data again as soon as it "
            "answers; the server's log says why it did not.",
        )

    async def _no_schema(self, request: Request, exc: Exception) -> Response:
        log.warning("dashboard: %s", _redacted(exc, self._url))
        return self._error_page(
            request,
            503,
            "This database has no pgq schema, or an older one: run `pgq migrate` against it.",
        )

    async def _server_error(self, request: Request, exc: Exception) -> Response:
        log.error("dashboard: %s %s failed", request.method, request.url.path, exc_info=exc)
        return self._error_page(
            request, 500, "The dashboard failed to show this page; the server's log says why."
        )

    def _error_page(self, request: Request, status: int, message: str) -> HTMLResponse:
        return self.render(request, "error.html", status=status, status_code=status,
                           message=message, page="")  # fmt: skip


class ServerTiming:
    """Adds ``Server-Timing: app;dur=MS`` to every response: the time the dashboard took
    to answer, which a browser's developer tools show and the benchmark reads."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def timed(message: Message) -> None:
            if message["type"] == "http.response.start":
                took = f"app;dur={(time.perf_counter() - started) * 1000:.1f}".encode()
                message = {
                    **message,
                    "headers": [*message.get("headers", []), (b"server-timing", took)],
                }
            await send(message)

        await self.app(scope, receive, timed)


QUEUE_NOTICES = {
    "paused": "The queue is paused: no worker claims its jobs until it is resumed.",
    "resumed": "The queue is resumed: workers claim its jobs again.",
    "not_paused": "The queue was not paused.",
}
NOTICES = {
    "retried": "The job is queued again; a worker will pick it up.",
    "retry_skipped": "The job was not retried: only a failed or cancelled job can be, and "
    "not while another live job holds its unique key.",
    "cancelled": "The job is cancelled.",
    "cancel_requested": "The job is running: its worker is asked to stop it at its next heartbeat.",
    "cancel_skipped": "The job was not cancelled: only a queued or running job can be.",
}


def url(root: str, path: str, **params: Any) -> str:
    """``root + path`` with the query parameters that are not None or empty."""
    query = urlencode({k: v for k, v in params.items() if v not in (None, "")})
    return f"{root}{path}" + (f"?{query}" if query else "")


def parse_job_id(text: str) -> int:
    """A job id from a URL or a form; ValidationError (a 400 page) when it is not one."""
    text = text.strip()
    if not text.isdigit() or len(text) > 19:
        raise ValidationError(f"{text[:40]!r} is not a job id (a positive whole number)")
    return admin.check_job_id(int(text))


async def read_form(request: Request) -> dict[str, str]:
    """An url-encoded form's fields (the last value of each); 413 past FORM_BYTES_MAX."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_BYTES_MAX:
            raise HTTPException(413, "The form is too large.")
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {name: values[-1] for name, values in fields.items()}


def format_time(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def format_seconds(seconds: float | None) -> str:
    """``42 s``, ``3 min``, ``5 h 10 min``, ``2 d 3 h``; ``-`` for None."""
    if seconds is None:
        return "-"
    sign, seconds = ("-" if seconds < 0 else ""), abs(seconds)
    if seconds < 60:
        return f"{sign}{seconds:.0f} s"
    if seconds < 3600:
        return f"{sign}{seconds // 60:.0f} min"
    if seconds < 86400:
        return f"{sign}{seconds // 3600:.0f} h {seconds % 3600 // 60:.0f} min"
    return f"{sign}{seconds // 86400:.0f} d {seconds % 86400 // 3600:.0f} h"


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


def _setup_connection(conn: psycopg.Connection[Any]) -> None:
    store.fetch(conn, web_store.setup_session())


def _who(request: Request) -> str:
    return getattr(request.state, "user", None) or "anonymous"


def _outcome(result: admin.RetryResult | admin.CancelResult) -> str:
    if isinstance(result, admin.RetryResult):
        return "retried" if result.retried else f"skipped ({', '.join(result.skipped.values())})"
    if result.cancelled:
        return "cancelled"
    if result.cancel_requested:
        return "stop requested"
    return f"skipped ({', '.join(result.skipped.values())})"


def _redacted(exc: BaseException, url: str) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text.replace(url, db.redact(url))
