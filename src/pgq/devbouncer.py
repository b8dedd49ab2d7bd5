"""A throwaway PgBouncer in front of a PostgreSQL server, for tests and benchmarks.

:func:`start` writes an ini file and an auth file in a temporary directory, starts the
``pgbouncer`` binary on a free port of 127.0.0.1 in the pooling mode asked for, waits until
it answers, and stops it afterwards. Clients connect without a password (``auth_type =
trust``); PgBouncer logs in to the server as the server URL's user, with its password.
Every database of the server is reachable through it by name.

:func:`session_state` reads what a pooled server connection carries from one client to the
next (prepared statements, session settings, LISTEN channels, advisory locks, temporary
tables): with a pool of one server connection it sees whatever any client left behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
from psycopg.conninfo import conninfo_to_dict

from pgq import store

BINARY_PATHS = ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer")
START_TIMEOUT = 10.0  # seconds for PgBouncer to answer
STOP_TIMEOUT = 5.0
# Parameters PgBouncer itself sets on a server connection to match each client; they are
# not state a client leaves behind.
TRACKED_PARAMETERS = frozenset(
    {"application_name", "client_encoding", "datestyle", "timezone", "standard_conforming_strings"}
)


class PgBouncerError(RuntimeError):
    """PgBouncer could not be started."""


def find_binary() -> str | None:
    """The path of ``pgbouncer`` (on $PATH or where Debian installs it), or None."""
    found = shutil.which("pgbouncer")
    return found or next((path for path in BINARY_PATHS if os.access(path, os.X_OK)), None)


@dataclass
class PgBouncer:
    """A running PgBouncer; :meth:`url` turns a database URL of its server into one via it."""

    host: str
    port: int
    pool_mode: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def url(self, database_url: str) -> str:
        """The same database and user, through this PgBouncer (no password: it trusts)."""
        params = conninfo_to_dict(database_url)
        user = quote(str(params.get("user") or "postgres"), safe="")
        dbname = quote(str(params.get("dbname") or "postgres"), safe="")
        return f"postgresql://{user}@{self.host}:{self.port}/{dbname}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextlib.contextmanager
def start(
    server_url: str,
    *,
    pool_mode: str = "transaction",
    pool_size: int = 1,
    max_client_conn: int = 200,
    binary: str | None = None,
) -> Iterator[PgBouncer]:
    """Run PgBouncer in front of the server of ``server_url`` until the block ends.

    ``pool_size`` is ``default_pool_size``: server connections per database and user, so
    with 1 every client of a database shares one server connection. Raises PgBouncerError
    when the binary is missing or PgBouncer does not answer.
    """
    binary = binary or find_binary()
    if binary is None:
        raise PgBouncerError("pgbouncer is not installed (apt-get install pgbouncer)")
    with tempfile.TemporaryDirectory(prefix="pgq-pgbouncer-") as tmp:
        directory = Path(tmp)
        port = _free_port()
        ini = _write_config(directory, server_url, port, pool_mode, pool_size, max_client_conn)
        log_path = directory / "pgbouncer.log"
        # PgBouncer refuses to run as root; -u drops to nobody after reading its files.
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        with log_path.open("wb") as out:
            process = subprocess.Popen(
                [binary, *user, str(ini)], stdout=out, stderr=subprocess.STDOUT
            )
        bouncer = PgBouncer("127.0.0.1", port, pool_mode, process, log_path)
        try:
            _wait_ready(bouncer, server_url)
            yield bouncer
        finally:
            _stop(process)


def _write_config(
    directory: Path, server_url: str, port: int, pool_mode: str, pool_size: int, clients: int
) -> Path:
    server = conninfo_to_dict(server_url)
    user = str(server.get("user") or "postgres")
    target = {
        "host": server.get("host") or "localhost",
        "port": server.get("port") or "5432",
        "user": user,
        "password": server.get("password"),
    }
    connstring = " ".join(f"{k}={_ini_value(str(v))}" for k, v in target.items() if v)
    auth_file = directory / "users.txt"
    auth_file.write_text(f'"{user}" ""\n')
    ini = directory / "pgbouncer.ini"
    ini.write_text(
        "[databases]\n"
        f"* = {connstring}\n"
        "[pgbouncer]\n"
        "listen_addr = 127.0.0.1\n"
        f"listen_port = {port}\n"
        "unix_socket_dir =\n"
        "auth_type = trust\n"
        f"auth_file = {auth_file}\n"
        f"pool_mode = {pool_mode}\n"
        f"default_pool_size = {pool_size}\n"
        f"max_client_conn = {clients}\n"
        # Never close an idle server connection (0: no timeout): a fresh one would hide
        # what the last client left on it. (server_lifetime's 0 would mean "use once".)
        "server_idle_timeout = 0\n"
    )
    return ini


def _ini_value(value: str) -> str:
    # libpq-style quoting inside PgBouncer's connection string.
    if value and not any(c in value for c in " '\\"):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(bouncer: PgBouncer, server_url: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    url = bouncer.url(server_url)
    while True:
        if bouncer.process.poll() is not None:
            raise PgBouncerError(f"pgbouncer exited at start:\n{bouncer.log()}")
        try:
            with psycopg.connect(url, connect_timeout=2, prepare_threshold=None):
                return
        except psycopg.OperationalError as exc:
            if time.monotonic() > deadline:
                raise PgBouncerError(f"pgbouncer does not answer: {exc}\n{bouncer.log()}") from None
        time.sleep(0.05)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(STOP_TIMEOUT)


@dataclass(frozen=True)
class SessionState:
    """What a server connection carries from one client to the next; empty when clean."""

    prepared_statements: list[str]
    settings: list[str]  # "name=value" of settings changed for the session
    listening: list[str]
    advisory_locks: int
    temp_tables: int

    @property
    def clean(self) -> bool:
        return not (
            self.prepared_statements
            or self.settings
            or self.listening
            or self.advisory_locks
            or self.temp_tables
        )


def session_state(conn: psycopg.Connection[Any]) -> SessionState:
    """The :class:`SessionState` of the server connection ``conn`` runs on now.

    ``conn`` must prepare nothing itself (``prepare_threshold=None``)."""
    prepared, settings, listening, locks, temps = store.fetch(conn, store.select_session_state())[0]
    return SessionState(
        prepared_statements=list(prepared),
        settings=[s for s in settings if s.partition("=")[0].lower() not in TRACKED_PARAMETERS],
        listening=list(listening),
        advisory_locks=int(locks),
        temp_tables=int(temps),
    )
