"""pgq's web dashboard: an ASGI app to serve with ``pgq dashboard`` or mount in your own.

Needs the ``web`` extra (``pip install 'pgq-jobs[web]'``); importing ``pgq.web`` without
it raises MissingExtraError naming that extra. See docs/dashboard.md.
"""

from pgq.errors import MissingExtraError

try:
    import jinja2  # noqa: F401
    import psycopg_pool  # noqa: F401
    import starlette  # noqa: F401
except ImportError as exc:  # an optional dependency: say how to get it
    raise MissingExtraError(f"pgq.web needs {exc.name}: pip install 'pgq-jobs[web]'") from exc

from pgq.web.app import create_app
from pgq.web.auth import Auth, BasicAuth, TokenAuth, auth_from_env, basic_auth, token_auth

__all__ = [
    "Auth",
    "BasicAuth",
    "TokenAuth",
    "auth_from_env",
    "basic_auth",
    "create_app",
    "token_auth",
]
