"""Alembic environment: migrations are plain SQL run on the configured database."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from collector.db.connection import sqlalchemy_url

config = context.config
url = config.get_main_option("sqlalchemy.url")
if not url:
    from collector.config import get_settings

    url = get_settings().database_url


def run_migrations_offline() -> None:
    context.configure(url=sqlalchemy_url(url), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(sqlalchemy_url(url), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
