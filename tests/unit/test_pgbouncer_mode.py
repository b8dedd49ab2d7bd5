"""The PgBouncer switch ($PGQ_PGBOUNCER), the direct URL, and what they change (no database)."""

from __future__ import annotations

import psycopg
import pytest

from pgq import db
from pgq.errors import DatabaseUrlError


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", True), ("true", True), (" Yes ", True), ("ON", True), ("0", False), ("", False),
     ("false", False), ("no", False), ("off", False)],
)  # fmt: skip
def test_pgbouncer_mode_reads_the_environment(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: bool
) -> None:
    monkeypatch.setenv(db.PGBOUNCER_ENV, value)
    assert db.pgbouncer_mode() is expected


def test_pgbouncer_mode_is_off_when_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(db.PGBOUNCER_ENV, raising=False)
    assert db.pgbouncer_mode() is False


def test_a_typo_in_the_switch_is_an_error_not_direct(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(db.PGBOUNCER_ENV, "transaction")
    with pytest.raises(DatabaseUrlError, match=r"\$PGQ_PGBOUNCER is 'transaction': set it to 1"):
        db.pgbouncer_mode()


def test_pooled_connections_never_prepare(monkeypatch: pytest.MonkeyPatch) -> None:
    assert db.connection_options({}, pgbouncer=True)["prepare_threshold"] is None
    assert "prepare_threshold" not in db.connection_options({}, pgbouncer=False)
    monkeypatch.setenv(db.PGBOUNCER_ENV, "1")
    assert db.connection_options({})["prepare_threshold"] is None
    # An explicit choice of the caller wins.
    assert db.connection_options({"prepare_threshold": 3})["prepare_threshold"] == 3


def test_direct_url_comes_from_the_option_else_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(db.DIRECT_URL_ENV, raising=False)
    assert db.resolve_direct_url() is None
    monkeypatch.setenv(db.DIRECT_URL_ENV, "postgresql+psycopg://app@pg:5432/app")
    assert db.resolve_direct_url() == "postgresql://app@pg:5432/app"
    assert db.resolve_direct_url("postgresql://other/db") == "postgresql://other/db"
    monkeypatch.setenv(db.DIRECT_URL_ENV, "mysql://x")
    with pytest.raises(DatabaseUrlError):
        db.resolve_direct_url()


@pytest.mark.parametrize(
    "error", [psycopg.errors.DuplicatePreparedStatement, psycopg.errors.InvalidSqlStatementName]
)
def test_prepared_statement_errors_point_at_the_switch(error: type[psycopg.Error]) -> None:
    text = db.describe_error(error('prepared statement "_pg3_0" already exists'))
    assert text.startswith('prepared statement "_pg3_0" already exists (')
    assert "set PGQ_PGBOUNCER=1" in text


def test_other_errors_are_one_line_without_a_hint() -> None:
    assert db.describe_error(psycopg.OperationalError("server\n  closed")) == "server closed"
