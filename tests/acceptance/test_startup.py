"""`pgq work` refuses to start, in one line and with exit code 2, when it cannot work."""

from __future__ import annotations

import re
from pathlib import Path

from worker_procs import APP, run_pgq

from pgq import migrate


def assert_refused(result: object, *phrases: str) -> str:
    """Exit 2, one line on stderr starting with "pgq: error:", naming each phrase."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)  # type: ignore[attr-defined]
    stderr = result.stderr  # type: ignore[attr-defined]
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{stderr}"
    assert lines[0].startswith("pgq: error: "), lines[0]
    assert "Traceback" not in stderr
    for phrase in phrases:
        assert phrase in lines[0], f"{phrase!r} not in {lines[0]!r}"
    return str(lines[0])


def test_refuses_a_database_without_the_schema(empty_db_url: str, tmp_path: Path) -> None:
    result = run_pgq(["work", "--app", APP, "--database-url", empty_db_url], empty_db_url, tmp_path)

    assert_refused(result, "schema is missing", "pgq migrate")


def test_refuses_a_schema_older_than_the_code(empty_db_url: str, tmp_path: Path) -> None:
    migrate.upgrade(empty_db_url, "pgq_0001")

    result = run_pgq(["work", "--app", APP, "--database-url", empty_db_url], empty_db_url, tmp_path)

    assert_refused(result, "version 1", "pgq migrate")


def test_refuses_to_start_without_an_app(db_url: str, tmp_path: Path) -> None:
    result = run_pgq(["work", "--database-url", db_url], db_url, tmp_path)

    assert_refused(result, "--app")


def test_refuses_a_module_that_cannot_be_imported(db_url: str, tmp_path: Path) -> None:
    result = run_pgq(
        ["work", "--app", "no_such_module_for_pgq", "--database-url", db_url], db_url, tmp_path
    )

    assert_refused(result, "no_such_module_for_pgq")


def test_refuses_a_module_whose_import_raises(db_url: str, tmp_path: Path) -> None:
    result = run_pgq(
        ["work", "--app", "broken_on_import", "--database-url", db_url], db_url, tmp_path
    )

    assert_refused(result, "broken_on_import", "SECRET_KEY")


def test_refuses_an_app_that_registers_no_task(db_url: str, tmp_path: Path) -> None:
    result = run_pgq(["work", "--app", "no_tasks", "--database-url", db_url], db_url, tmp_path)

    assert_refused(result, "no task is registered")


def test_refuses_an_invalid_queue_name(db_url: str, tmp_path: Path) -> None:
    result = run_pgq(
        ["work", "--app", APP, "--queue", "not a queue!", "--database-url", db_url],
        db_url,
        tmp_path,
    )

    assert_refused(result, "not a queue!")


def test_refuses_an_unreachable_database_without_showing_its_password(
    db_url: str, tmp_path: Path
) -> None:
    url = "postgresql://pgq:hunter2secret@127.0.0.1:1/nowhere"

    result = run_pgq(["work", "--app", APP, "--database-url", url], url, tmp_path)

    line = assert_refused(result, "cannot connect")
    assert "hunter2secret" not in result.stderr + result.stdout
    assert "***" in line


def test_refuses_an_unknown_log_level(db_url: str, tmp_path: Path) -> None:
    result = run_pgq(
        ["work", "--app", APP, "--log-level", "chatty", "--database-url", db_url], db_url, tmp_path
    )

    assert_refused(result, "chatty")


# option → words its help must contain (what it does, and its default where it has one)
HELP = {
    "--app": ["Module that registers tasks", "PGQ_APP"],
    "--queue": ["Queue to work on", "Repeatable"],
    "--concurrency": ["jobs run at once", "default: 10"],
    "--lease": ["heartbeat", "default: 30.0"],
    "--poll-interval": ["poll", "Default: 1.0, or 0.25", "does not LISTEN"],
    "--grace": ["SIGTERM", "default: 30.0"],
    "--burst": ["nothing is due"],
    "--no-reaper": ["reaper"],
    "--log-level": ["DEBUG", "default: INFO"],
    "--database-url": ["PostgreSQL URL", "PGQ_DATABASE_URL"],
    "--pgbouncer": ["transaction pooling mode", "PGQ_PGBOUNCER"],
    "--direct-url": ["without the pooler", "LISTEN", "PGQ_DIRECT_URL"],
}


def test_help_explains_every_option(db_url: str, tmp_path: Path) -> None:
    result = run_pgq(["work", "--help"], db_url, tmp_path)

    assert result.returncode == 0, result.stderr
    # One option per table row; the help of a row may wrap onto the next lines.
    text = re.sub(r"[│╭╮╰╯─]", " ", result.stdout)
    rows = re.split(r"\n\s*(?=--[a-z])", text)
    for option, words in HELP.items():
        [row] = [r for r in rows if re.match(rf"{option}\b", r.strip()) or f" {option} " in r]
        flat = " ".join(row.split())
        for word in words:
            assert word in flat, f"help of {option} lacks {word!r}: {flat!r}"
