"""orderapp's alembic environment: its own models, plus pgq's branch, which it leaves alone.

Migrations run on a sync psycopg connection (the app itself uses asyncpg): alembic's
commands are sync, and this keeps env.py short.
"""

from logging.config import fileConfig

from alembic import context
from orderapp.db import sqlalchemy_url
from orderapp.models import Base
from sqlalchemy import create_engine, pool

import pgq.migrate

config = context.config
if config.config_file_name is not None:
    fileConfig(config.config_file_name)

# include_schemas=True makes autogenerate compare every schema, pgq's too; pgq's filter
# keeps it from proposing to drop pgq's tables, which are not in the app's models.
OPTIONS = {
    "target_metadata": Base.metadata,
    "include_schemas": True,
    "include_name": pgq.migrate.include_name,
}


def run_offline() -> None:
    context.configure(url=sqlalchemy_url("psycopg"), literal_binds=True, **OPTIONS)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    engine = create_engine(sqlalchemy_url("psycopg"), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, **OPTIONS)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
