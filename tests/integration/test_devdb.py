"""How the suite (and `make demo`) finds PostgreSQL, in DESIGN.md's order, for real."""

from __future__ import annotations

import psycopg
import pytest

from pgq import devdb, migrate


def current_database(url: str) -> str:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT current_database()").fetchone()
    assert row is not None
    return str(row[0])


def database_exists(server: devdb.Server, name: str) -> bool:
    with psycopg.connect(server.url) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    return found is not None


def dead_url() -> str:
    return f"postgresql://postgres@127.0.0.1:{devdb.free_port()}/postgres"


def test_the_environment_url_wins(pg_server: devdb.Server, monkeypatch: pytest.MonkeyPatch) -> None:
    # A database that no other source would pick, in SQLAlchemy's spelling: it must be
    # used as given (normalised for libpq), before Docker or localhost are even probed.
    with devdb.scratch_database(pg_server, prefix="pgq_env") as url:
        name = current_database(url)
        monkeypatch.setenv(
            devdb.TEST_URL_ENV, url.replace("postgresql://", "postgresql+psycopg://")
        )

        with devdb.find_server(local_url=dead_url()) as server:
            assert server.source == f"${devdb.TEST_URL_ENV}"
            assert current_database(server.url) == name


def test_testcontainers_only_when_a_docker_engine_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(devdb.TEST_URL_ENV, raising=False)
    docker = devdb.docker_answers()

    with devdb.find_server() as server:
        assert server.source.startswith("testcontainers") is docker
        assert devdb.answers(server.url)


def test_testcontainers_server_accepts_connections() -> None:
    if not devdb.docker_answers():
        pytest.skip("no Docker engine answers")
    with devdb.find_server() as server:
        assert server.source.startswith("testcontainers")
        with devdb.scratch_database(server) as url:
            migrate.upgrade(url)


def test_without_docker_or_local_server_a_throwaway_cluster_starts_and_goes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if devdb.docker_answers():
        pytest.skip("a Docker engine answers, so the throwaway cluster is never reached")
    monkeypatch.delenv(devdb.TEST_URL_ENV, raising=False)
    log: list[str] = []

    with devdb.find_server(log=log.append, local_url=dead_url()) as server:
        assert server.data_dir is not None and server.data_dir.is_dir()
        assert any("throwaway cluster" in line for line in log)
        with psycopg.connect(server.url) as conn:
            data_directory = conn.execute("SHOW data_directory").fetchone()
        assert data_directory is not None
        assert data_directory[0].startswith(str(server.data_dir))
        with devdb.scratch_database(server) as url:
            migrate.upgrade(url)
            with psycopg.connect(url) as conn:
                migrate.check_schema(conn)

    assert not server.data_dir.exists()
    assert not devdb.answers(server.url, timeout=1)


def test_scratch_database_creates_and_drops_even_with_sessions_open(
    pg_server: devdb.Server,
) -> None:
    with devdb.scratch_database(pg_server, prefix="pgq_scratch") as url:
        name = current_database(url)
        assert name.startswith("pgq_scratch_")
        lingering = psycopg.connect(url)  # a test that forgot to close its connection

    try:
        assert not database_exists(pg_server, name)
    finally:
        lingering.close()


def test_recreate_database_starts_empty(pg_server: devdb.Server) -> None:
    name = f"pgq_recreate_{devdb.free_port()}"
    try:
        url = devdb.recreate_database(pg_server, name)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE leftover (id int)")

        devdb.recreate_database(pg_server, name)

        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT to_regclass('leftover')").fetchone() == (None,)
    finally:
        devdb.drop_database(pg_server, name)


def test_database_url_is_a_url_with_the_server_settings() -> None:
    server = devdb.Server("postgresql://u:pw@db.example:6543/postgres?sslmode=require", "test")

    assert (
        server.database_url("my db") == "postgresql://u:pw@db.example:6543/my%20db?sslmode=require"
    )
