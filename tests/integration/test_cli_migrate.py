"""`pgq migrate` through the real entry point, in a subprocess: where the URL comes from,
what it prints, and how it fails (one line, exit code 2, never a password)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pgq import db, devdb
from pgq.errors import DatabaseUrlError

PGQ = Path(sys.executable).with_name("pgq")
SECRET = "s3cret-pw"


def pgq(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the installed `pgq` script with only the URL variables given here."""
    base = {k: v for k, v in os.environ.items() if k not in db.URL_ENV_VARS}
    return subprocess.run(
        [str(PGQ), *args], env={**base, **env}, capture_output=True, text=True, timeout=120
    )


def has_pgq(url: str) -> bool:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT to_regclass('pgq.jobs') IS NOT NULL").fetchone() == (True,)


def with_password(url: str) -> str:
    # Trust authentication ignores the password, so it can be anything; it must never show.
    return url.replace("postgresql://postgres@", f"postgresql://postgres:{SECRET}@", 1)


def assert_one_line_error(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 2
    assert done.stdout == ""
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert done.stderr.startswith("pgq: error: ")
    assert "Traceback" not in done.stderr
    assert SECRET not in done.stderr


@pytest.fixture(scope="module")
def databases(pg_server: devdb.Server) -> Iterator[tuple[str, str, str]]:
    with (
        devdb.scratch_database(pg_server, prefix="pgq_cli_a") as a,
        devdb.scratch_database(pg_server, prefix="pgq_cli_b") as b,
        devdb.scratch_database(pg_server, prefix="pgq_cli_c") as c,
    ):
        yield a, b, c


@pytest.fixture
def three_databases(databases: tuple[str, str, str]) -> tuple[str, str, str]:
    """Three distinct databases without pgq (cheaper to clean than to create)."""
    for url in databases:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DROP SCHEMA IF EXISTS pgq CASCADE")
    return databases


def test_the_option_beats_both_variables(three_databases: tuple[str, str, str]) -> None:
    a, b, c = three_databases

    done = pgq("migrate", "--database-url", a, PGQ_DATABASE_URL=b, DATABASE_URL=c)

    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("pgq schema created (version ")
    assert [has_pgq(a), has_pgq(b), has_pgq(c)] == [True, False, False]


def test_pgq_database_url_beats_database_url(three_databases: tuple[str, str, str]) -> None:
    a, b, c = three_databases

    done = pgq("migrate", PGQ_DATABASE_URL=b, DATABASE_URL=c)

    assert done.returncode == 0, done.stderr
    assert [has_pgq(a), has_pgq(b), has_pgq(c)] == [False, True, False]


def test_database_url_is_used_last(three_databases: tuple[str, str, str]) -> None:
    a, b, c = three_databases

    done = pgq("migrate", DATABASE_URL=c)

    assert done.returncode == 0, done.stderr
    assert [has_pgq(a), has_pgq(b), has_pgq(c)] == [False, False, True]


def test_without_url_the_default_is_localhost(monkeypatch: pytest.MonkeyPatch) -> None:
    # Not run through the CLI: here that would migrate the real `postgres` database.
    for name in db.URL_ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    assert db.resolve_database_url() == "postgresql://postgres@localhost:5432/postgres"


def test_sqlalchemy_url_and_password_are_accepted_and_never_printed(empty_db_url: str) -> None:
    url = with_password(empty_db_url).replace("postgresql://", "postgresql+psycopg://", 1)

    done = pgq("migrate", "--json", "--database-url", url)

    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["changed"] is True and result["version_before"] is None
    assert result["database_url"].startswith("postgresql://postgres:***@")
    assert SECRET not in done.stdout + done.stderr
    assert has_pgq(empty_db_url)


def test_an_unreachable_server_is_one_line_and_exit_2() -> None:
    url = f"postgresql://postgres:{SECRET}@127.0.0.1:{devdb.free_port()}/nowhere"

    done = pgq("migrate", "--database-url", url)

    assert_one_line_error(done)
    assert "cannot connect to postgresql://postgres:***@127.0.0.1:" in done.stderr


MALFORMED_URLS = [
    "not a url",
    f"mysql://root:{SECRET}@localhost/shop",
    f"postgresql://postgres:{SECRET}@localhost:notaport/db",
    f"postgresql://postgres:{SECRET}@[::1/db",
    f"postgresql://localhost/db?password={SECRET}&no_such_option=1",
    f"host=localhost password={SECRET}",
]


def test_a_malformed_url_is_one_line_and_exit_2() -> None:
    done = pgq("migrate", "--database-url", MALFORMED_URLS[2])  # once a SQLAlchemy traceback

    assert_one_line_error(done)
    assert "database URL" in done.stderr


@pytest.mark.parametrize("url", MALFORMED_URLS)
def test_every_malformed_url_is_a_url_error_without_the_password(url: str) -> None:
    # The same check the CLI runs first, for every shape of bad URL (in-process: fast).
    with pytest.raises(DatabaseUrlError) as raised:
        db.resolve_database_url(url)
    message = str(raised.value)
    assert SECRET not in message
    assert "\n" not in message


def test_a_malformed_url_from_the_environment_is_reported_the_same_way() -> None:
    assert_one_line_error(pgq("migrate", PGQ_DATABASE_URL=MALFORMED_URLS[-1]))


def test_sql_prints_the_ddl_without_a_database() -> None:
    done = pgq(
        "migrate", "--sql", "--database-url", f"postgresql://127.0.0.1:{devdb.free_port()}/x"
    )

    assert done.returncode == 0, done.stderr
    assert "CREATE TABLE pgq.jobs" in done.stdout
    assert "INSERT INTO pgq.alembic_version" in done.stdout
    assert done.stdout.rstrip().endswith("COMMIT;")


def test_help() -> None:
    top = pgq("--help")
    command = pgq("migrate", "--help")

    assert top.returncode == 0 and "migrate" in top.stdout
    assert command.returncode == 0
    for option in ("--database-url", "--sql", "--json", "PGQ_DATABASE_URL"):
        assert option in command.stdout
