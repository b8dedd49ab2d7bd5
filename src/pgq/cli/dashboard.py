"""`pgq dashboard`: serve the web dashboard (pgq.web) with uvicorn."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from pgq.cli import DatabaseUrl, app, fail
from pgq.db import connect, redact, resolve_database_url
from pgq.errors import DatabaseUnavailableError, MissingExtraError, PgqError
from pgq.migrate import check_schema

HOST_DEFAULT = "127.0.0.1"  # never reachable from elsewhere unless asked
PORT_DEFAULT = 8000
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@app.command()
def dashboard(
    database_url: DatabaseUrl = None,
    host: Annotated[
        str,
        typer.Option(
            metavar="ADDRESS",
            help="Address to listen on. The default answers this machine only; "
            "0.0.0.0 answers everyone (set credentials first).",
        ),
    ] = HOST_DEFAULT,
    port: Annotated[
        int, typer.Option(min=1, max=65535, metavar="PORT", help="Port to listen on.")
    ] = PORT_DEFAULT,
    allow_actions: Annotated[
        bool,
        typer.Option(
            "--allow-actions",
            help="Offer retry, cancel and retry-all-failed. Needs credentials: "
            "$PGQ_DASHBOARD_TOKEN, or $PGQ_DASHBOARD_USER and $PGQ_DASHBOARD_PASSWORD.",
        ),
    ] = False,
    root_path: Annotated[
        str,
        typer.Option(
            metavar="PATH",
            help="URL prefix a reverse proxy serves the dashboard under, e.g. /pgq.",
        ),
    ] = "",
) -> None:
    """Serve the web dashboard: queues, jobs, failures; read-only unless --allow-actions.

    Credentials come from the environment, never the command line: with
    $PGQ_DASHBOARD_TOKEN (or $PGQ_DASHBOARD_USER and $PGQ_DASHBOARD_PASSWORD) set, every
    page asks for them.
    """
    try:
        import uvicorn

        import pgq.web
    except MissingExtraError as exc:
        fail(str(exc))
    except ImportError:
        fail("pgq dashboard needs uvicorn: pip install 'pgq-jobs[web]'")
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    url = resolve_database_url(database_url)
    _check_database(url)
    try:
        auth = pgq.web.auth_from_env()
        web_app = pgq.web.create_app(url, allow_actions=allow_actions, auth=auth)
    except PgqError as exc:
        fail(str(exc))
    mode = "actions on" if allow_actions else "read-only"
    login = "credentials required" if auth is not None else "no credentials"
    typer.echo(
        f"pgq dashboard on http://{host}:{port}{root_path}/ ({mode}, {login}; "
        f"database {redact(url)})",
        err=True,
    )
    uvicorn.run(web_app, host=host, port=port, root_path=root_path, log_level="info")


def _check_database(url: str) -> None:
    """Refuse to start on a database without the pgq schema; start anyway (every page
    says so, and recovers) when the database does not answer yet."""
    try:
        with connect(url) as conn:
            check_schema(conn)
    except DatabaseUnavailableError as exc:
        logging.getLogger("pgq.web").warning("%s; starting anyway", exc)
    except PgqError as exc:
        fail(str(exc))
