"""The dashboard's parts that need no database: credentials, CSRF tokens, charts, formats,
and the error when the web extra is missing."""

from __future__ import annotations

import base64
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from starlette.requests import Request

from pgq.errors import PgqError, ValidationError
from pgq.web import auth, charts, queries
from pgq.web.app import format_seconds, parse_job_id, url


def request_with(authorization: str | None) -> Request:
    headers = [(b"authorization", authorization.encode())] if authorization else []
    return Request({"type": "http", "method": "GET", "path": "/", "headers": headers})


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_basic_auth_accepts_only_its_user_and_password() -> None:
    check = auth.basic_auth("ops", "pa:ss")
    assert check(request_with(basic("ops", "pa:ss"))) == "ops"
    assert check(request_with(basic("ops", "wrong"))) is None
    assert check(request_with(basic("other", "pa:ss"))) is None
    assert check(request_with("Basic !!notbase64")) is None
    assert check(request_with(None)) is None
    assert "pa:ss" not in repr(check)


def test_token_auth_takes_a_bearer_header_or_the_basic_password() -> None:
    token = "t" * 20
    check = auth.token_auth(token)
    assert check(request_with(f"Bearer {token}")) == "token"
    assert check(request_with(basic("alice", token))) == "alice"
    assert check(request_with("Bearer " + "x" * 20)) is None
    assert token not in repr(check)
    with pytest.raises(PgqError, match="16 characters"):
        auth.token_auth("short")


def test_credentials_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (auth.TOKEN_ENV, auth.USER_ENV, auth.PASSWORD_ENV):
        monkeypatch.delenv(name, raising=False)
    assert auth.auth_from_env() is None
    monkeypatch.setenv(auth.USER_ENV, "ops")
    with pytest.raises(PgqError, match="set both"):
        auth.auth_from_env()
    monkeypatch.setenv(auth.PASSWORD_ENV, "secret")
    assert isinstance(auth.auth_from_env(), auth.BasicAuth)
    monkeypatch.setenv(auth.TOKEN_ENV, "k" * 32)
    assert isinstance(auth.auth_from_env(), auth.TokenAuth)


def test_a_csrf_token_matches_only_its_cookie_and_secret() -> None:
    csrf = auth.Csrf(b"secret-1")
    cookie = csrf.new_cookie_value()
    token = csrf.token_for(cookie)
    assert csrf.check(cookie, token)
    assert not csrf.check(csrf.new_cookie_value(), token)
    assert not csrf.check(cookie, None) and not csrf.check(None, token)
    assert not auth.Csrf(b"secret-2").check(cookie, token)  # a forged cookie needs the secret


def test_bar_chart_draws_one_bar_pair_per_bucket() -> None:
    start = datetime(2026, 1, 1, 10, tzinfo=UTC)
    buckets = [queries.Bucket(start + timedelta(minutes=i), i, i % 2) for i in range(60)]
    svg = str(charts.bar_chart(buckets, label="a <label>", time_format="%H:%M"))
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert svg.count('class="ok"') == 60 and svg.count('class="fail"') == 60
    assert "a &lt;label&gt;" in svg and "max 60 per bar" in svg
    assert "10:00" in svg and "10:59" in svg
    empty = str(charts.bar_chart([], label="none", time_format="%H"))
    assert "max 0 per bar" in empty


def test_formats_and_urls() -> None:
    assert [format_seconds(s) for s in (None, 5, 125, 7300, 200000, -30)] == [
        "-", "5 s", "2 min", "2 h 1 min", "2 d 7 h", "-30 s"
    ]  # fmt: skip
    assert url("/pgq", "/jobs", state="failed", queue=None, task="") == "/pgq/jobs?state=failed"
    assert url("", "/") == "/"
    assert parse_job_id(" 42 ") == 42
    for bad in ("0", "-1", "1e3", "99999999999999999999", ""):
        with pytest.raises(ValidationError):
            parse_job_id(bad)


def test_without_the_web_extra_the_import_names_it() -> None:
    code = "import sys; sys.modules['starlette'] = None; import pgq.web"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode != 0
    assert "MissingExtraError" in result.stderr and "pgq-jobs[web]" in result.stderr
