"""pgq's schema: upgrade, downgrade, SQL export, the version check, and host-app helpers.

``pgq migrate`` records its revisions in ``pgq.alembic_version`` so a host application's
``public.alembic_version`` is never touched. Host apps that run alembic themselves add
``pgq:migrations/versions`` to their ``version_locations`` (branch label ``pgq``) and use
:func:`include_name` so autogenerate leaves pgq's objects alone.
"""

from __future__ import annotations

import io
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg
from alembic import command
from alembic.config import Config

from pgq import store
from pgq.db import to_sqlalchemy_url
from pgq.errors import DatabaseUnavailableError, SchemaError

SCHEMA = "pgq"
# The schema version this code needs; every migration writes its own into the schema comment.
SCHEMA_VERSION = 1
VERSION_LOCATION = "pgq:migrations/versions"


def migrations_path() -> Path:
    """Where pgq's alembic environment lives inside the installed package."""
    return Path(str(resources.files("pgq").joinpath("migrations")))


def alembic_config(url: str | None = None, output: io.StringIO | None = None) -> Config:
    config = Config(output_buffer=output) if output is not None else Config()
    config.set_main_option("script_location", str(migrations_path()))
    config.set_main_option("version_locations", str(migrations_path() / "versions"))
    if url is not None:
        config.set_main_option("sqlalchemy.url", to_sqlalchemy_url(url).replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "heads") -> None:
    """Bring the pgq schema to ``revision`` (default: the newest). A no-op when it is there."""
    _online(command.upgrade, url, revision)


def downgrade(url: str, revision: str = "base") -> None:
    """Take the pgq schema back to ``revision``; ``base`` drops every pgq table."""
    _online(command.downgrade, url, revision)


def upgrade_sql() -> str:
    """The DDL of every migration, for teams that apply SQL with another tool."""
    buffer = io.StringIO()
    command.upgrade(alembic_config(output=buffer), "heads", sql=True)
    return buffer.getvalue()


def schema_version(conn: psycopg.Connection[Any]) -> int | None:
    """The pgq schema version of the database ``conn`` is on, or None if pgq is not there."""
    rows = store.fetch(conn, store.get_schema_version())
    return rows[0][0] if rows else None


def check_schema(conn: psycopg.Connection[Any]) -> None:
    """Raise SchemaError, saying what to run, unless the schema matches this code."""
    found = schema_version(conn)
    if found is None:
        raise SchemaError(
            "the pgq schema is missing in this database; run `pgq migrate` "
            "(or `alembic upgrade heads` if pgq is a branch of your migrations)"
        )
    if found < SCHEMA_VERSION:
        raise SchemaError(
            f"the pgq schema is at version {found}, this pgq needs "
            f"{SCHEMA_VERSION}; run `pgq migrate`"
        )
    if found > SCHEMA_VERSION:
        raise SchemaError(
            f"the pgq schema is at version {found}, newer than this pgq "
            f"({SCHEMA_VERSION}); upgrade the pgq package"
        )


def include_name(name: str | None, type_: str, parent_names: dict[str, Any]) -> bool:
    """Alembic autogenerate filter: leave pgq's schema and everything in it alone.

    In a host app's ``env.py``: ``context.configure(..., include_name=pgq.migrate.include_name)``.
    """
    if type_ == "schema":
        return name != SCHEMA
    return parent_names.get("schema_name") != SCHEMA


def _online(action: Any, url: str, revision: str) -> None:
    try:
        action(alembic_config(url), revision)
    except Exception as exc:
        if _is_connection_error(exc):
            raise DatabaseUnavailableError(f"cannot connect: {_first_line(exc)}") from None
        raise


def _is_connection_error(exc: BaseException) -> bool:
    from sqlalchemy.exc import OperationalError

    return isinstance(exc, OperationalError | psycopg.OperationalError)


def _first_line(exc: BaseException) -> str:
    original = getattr(exc, "orig", exc)
    return " ".join(str(original).split()) or type(exc).__name__
