"""pgq's schema: upgrade, downgrade, SQL export, the version check, and host-app helpers.

``pgq migrate`` records its revisions in ``pgq.alembic_version`` so a host application's
``public.alembic_version`` is never touched. Host apps that run alembic themselves add
``pgq:migrations/versions`` to their ``version_locations`` (branch label ``pgq``) and use
[`include_name`][pgq.migrate.include_name] so autogenerate leaves pgq's objects alone.
"""

from __future__ import annotations

import io
import re
import threading
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg

from pgq import store
from pgq.db import DIRECT_URL_ENV, connect, redact, to_libpq_url, to_sqlalchemy_url
from pgq.errors import DatabaseUnavailableError, PgqError, SchemaError

# alembic and SQLAlchemy take about a second to import; `pgq work` and `pgq --help` only
# need check_schema, so they are imported where a migration actually runs.
if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.util import CommandError
    from sqlalchemy.exc import DBAPIError

SCHEMA = "pgq"
# The schema version this code needs; every migration writes its own into the schema comment.
SCHEMA_VERSION = 13
VERSION_LOCATION = "pgq:migrations/versions"
REVISION_PREFIX = "pgq_"  # every pgq revision id starts with it
# alembic keeps the running migration in module globals (alembic.context), so two
# migrations in one process must not overlap; across processes the advisory lock in
# env.py serialises them.
_alembic_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class SchemaChange:
    """What [`upgrade`][pgq.migrate.upgrade] or [`downgrade`][pgq.migrate.downgrade] did.

    The schema version before and after (None: no pgq schema).
    """

    before: int | None
    after: int | None

    @property
    def changed(self) -> bool:
        return self.before != self.after


def migrations_path() -> Path:
    """Where pgq's alembic environment lives inside the installed package."""
    return Path(str(resources.files("pgq").joinpath("migrations")))


_REVISION_LINE = re.compile(r"""^revision\s*(?::\s*\w+\s*)?=\s*["']([^"']+)["']""", re.M)


def foreign_revisions(versions: Path | None = None) -> list[tuple[Path, str]]:
    """Revision files in pgq's own versions folder that are not pgq's: ``(path, revision)``.

    A host app's first ``alembic revision`` lands there when pgq's branch is the only head
    (alembic writes into the folder of the head it chains after), and a reinstall of pgq
    deletes it. The files are read as text, never imported.
    """
    folder = versions or migrations_path() / "versions"
    found = []
    for path in sorted(folder.glob("*.py")):
        match = _REVISION_LINE.search(path.read_text(errors="replace"))
        revision = match.group(1) if match else "?"
        if not revision.startswith(REVISION_PREFIX):
            found.append((path, revision))
    return found


def foreign_revisions_message(versions: Path | None = None) -> str | None:
    """What to do about :func:`foreign_revisions`, or None when there are none."""
    found = foreign_revisions(versions)
    if not found:
        return None
    names = ", ".join(f"{path.name} (revision {revision!r})" for path, revision in found)
    return (
        f"{names} in pgq's migrations folder {found[0][0].parent} is not a pgq revision: "
        "alembic put it there because pgq's branch was your only head, and reinstalling "
        "pgq will delete it. Move it to your own versions folder, and start your branch with "
        "`alembic revision -m MESSAGE --head base --branch-label app --version-path "
        "migrations/versions` (see the host-app migration docs)"
    )


class ForeignRevisionWarning(UserWarning):
    """A host application's revision sits in pgq's migrations folder (see the message)."""


def warn_foreign_revisions(versions: Path | None = None) -> None:
    """Warn (ForeignRevisionWarning) when a host's revision sits in pgq's versions folder.

    pgq's first revision calls it as alembic loads it, so every ``alembic`` command of a
    host that includes pgq's branch says so, not only ``pgq migrate`` and ``pgq work``.
    """
    message = foreign_revisions_message(versions)
    if message is not None:
        warnings.warn(f"pgq: {message}", ForeignRevisionWarning, stacklevel=2)


def refuse_foreign_revisions() -> None:
    """Raise SchemaError when a host's revision sits in pgq's versions folder: pgq's own
    migrations would record it in pgq.alembic_version."""
    message = foreign_revisions_message()
    if message is not None:
        raise SchemaError(message)


def alembic_config(url: str | None = None, output: io.StringIO | None = None) -> Config:
    """An alembic Config for pgq's own environment (the one ``pgq migrate`` uses)."""
    from alembic.config import Config

    config = Config(output_buffer=output) if output is not None else Config()
    # versions/ under script_location is alembic's default; naming it in version_locations
    # would need a path_separator, and the legacy one splits paths that contain spaces.
    config.set_main_option("script_location", str(migrations_path()))
    if url is not None:
        config.set_main_option("sqlalchemy.url", to_sqlalchemy_url(url).replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "heads") -> SchemaChange:
    """Bring the pgq schema to ``revision`` (default: the newest). A no-op when it is there.

    Safe to run from several processes at once: they take turns. Raises
    DatabaseUnavailableError, SchemaError, or PgqError when a statement fails (the whole
    migration is then rolled back).
    """
    from alembic import command

    refuse_foreign_revisions()
    return _online(command.upgrade, url, revision)


def downgrade(url: str, revision: str = "base") -> SchemaChange:
    """Take the pgq schema back to ``revision``; ``base`` drops every pgq table and view."""
    from alembic import command

    return _online(command.downgrade, url, revision)


def upgrade_sql() -> str:
    """The DDL of every migration, for teams that apply SQL with another tool."""
    from alembic import command

    refuse_foreign_revisions()
    buffer = io.StringIO()
    with _alembic_lock:
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


def include_name(name: str | None, type_: str, parent_names: Mapping[Any, str | None]) -> bool:
    """Alembic autogenerate filter: leave pgq's schema and everything in it alone.

    In a host app's ``env.py``: ``context.configure(..., include_name=pgq.migrate.include_name)``.
    It matters most with ``include_schemas=True``, where autogenerate would otherwise propose
    dropping pgq's tables because they are not in the host's metadata.
    """
    if type_ == "schema":
        return name != SCHEMA
    return parent_names.get("schema_name") != SCHEMA


def _online(action: Callable[[Config, str], None], url: str, revision: str) -> SchemaChange:
    from alembic.util import CommandError
    from sqlalchemy import create_engine, pool
    from sqlalchemy.exc import DBAPIError

    libpq = to_libpq_url(url)
    config = alembic_config()
    # The engine connects through pgq.db.connect, so SQLAlchemy never parses the URL (its
    # parser and libpq's disagree on edge cases) and connection errors read like pgq's.
    engine = create_engine(
        "postgresql+psycopg://", creator=lambda: connect(libpq), poolclass=pool.NullPool
    )
    try:
        with _alembic_lock, engine.connect() as connection:
            config.attributes["connection"] = connection
            action(config, revision)
    except (DBAPIError, CommandError) as exc:
        raise _migration_error(libpq, exc) from None
    finally:
        engine.dispose()
    # env.py reads the version it started from under its lock (see _migrate there).
    return SchemaChange(config.attributes.get("schema_version_before"), _read_version(libpq))


def _read_version(url: str) -> int | None:
    with connect(url) as conn:
        return schema_version(conn)


def _migration_error(url: str, exc: DBAPIError | CommandError) -> PgqError:
    from alembic.util import CommandError

    reason = " ".join(str(getattr(exc, "orig", None) or exc).split()) or type(exc).__name__
    if "statement pooling mode" in reason:
        # PgBouncer in statement mode refuses transactions, and a migration is one. (In
        # transaction mode it works: env.py's lock is transaction-scoped, nothing is SET.)
        return SchemaError(
            f"cannot migrate through {redact(url)}: it is PgBouncer in statement pooling "
            f"mode, which refuses the migration's transaction; run `pgq migrate` with a "
            f"URL of PostgreSQL itself (--database-url, or ${DIRECT_URL_ENV})"
        )
    if isinstance(exc, CommandError):
        return SchemaError(f"cannot migrate {redact(url)}: {reason}")
    if isinstance(exc.orig, psycopg.OperationalError):
        return DatabaseUnavailableError(f"lost the connection to {redact(url)}: {reason}")
    return PgqError(f"the migration failed on {redact(url)} and was rolled back: {reason}")
