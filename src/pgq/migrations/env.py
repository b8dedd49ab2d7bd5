"""Alembic environment for `pgq migrate`.

pgq keeps its own version table, ``pgq.alembic_version``, so a host application's
``public.alembic_version`` is never touched. Host apps that run pgq's migrations from
their own alembic env (as the ``pgq`` branch) do not use this file at all.
"""

from alembic import context
from sqlalchemy import create_engine, pool, text

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
    connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
    context.configure(
        connection=connection,
        version_table=VERSION_TABLE,
        version_table_schema=SCHEMA,
        transactional_ddl=True,
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
