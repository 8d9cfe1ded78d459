"""Writes while Redis is down: messages saved straight to PostgreSQL, and their conversation
absorbed into the session's migrated one later."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine, delete, func, select, text
from sqlalchemy.dialects.postgresql import insert

from conversation.adapters.postgres.schema import conversations, messages
from conversation.adapters.postgres.statements import (
    _claim_sessions,
    _insert_message,
    _refresh_stats,
    _stored_messages,
)
from conversation.domain.errors import ForeignConversation, ForeignSession
from conversation.domain.messages import Conversation, Message, parse_timestamp
from conversation.services.ports import ActiveStoreUnavailable, SessionOwner


def _same_lifetime(row: Any, owner: Conversation) -> bool:
    """Whether a conversation the session saved directly belongs with `owner`: begun after
    it, or (begun first: a session's first message went to PostgreSQL while Redis failed
    between the claim and the write, and a later one made the conversation in Redis) not
    closed before it. One closed by an earlier close of the session is a conversation of
    its own."""
    if row.created_at >= parse_timestamp(owner.created_at):
        return True
    return row.closed_at is None or (
        owner.closed_at is not None and row.closed_at >= parse_timestamp(owner.closed_at))


# The sessions as two arrays, not a tuple IN list: a statement whose text never changes, that
# psycopg converts once per process (a list of a migration batch's sessions was a new
# statement each time, and converting it a fifth of migrating many short conversations).
_DIRECT_CONVERSATIONS = text("""
SELECT c.id, c.tenant_id, c.session_id, c.created_at, c.closed_at
FROM conversations c
JOIN unnest(CAST(:tenants AS text[]), CAST(:sessions AS text[])) AS w(tenant_id, session_id)
    ON c.tenant_id = w.tenant_id AND c.session_id = w.session_id
WHERE c.migrated_at IS NULL
""")


def absorb_outage_conversations(connection: Any, migrated: Sequence[Conversation]) -> None:
    """Messages a session saved straight to PostgreSQL while Redis was down belong to the
    conversation the session had in Redis: when that one is migrated, it takes them over, so
    an outage does not split a conversation. (Saved directly = never migrated.)"""
    sessions = {(c.tenant_id, c.session_id): c for c in migrated}
    c = conversations.c
    candidates = connection.execute(_DIRECT_CONVERSATIONS, {
        "tenants": [tenant for tenant, _ in sessions],
        "sessions": [session for _, session in sessions]}).all()
    for row in candidates:
        owner = sessions[(row.tenant_id, row.session_id)]
        if row.id == owner.id or not _same_lifetime(row, owner):
            continue
        m = messages.c
        duplicate = messages.alias("kept")
        connection.execute(
            delete(messages).where(
                m.conversation_id == row.id,
                select(duplicate.c.id)
                .where(duplicate.c.conversation_id == owner.id, duplicate.c.id == m.id)
                .exists(),
            )
        )
        offset = connection.scalar(
            select(func.coalesce(func.max(m.seq), -1) + 1).where(m.conversation_id == owner.id)
        )
        connection.execute(
            messages.update()
            .where(m.conversation_id == row.id)
            .values(conversation_id=owner.id, seq=m.seq + offset)
        )
        connection.execute(delete(conversations).where(c.id == row.id))
        _refresh_stats(connection, owner.id)


class PostgresOutageWrites:
    """Saves straight to PostgreSQL while Redis is down, and session claims."""

    engine: Engine

    def save_direct(
        self, conversation: Conversation, message: Message, explicit: bool
    ) -> tuple[str, bool]:
        """Redis is down: the message goes to the session's conversation in PostgreSQL.

        Without a conversation id, that is the session's newest conversation saved this way
        and still open, or a new one. Counters are kept; the statistics row is computed when
        the conversation closes.
        """
        c = conversations.c
        with self.engine.begin() as connection:
            # Serialise the session's direct saves, so two workers make one conversation.
            connection.execute(
                select(func.pg_advisory_xact_lock(func.hashtext(
                    conversation.tenant_id + ":" + conversation.session_id)))
            )
            # The session's durable owner, claimed now if it has none: a session live only in
            # the Redis we cannot reach was claimed here when its first conversation was made.
            owner = _claim_sessions(
                connection, [(conversation.tenant_id, conversation.session_id)]
            ).get(conversation.session_id)
            if owner is None or owner.tenant_id != conversation.tenant_id:
                raise ForeignSession(f"session {conversation.session_id} belongs to another tenant")
            # Stored before by any of the session's conversations (a redelivery or a replay,
            # whichever tier it went to then): a duplicate.
            key = (conversation.tenant_id, conversation.session_id, message.id)
            previous = _stored_messages(connection, [key])
            if previous:
                return previous[key], False
            conversation_id: str | None
            if explicit:
                target = connection.execute(select(c.id, c.tenant_id).where(
                    c.id == conversation.id)).first()
                if target is None:
                    # Producers choose conversation ids, and the id may be live in the Redis
                    # we cannot reach, perhaps for another tenant: made here, it would become
                    # that tenant's at migration. Not known here = not decidable now: a
                    # transient failure, retried (then dead-lettered for a replay).
                    raise ActiveStoreUnavailable(
                        f"conversation {conversation.id} is not in PostgreSQL and the active "
                        "store, which may hold it, is unreachable")
                if target.tenant_id != conversation.tenant_id:
                    raise ForeignConversation(
                        f"conversation {conversation.id} belongs to another tenant")
                conversation_id = conversation.id
            else:
                conversation_id = connection.scalar(
                    select(c.id)
                    .where(
                        c.tenant_id == conversation.tenant_id,
                        c.session_id == conversation.session_id,
                        c.status == "active",
                        c.migrated_at.is_(None),
                    )
                    .order_by(c.created_at.desc())
                    .limit(1)
                )
            if conversation_id is None:
                conversation_id = conversation.id
                connection.execute(insert(conversations).values(
                    id=conversation_id, tenant_id=conversation.tenant_id,
                    session_id=conversation.session_id, agent_id=conversation.agent_id,
                    status="active", created_at=parse_timestamp(message.created_at),
                    message_count=0,
                ).on_conflict_do_nothing())
            inserted = _insert_message(connection, conversation_id, conversation.tenant_id, message)
            if inserted:
                connection.execute(
                    conversations.update()
                    .where(c.id == conversation_id)
                    .values(
                        message_count=c.message_count + 1,
                        last_message_at=func.greatest(
                            c.last_message_at, parse_timestamp(message.created_at)),
                    )
                )
        return conversation_id, inserted

    def claim_sessions(self, claims: Sequence[tuple[str, str]]) -> dict[str, SessionOwner]:
        """session id -> owner for (tenant, session) claims; an unowned session becomes the
        claiming tenant's (`new`), in one statement."""
        with self.engine.begin() as connection:
            return _claim_sessions(connection, claims)

    def stored_messages(
        self, wanted: Sequence[tuple[str, str, str]]
    ) -> dict[tuple[str, str, str], str]:
        """(tenant, session, message id) -> conversation id, for those of the wanted messages
        a persisted conversation of their session holds."""
        with self.engine.connect() as connection:
            return _stored_messages(connection, wanted)

    def close_active(self, tenant_id: str, session_id: str, closed_at: str) -> list[str]:
        """Close the session's conversations saved directly during an outage."""
        c = conversations.c
        with self.engine.begin() as connection:
            closed = list(connection.scalars(
                conversations.update()
                .where(c.tenant_id == tenant_id, c.session_id == session_id,
                       c.status == "active", c.migrated_at.is_(None))
                .values(status="closed", closed_at=parse_timestamp(closed_at))
                .returning(c.id)
            ))
            for conversation_id in closed:
                _refresh_stats(connection, conversation_id)
        return closed
