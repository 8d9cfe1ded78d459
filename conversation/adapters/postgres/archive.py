"""The archive: migrated conversations written (COPY for their messages) and read back."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from sqlalchemy import Engine, and_, select

from conversation.adapters.postgres.bulk import copy_messages
from conversation.adapters.postgres.engine import DATA_ERRORS, refusal
from conversation.adapters.postgres.history import SqlHistory, store_token_counts
from conversation.adapters.postgres.outage import absorb_outage_conversations
from conversation.adapters.postgres.rows import (
    _ORDER,
    TAIL_CHUNK,
    _conversation,
    _message,
    _stats_row,
    conversation_row,
    upsert_conversations,
    upsert_stats,
)
from conversation.adapters.postgres.schema import conversations, messages
from conversation.adapters.postgres.statements import (
    _claim_sessions,
    _insert_message,
    _refresh_stats,
)
from conversation.domain.errors import ForeignConversation
from conversation.domain.messages import Conversation, Message
from conversation.domain.stats import ConversationStats
from conversation.services.ports import Summary, TenantConflict


class PostgresArchive:
    """Migrated conversations written (COPY for messages) and read back."""

    engine: Engine

    def store_conversation(
        self,
        conversation: Conversation,
        messages: Sequence[Message],
        stats: ConversationStats,
    ) -> list[TenantConflict]:
        return self.store_conversations([(conversation, messages, stats)])

    def store_conversations(
        self, batch: Sequence[tuple[Conversation, Sequence[Message], ConversationStats]]
    ) -> list[TenantConflict]:
        """Write many conversations, their messages and stats rows in one transaction.

        Messages go through COPY into a staging table, then one INSERT ... SELECT ... ON
        CONFLICT DO NOTHING: COPY's speed, with the idempotency COPY alone cannot give.
        """
        if not batch:
            return []
        try:
            return self._store_conversations(batch)
        except DATA_ERRORS as error:
            raise refusal(error) from error

    def _store_conversations(
        self, batch: Sequence[tuple[Conversation, Sequence[Message], ConversationStats]]
    ) -> list[TenantConflict]:
        now = datetime.now(UTC)
        rows = [conversation_row(conversation, stats, now) for conversation, _, stats in batch]
        with self.engine.begin() as connection:
            upserted = upsert_conversations(connection, rows)
            written = {row[0] for row in upserted}
            new_ids = {row[0] for row in upserted if row[1]}
            # No row back: PostgreSQL holds the id for another tenant. That conversation is
            # refused whole (its messages are never copied under the other tenant's row).
            conflicts = [TenantConflict(c.id, c.tenant_id) for c, _, _ in batch
                         if c.id not in written]
            if conflicts:
                batch = [item for item in batch if item[0].id in written]
            if any(history for _, history, _ in batch):
                copy_messages(connection, batch, new_ids)
            if batch:
                upsert_stats(connection, [_stats_row(conversation, stats)
                                          for conversation, _, stats in batch])
                absorb_outage_conversations(connection, [c for c, _, _ in batch])
                # Sessions made before session_owners existed (or on a path that does not claim)
                # are owned from their migration on; an owned one stays as it is.
                _claim_sessions(connection, [(c.tenant_id, c.session_id) for c, _, _ in batch])
        return conflicts

    def store_token_counts(
        self, conversation_id: str, encoding: str, counts: Mapping[str, int]
    ) -> None:
        store_token_counts(self.engine, conversation_id, encoding, counts)

    def append_message(self, conversation_id: str, tenant_id: str, message: Message) -> bool:
        """Append to a persisted conversation; False when the message id is already there."""
        with self.engine.begin() as connection:
            conversation = connection.execute(
                select(conversations).where(conversations.c.id == conversation_id).with_for_update()
            ).first()
            if conversation is None:
                raise LookupError(f"conversation {conversation_id} is not persisted")
            if conversation.tenant_id != tenant_id:
                raise ForeignConversation(f"conversation {conversation_id} belongs to another tenant")
            inserted = _insert_message(connection, conversation_id, tenant_id, message)
            if inserted:
                _refresh_stats(connection, conversation_id)
        return inserted

    def get_conversation(self, conversation_id: str) -> Conversation | None:
        with self.engine.connect() as connection:
            row = connection.execute(
                select(conversations).where(conversations.c.id == conversation_id)
            ).first()
        return _conversation(row) if row else None

    def owned_history(
        self, conversation_id: str, expected: int = TAIL_CHUNK
    ) -> tuple[str | None, SqlHistory]:
        """The owner (None: not here) and the newest `expected` messages, read together."""
        history = SqlHistory(self.engine, conversation_id, max(1, expected))
        history.count()
        return history.owner, history

    def messages(self, conversation_id: str) -> list[Message]:
        """The conversation's messages, its owner's only (see SqlHistory._mine)."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(messages)
                .join(conversations, and_(conversations.c.id == messages.c.conversation_id,
                                          conversations.c.tenant_id == messages.c.tenant_id))
                .where(messages.c.conversation_id == conversation_id)
                .order_by(*_ORDER)
            ).all()
        return [_message(r) for r in rows]

    def has_message(self, tenant_id: str, conversation_id: str, message_id: str) -> bool:
        """Whether the tenant's conversation holds the message (a primary-key lookup)."""
        with self.engine.connect() as connection:
            return connection.execute(
                select(messages.c.id).where(messages.c.conversation_id == conversation_id,
                                            messages.c.id == message_id,
                                            messages.c.tenant_id == tenant_id)
            ).first() is not None

    def latest_conversation_for_session(self, tenant_id: str, session_id: str) -> str | None:
        with self.engine.connect() as connection:
            return connection.scalar(
                select(conversations.c.id)
                .where(
                    conversations.c.tenant_id == tenant_id,
                    conversations.c.session_id == session_id,
                )
                .order_by(conversations.c.created_at.desc())
                .limit(1)
            )

    def summary(self, conversation_id: str) -> Summary | None:
        with self.engine.connect() as connection:
            row = connection.execute(
                select(conversations.c.summary, conversations.c.summary_through).where(
                    conversations.c.id == conversation_id
                )
            ).first()
        if row is None or row.summary is None or row.summary_through is None:
            return None
        return Summary(row.summary, row.summary_through)

    def save_summary(self, conversation_id: str, summary: Summary) -> bool:
        with self.engine.begin() as connection:
            return bool(
                connection.execute(
                    conversations.update()
                    .where(conversations.c.id == conversation_id)
                    .values(summary=summary.text, summary_through=summary.through)
                ).rowcount
            )

    def ping(self) -> bool:
        with self.engine.connect() as connection:
            return connection.scalar(select(1)) == 1
