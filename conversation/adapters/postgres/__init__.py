"""The PostgreSQL adapter: the engine, the schema, rows, the archive (+ its history), COPY,
outage writes, retention and erasure (dead letters included), composed by `repository`."""
from __future__ import annotations

from conversation.adapters.postgres.engine import DATA_ERRORS, make_engine, refusal, sqlalchemy_url
from conversation.adapters.postgres.history import SqlHistory
from conversation.adapters.postgres.repository import SqlRepository
from conversation.adapters.postgres.rows import MESSAGE_COLUMNS, message_row

__all__ = [
    "DATA_ERRORS",
    "MESSAGE_COLUMNS",
    "SqlHistory",
    "SqlRepository",
    "make_engine",
    "message_row",
    "refusal",
    "sqlalchemy_url",
]
