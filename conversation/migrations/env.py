"""Alembic environment: the database URL comes from the service's settings."""
from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from conversation.adapters.postgres.schema import metadata

config = context.config


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        # Set by conversation.adapters.schema_migrations (`conversation db upgrade`).
        raise RuntimeError("sqlalchemy.url is not set: run `conversation db upgrade`")
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=metadata)
        with context.begin_transaction():
            context.run_migrations()


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
