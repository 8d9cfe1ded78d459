"""The engine, and which errors are the data's (a refusal) rather than the server's."""
from __future__ import annotations

from collections.abc import Sequence

import psycopg
import sqlalchemy.exc
from sqlalchemy import Engine, create_engine

from conversation.services.ports import ConversationRefused

# What PostgreSQL (or the rows built for it) says about the data, not the server: the same
# write fails the same way every time (a NUL in jsonb or text, a constraint, a bad timestamp).
# COPY goes through psycopg's cursor, the rest through SQLAlchemy, hence both families.
DATA_ERRORS: tuple[type[BaseException], ...] = (
    sqlalchemy.exc.DataError,
    sqlalchemy.exc.IntegrityError,
    psycopg.DataError,
    psycopg.IntegrityError,
    ValueError,
)


def refusal(error: BaseException) -> ConversationRefused:
    """The port's refusal, with PostgreSQL's own words (message and detail) as the reason."""
    cause = getattr(error, "orig", None) or error
    diag = getattr(cause, "diag", None)
    words: Sequence[str | None] = [getattr(diag, "message_primary", None), getattr(diag, "message_detail", None)]
    if not any(words):
        words = (str(cause).strip().splitlines() or [""])[:1]
    reason = " ".join(word for word in words if word)
    return ConversationRefused(f"{type(cause).__name__}: {reason}"[:500])


def sqlalchemy_url(url: str) -> str:
    """Use psycopg 3 whatever driver the URL names (postgres://, postgresql://)."""
    for scheme in ("postgresql+psycopg2://", "postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme) :]
    return url


def make_engine(url: str, *, pool_size: int = 5) -> Engine:
    return create_engine(
        sqlalchemy_url(url),
        pool_size=pool_size,
        max_overflow=10,
        pool_pre_ping=True,
        connect_args={"connect_timeout": 5},
    )
