"""Find a PostgreSQL server for tests and the demo, the way DESIGN.md orders it.

1. ``PGQ_TEST_DATABASE_URL`` when set;
2. a testcontainers PostgreSQL when a Docker engine answers;
3. a server on ``localhost:5432``;
4. a throwaway cluster started from the local ``initdb``/``pg_ctl`` in a temporary directory.

Every source yields a server URL; callers create (and drop) their own database on it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from psycopg import sql

from pgq.db import to_libpq_url

TEST_URL_ENV = "PGQ_TEST_DATABASE_URL"
LOCAL_URL = "postgresql://postgres@localhost:5432/postgres"
POSTGRES_IMAGE = "postgres:16-alpine"
PROBE_TIMEOUT_DEFAULT = 2  # seconds to wait for a server (or a Docker engine) to answer
# Enough to fail a "CREATE DATABASE" stuck behind another session's template lock quickly.
ADMIN_CONNECT_TIMEOUT = 10


@dataclass
class Server:
    url: str  # a URL of the server's maintenance database
    source: str  # how it was found, for humans
    data_dir: Path | None = None  # set for a throwaway cluster: removed when it stops

    def database_url(self, dbname: str) -> str:
        """The URL of database ``dbname`` on this server (a URL, not a key=value string)."""
        return urlunsplit(urlsplit(self.url)._replace(path="/" + quote(dbname, safe="")))


@contextlib.contextmanager
def find_server(
    *, log: Callable[[str], None] = lambda _: None, local_url: str = LOCAL_URL
) -> Iterator[Server]:
    """Yield the first server that answers; stop it afterwards if it was started here.

    ``local_url`` is the server probed in step 3 (tests point it elsewhere to reach step 4).
    """
    if os.environ.get(TEST_URL_ENV):
        yield Server(to_libpq_url(os.environ[TEST_URL_ENV]), f"${TEST_URL_ENV}")
        return
    if docker_answers():
        log("a Docker engine answers: starting PostgreSQL with testcontainers")
        with _testcontainer() as server:
            yield server
        return
    where = urlsplit(local_url).netloc.rpartition("@")[2]
    if answers(local_url):
        yield Server(local_url, f"the server on {where}")
        return
    log(f"no server answers on {where}: starting a throwaway cluster with initdb")
    with throwaway_cluster() as server:
        yield server


@contextlib.contextmanager
def scratch_database(server: Server, prefix: str = "pgq_test") -> Iterator[str]:
    """Create a fresh database on ``server``, yield its URL, drop it afterwards."""
    name = f"{prefix}_{os.getpid()}_{os.urandom(3).hex()}"
    url = recreate_database(server, name)
    try:
        yield url
    finally:
        drop_database(server, name)


def recreate_database(server: Server, name: str) -> str:
    """Drop database ``name`` if it exists (disconnecting its sessions), create it empty."""
    drop_database(server, name)
    with psycopg.connect(server.url, autocommit=True, connect_timeout=ADMIN_CONNECT_TIMEOUT) as c:
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return server.database_url(name)


def drop_database(server: Server, name: str) -> None:
    """Drop database ``name`` if it exists, even while sessions are connected to it."""
    with psycopg.connect(server.url, autocommit=True, connect_timeout=ADMIN_CONNECT_TIMEOUT) as c:
        c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def answers(url: str, timeout: int = PROBE_TIMEOUT_DEFAULT) -> bool:
    """True when a PostgreSQL server accepts a connection to ``url``."""
    try:
        with psycopg.connect(url, connect_timeout=timeout):
            return True
    except psycopg.OperationalError:
        return False


def docker_answers() -> bool:
    """True when a Docker engine responds (not merely when the client is installed)."""
    try:
        import docker  # type: ignore[import-untyped]
    except ImportError:
        return False
    try:
        client = docker.from_env(timeout=PROBE_TIMEOUT_DEFAULT)
        client.ping()
        return True
    except Exception:  # no socket, no permission, engine down: all mean "no Docker here"
        return False


@contextlib.contextmanager
def _testcontainer() -> Iterator[Server]:
    try:
        from testcontainers.community.postgres import PostgresContainer
    except ImportError:  # testcontainers before the "community" split
        from testcontainers.postgres import PostgresContainer

    with PostgresContainer(POSTGRES_IMAGE, driver=None) as container:
        yield Server(container.get_connection_url(), f"testcontainers ({POSTGRES_IMAGE})")


@contextlib.contextmanager
def throwaway_cluster(
    port: int | None = None, settings: Mapping[str, str] | None = None
) -> Iterator[Server]:
    """initdb + pg_ctl in a temporary directory; stopped and removed afterwards.

    ``settings`` are server parameters (``{"max_prepared_transactions": "5"}``), given to
    the server as ``-c name=value`` at start.

    PostgreSQL refuses to run as root, so as root the cluster runs as the ``postgres`` user.
    Raises RuntimeError, with the tool's own output, when the cluster cannot be started.
    """
    port = port or free_port()
    root = Path(tempfile.mkdtemp(prefix="pgq-cluster-"))
    data = root / "data"
    try:
        (root / "sockets").mkdir()
        as_user = _run_as_postgres(root)
        _initdb(as_user, data)
        options = _server_options(root, port) + "".join(
            f" -c {name}={value}" for name, value in (settings or {}).items()
        )
        _pg_ctl(as_user, data, "start", "-o", options, "-l", root / "log")
        try:
            yield Server(
                f"postgresql://postgres@127.0.0.1:{port}/postgres",
                f"a throwaway cluster in {root} (port {port})",
                data_dir=root,
            )
        finally:
            # immediate: nothing in a throwaway cluster is worth a checkpoint.
            _pg_ctl(as_user, data, "stop", "-m", "immediate", check=False)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _initdb(as_user: list[str], data: Path) -> None:
    args = ["-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"]
    _run([*as_user, _pg_bin("initdb"), *args])


def _pg_ctl(
    as_user: list[str], data: Path, action: str, *options: str | Path, check: bool = True
) -> None:
    command = [*as_user, _pg_bin("pg_ctl"), "-D", str(data), "-w", *map(str, options), action]
    _run(command, check=check)


def _server_options(root: Path, port: int) -> str:
    # fsync off: a throwaway cluster trades durability for speed; it never outlives the run.
    return f"-p {port} -k {root / 'sockets'} -c listen_addresses=127.0.0.1 -c fsync=off"


def _run(command: list[str], check: bool = True) -> None:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        output = " ".join((done.stderr or done.stdout).split())
        raise RuntimeError(f"`{' '.join(command)}` failed: {output}")


def _run_as_postgres(root: Path) -> list[str]:
    if os.geteuid() != 0:
        return []
    shutil.chown(root, "postgres")
    for child in root.iterdir():
        shutil.chown(child, "postgres")
    return ["runuser", "-u", "postgres", "--"]


def _pg_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    # Debian layout, newest major version first (numerically: 9 is older than 15).
    candidates = sorted(
        Path("/usr/lib/postgresql").glob(f"*/bin/{name}"),
        key=lambda path: int(path.parent.parent.name) if path.parent.parent.name.isdigit() else 0,
        reverse=True,
    )
    if not candidates:
        raise FileNotFoundError(
            f"{name} not found: install PostgreSQL's server binaries or set {TEST_URL_ENV}"
        )
    return str(candidates[0])
