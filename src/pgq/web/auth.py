"""Who may use the dashboard, and the CSRF token every form carries.

An ``Auth`` is any callable that takes the request and returns the user's name, or None
when the request is not authenticated. ``basic_auth`` and ``token_auth`` build the two
that ``pgq dashboard`` offers (HTTP basic, so a browser asks for them itself); a host
application that mounts the dashboard passes its own, reading what its middleware put on
the request. Secrets are compared in constant time and never appear in a page or a log.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from collections.abc import Callable

from starlette.requests import Request

from pgq.errors import PgqError

Auth = Callable[[Request], str | None]

TOKEN_ENV = "PGQ_DASHBOARD_TOKEN"
USER_ENV = "PGQ_DASHBOARD_USER"
PASSWORD_ENV = "PGQ_DASHBOARD_PASSWORD"
SECRET_ENV = "PGQ_DASHBOARD_SECRET"
REALM = "pgq dashboard"
CSRF_COOKIE = "pgq_csrf"
CSRF_FIELD = "csrf_token"


class BasicAuth:
    """HTTP basic authentication against one user name and password."""

    challenge = f'Basic realm="{REALM}", charset="UTF-8"'

    def __init__(self, username: str, password: str) -> None:
        if not username or not password:
            raise PgqError("basic auth needs a user name and a password, both non-empty")
        self._username = username.encode()
        self._password = password.encode()

    def __call__(self, request: Request) -> str | None:
        given = _basic_credentials(request)
        if given is None:
            return None
        user_ok = hmac.compare_digest(given[0], self._username)
        password_ok = hmac.compare_digest(given[1], self._password)
        return self._username.decode() if user_ok and password_ok else None

    def __repr__(self) -> str:  # never the password
        return f"BasicAuth(username={self._username.decode()!r})"


class TokenAuth:
    """A shared token: ``Authorization: Bearer TOKEN`` from scripts, or HTTP basic with the
    token as the password (any user name) from a browser, which asks for it itself."""

    challenge = f'Basic realm="{REALM}", charset="UTF-8"'

    def __init__(self, token: str) -> None:
        if len(token) < 16:
            raise PgqError("the dashboard token must be at least 16 characters long")
        self._token = token.encode()

    def __call__(self, request: Request) -> str | None:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer":
            return "token" if hmac.compare_digest(value.strip().encode(), self._token) else None
        given = _basic_credentials(request)
        if given is None or not hmac.compare_digest(given[1], self._token):
            return None
        return given[0].decode(errors="replace") or "token"

    def __repr__(self) -> str:  # never the token
        return "TokenAuth(token=***)"


def basic_auth(username: str, password: str) -> BasicAuth:
    """An ``auth`` for [`create_app`][pgq.web.create_app]: HTTP basic with this user and
    password."""
    return BasicAuth(username, password)


def token_auth(token: str) -> TokenAuth:
    """An ``auth`` for [`create_app`][pgq.web.create_app]: a bearer token (or HTTP basic
    with the token as the password). Raises PgqError for a token under 16 characters."""
    return TokenAuth(token)


def auth_from_env() -> BasicAuth | TokenAuth | None:
    """The credentials ``pgq dashboard`` takes from its environment: $PGQ_DASHBOARD_TOKEN,
    else $PGQ_DASHBOARD_USER and $PGQ_DASHBOARD_PASSWORD, else None (no authentication).

    Raises PgqError when only one of the user and password is set."""
    token = os.environ.get(TOKEN_ENV)
    if token:
        return TokenAuth(token)
    user, password = os.environ.get(USER_ENV), os.environ.get(PASSWORD_ENV)
    if user and password:
        return BasicAuth(user, password)
    if user or password:
        raise PgqError(f"set both ${USER_ENV} and ${PASSWORD_ENV} (or ${TOKEN_ENV})")
    return None


def _basic_credentials(request: Request) -> tuple[bytes, bytes] | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(b":")
    return (user, password) if sep else None


class Csrf:
    """Signed double-submit CSRF tokens.

    The browser holds a random value in a cookie; every form carries the HMAC of that value
    under the app's secret. A POST passes only when the two agree, which a page on another
    site can neither read (the cookie) nor compute (the secret), even if it can set a cookie.
    """

    def __init__(self, secret: bytes | None = None) -> None:
        env = os.environ.get(SECRET_ENV)
        self._secret = secret or (env.encode() if env else secrets.token_bytes(32))

    @staticmethod
    def new_cookie_value() -> str:
        return secrets.token_urlsafe(32)

    def token_for(self, cookie_value: str) -> str:
        return hmac.new(self._secret, cookie_value.encode(), hashlib.sha256).hexdigest()

    def check(self, cookie_value: str | None, token: str | None) -> bool:
        if not cookie_value or not token:
            return False
        return hmac.compare_digest(self.token_for(cookie_value), token)
