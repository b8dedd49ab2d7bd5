"""Alembic environment for `pgq migrate`.

pgq keeps its own version table, ``pgq.alembic_version``, so a host application's
``public.alembic_version`` is never touched. Host apps that run pgq's migrations from
their own alembic env (as the ``pgq`` branch) do not use this file at all.
"""

from alembic import context
from sqlalchemy import create_engine, pool, text

from pgq.errors import SchemaError
from pgq.migrate import schema_version

SCHEMA = "pgq"
VERSION_TABLE = "alembic_version"

config = context.config


def run_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url") or "postgresql+psycopg://",
        literal_binds=True,
        version_table=VERSION_TABLE,
        version_table_schema=SCHEMA,
        transactional_ddl=True,
    )
    with context.begin_transaction():
        context.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        engine = create_engine(config.get_main_option("sqlalchemy.url"), poolclass=pool.NullPool)
        with engine.connect() as conn:
            _migrate(conn)
    else:
        _migrate(connection)


def _migrate(connection) -> None:  # type: ignore[no-untyped-def]
    # Serialise concurrent `pgq migrate` runs (several pods starting at once).
    connection.execute(text("SELECT pg_advisory_xact_lock(hashtext('pgq.migrate'))"))
    # Read under the lock, so a run that waited for another reports what it found after it,
    # and tell pgq.migrate (which reports "created", "upgraded" or "up to date").
    before = schema_version(connection.connection.driver_connection)
    config.attributes["schema_version_before"] = before
    connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
    context.configure(
        connection=connection,
        version_table=VERSION_TABLE,
        version_table_schema=SCHEMA,
        transactional_ddl=True,
    )
    _refuse_schema_recorded_elsewhere(before)
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()


def _refuse_schema_recorded_elsewhere(version: int | None) -> None:
    # A pgq schema with no pgq.alembic_version was installed by a host app's alembic (pgq as
    # a branch, recorded in the host's version table) or from `pgq migrate --sql` output
    # without its version table. Running our revisions again would fail half-way on
    # "already exists"; say what to do instead. Checked under the lock, so a concurrent
    # `pgq migrate` that just finished is seen as done, not as foreign.
    if version is not None and not context.get_context().get_current_heads():
        raise SchemaError(
            f"this database has pgq schema version {version} but no pgq.alembic_version: "
            "it is managed by your application's alembic (pgq as a branch); upgrade it "
            "there with `alembic upgrade heads` instead of `pgq migrate`"
        )


if context.is_offline_mode():
    run_offline()
else:
    run_online()
