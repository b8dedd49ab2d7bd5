"""The shop's alembic environment: its own models, plus pgq as a branch it leaves alone."""

from logging.config import fileConfig
from typing import Any

from alembic import context
from sqlalchemy import create_engine, pool

import pgq.migrate
from shop.models import Base, database_url

config = context.config
if config.config_file_name is not None:
    fileConfig(config.config_file_name)


def run_offline() -> None:
    context.configure(url=database_url(), literal_binds=True, **autogenerate_options())
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    engine = create_engine(database_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, **autogenerate_options())
        with context.begin_transaction():
            context.run_migrations()


def autogenerate_options() -> dict[str, Any]:
    # include_schemas=True makes autogenerate look at every schema, pgq's included; without
    # pgq's filter it would then propose dropping pgq.jobs, which is not in the shop's
    # models. The filter is harmless without include_schemas, so keep it either way.
    return {
        "target_metadata": Base.metadata,
        "include_schemas": True,
        "include_name": pgq.migrate.include_name,
    }


if context.is_offline_mode():
    run_offline()
else:
    run_online()
