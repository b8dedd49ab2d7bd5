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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

TEST_URL_ENV = "PGQ_TEST_DATABASE_URL"
LOCAL_URL = "postgresql://postgres@localhost:5432/postgres"
POSTGRES_IMAGE = "postgres:16-alpine"


@dataclass
class Server:
    url: str  # a URL of the server's maintenance database
    source: str  # how it was found, for humans

    def database_url(self, dbname: str) -> str:
        return psycopg.conninfo.make_conninfo(self.url, dbname=dbname)


@contextlib.contextmanager
def find_server(*, log: Callable[[str], None] = lambda _: None) -> Iterator[Server]:
    """Yield the first server that answers; stop it afterwards if it was started here."""
    if os.environ.get(TEST_URL_ENV):
        yield Server(os.environ[TEST_URL_ENV], f"${TEST_URL_ENV}")
        return
    if docker_answers():
        log("a Docker engine answers: starting PostgreSQL with testcontainers")
        with _testcontainer() as server:
            yield server
        return
    if answers(LOCAL_URL):
        yield Server(LOCAL_URL, "the server on localhost:5432")
        return
    log("no server on localhost:5432: starting a throwaway cluster with initdb")
    with throwaway_cluster() as server:
        yield server


@contextlib.contextmanager
def scratch_database(server: Server, prefix: str = "pgq_test") -> Iterator[str]:
    """Create a fresh database on ``server``, yield its URL, drop it afterwards."""
    name = f"{prefix}_{os.getpid()}_{os.urandom(3).hex()}"
    with psycopg.connect(server.url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield server.database_url(name)
    finally:
        with psycopg.connect(server.url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def answers(url: str, timeout: int = 2) -> bool:
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
        client = docker.from_env(timeout=3)
        client.ping()
        return True
    except Exception:
        return False


@contextlib.contextmanager
def _testcontainer() -> Iterator[Server]:
    from testcontainers.postgres import PostgresContainer

    with PostgresContainer(POSTGRES_IMAGE, driver=None) as container:
        yield Server(container.get_connection_url(), f"testcontainers ({POSTGRES_IMAGE})")


@contextlib.contextmanager
def throwaway_cluster(port: int | None = None) -> Iterator[Server]:
    """initdb + pg_ctl in a temporary directory; stopped and removed afterwards.

    PostgreSQL refuses to run as root, so as root the cluster runs as the ``postgres`` user.
    """
    initdb = shutil.which("initdb") or _pg_bin("initdb")
    pg_ctl = shutil.which("pg_ctl") or _pg_bin("pg_ctl")
    port = port or free_port()
    root = Path(tempfile.mkdtemp(prefix="pgq-cluster-"))
    data, sockets = root / "data", root / "sockets"
    sockets.mkdir()
    as_user = _run_as_postgres(root)
    subprocess.run(
        [
            *as_user,
            initdb,
            "-D",
            str(data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
            "-E",
            "UTF8",
        ],
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(
        [
            *as_user,
            pg_ctl,
            "-D",
            str(data),
            "-o",
            options,
            "-l",
            str(root / "server.log"),
            "-w",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        yield Server(
            f"postgresql://postgres@127.0.0.1:{port}/postgres",
            f"a throwaway cluster in {root} (port {port})",
        )
    finally:
        subprocess.run(
            [*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run_as_postgres(root: Path) -> list[str]:
    if os.geteuid() != 0:
        return []
    shutil.chown(root, "postgres")
    for child in root.iterdir():
        shutil.chown(child, "postgres")
    return ["runuser", "-u", "postgres", "--"]


def _pg_bin(name: str) -> str:
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True)
    if not candidates:
        raise FileNotFoundError(
            f"{name} not found: install PostgreSQL's server binaries or set PGQ_TEST_DATABASE_URL"
        )
    return str(candidates[0])
