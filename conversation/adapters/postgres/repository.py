"""The persistent store: conversations in PostgreSQL through SQLAlchemy 2 and psycopg 3,
composed of one part per concern (archive, outage writes, retention and erasure)."""
from __future__ import annotations

from sqlalchemy import Engine

from conversation.adapters.postgres.archive import PostgresArchive
from conversation.adapters.postgres.outage import PostgresOutageWrites
from conversation.adapters.postgres.retention import PostgresRetention


class SqlRepository(PostgresArchive, PostgresOutageWrites, PostgresRetention):
    """The persistent store (services.ports.Repository), its parts composed."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
