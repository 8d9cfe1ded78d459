"""Applying the Alembic migrations programmatically (`conversation db upgrade`, `make run`)."""
from __future__ import annotations

from pathlib import Path

import re
from collections.abc import Sequence

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from conversation.adapters.search_sql import (
    FUNCTION,
    checked_languages,
    reindex_everything,
    search_function_sql,
)
from conversation.adapters.postgres import make_engine, sqlalchemy_url

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser treats % as interpolation: escape it (passwords may hold it).
    config.set_main_option("sqlalchemy.url", sqlalchemy_url(database_url).replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def indexed_languages(database_url: str) -> tuple[str, ...]:
    """The languages the search function indexes now, in order."""
    engine = make_engine(database_url, pool_size=1)
    try:
        with engine.connect() as connection:
            body = connection.scalar(text(
                f"SELECT prosrc FROM pg_proc WHERE proname = '{FUNCTION}'"))
    finally:
        engine.dispose()
    return tuple(re.findall(r"to_tsvector\('([a-z_]+)'", body or ""))


def set_search_languages(database_url: str, languages: Sequence[str]) -> bool:
    """Index messages in these languages: redefine the search function and queue every
    conversation for the indexer (which recomputes the vectors in the background; meanwhile
    the search computes them on the fly). False when they were already the indexed ones."""
    wanted = checked_languages(languages)
    if indexed_languages(database_url) == wanted:
        return False
    engine = make_engine(database_url, pool_size=1)
    try:
        with engine.begin() as connection:
            known = set(connection.scalars(text("SELECT cfgname FROM pg_ts_config")))
            unknown = [name for name in wanted if name not in known]
            if unknown:
                raise ValueError(f"PostgreSQL has no text search configuration {unknown}; "
                                 f"it has {sorted(known)}")
            connection.execute(text(search_function_sql(wanted)))
            reindex_everything(connection)
    finally:
        engine.dispose()
    return True
