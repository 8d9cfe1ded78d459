"""Retention and erasure in PostgreSQL."""
from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine, delete, func, select

from conversation.adapters.postgres.dead_letters import erase_dead_letters
from conversation.adapters.postgres.schema import (
    api_keys,
    conversations,
    messages,
    session_owners,
    stats_active,
    stats_changes,
    stats_daily,
    tenant_retention,
)


class PostgresRetention:
    """Retention settings, expired conversations, and erasure."""

    engine: Engine

    def erase_conversation(self, conversation_id: str) -> bool:
        """Delete the conversation (its stats row cascades), then its messages (their search
        vectors cascade). The conversation first: an append holding its row lock finishes
        before, and its message is then deleted too; one starting after finds no conversation."""
        with self.engine.begin() as connection:
            removed = connection.execute(
                delete(conversations).where(conversations.c.id == conversation_id)
            ).rowcount
            connection.execute(delete(messages).where(messages.c.conversation_id == conversation_id))
        return bool(removed)

    def erase_tenant(self, tenant_id: str) -> dict[str, int]:
        """Delete all of a tenant's conversations (with messages and stats), its dead letters
        (they hold message content) and its retention setting; revoke its API keys."""
        with self.engine.begin() as connection:
            removed = connection.execute(
                delete(conversations).where(conversations.c.tenant_id == tenant_id)
            ).rowcount
            connection.execute(delete(messages).where(messages.c.tenant_id == tenant_id))
            letters = erase_dead_letters(connection, tenant_id)
            # Its keys stop working now (revoked, not deleted: the audit trail stays).
            keys = connection.execute(
                api_keys.update()
                .where(api_keys.c.tenant_id == tenant_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC))
            ).rowcount
            connection.execute(
                delete(tenant_retention).where(tenant_retention.c.tenant_id == tenant_id)
            )
            # Its session ids are free again: nothing of the tenant remains for them to guard.
            connection.execute(
                delete(session_owners).where(session_owners.c.tenant_id == tenant_id)
            )
            # The rollup goes now rather than at the next aggregation; after the deletes
            # above, whose triggers noted the tenant's buckets as changed.
            for table in (stats_daily, stats_active, stats_changes):
                connection.execute(delete(table).where(table.c.tenant_id == tenant_id))
        return {"conversations": int(removed), "dead_letters": letters, "api_keys": int(keys)}

    def erase_dead_letters(
        self, tenant_id: str, conversation_id: str | None = None, session_id: str | None = None
    ) -> int:
        """The dead letters (or batch items) of a conversation, or of a whole tenant."""
        with self.engine.begin() as connection:
            return erase_dead_letters(connection, tenant_id, conversation_id, session_id)

    def conversation_ids(self, tenant_id: str) -> list[str]:
        with self.engine.connect() as connection:
            return list(
                connection.scalars(
                    select(conversations.c.id).where(conversations.c.tenant_id == tenant_id)
                )
            )

    def set_retention(self, tenant_id: str, days: int | None) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                delete(tenant_retention).where(tenant_retention.c.tenant_id == tenant_id)
            )
            if days is not None:
                connection.execute(
                    tenant_retention.insert().values(
                        tenant_id=tenant_id, days=days, updated_at=datetime.now(UTC)
                    )
                )

    def retention(self) -> dict[str, int]:
        with self.engine.connect() as connection:
            return {r.tenant_id: r.days for r in connection.execute(select(tenant_retention))}

    def expired_conversations(self, tenant_id: str, before: datetime, limit: int) -> list[str]:
        """Persisted conversations whose last message (or start) is older than `before`."""
        last = func.coalesce(conversations.c.last_message_at, conversations.c.created_at)
        with self.engine.connect() as connection:
            return list(
                connection.scalars(
                    select(conversations.c.id)
                    .where(conversations.c.tenant_id == tenant_id, last < before)
                    .limit(limit)
                )
            )
