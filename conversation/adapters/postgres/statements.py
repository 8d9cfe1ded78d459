"""Steps on one connection that several writes share: a message's insert, session claims,
which messages a session's conversations hold, a conversation's counters and stats row."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select, text, tuple_
from sqlalchemy.dialects.postgresql import insert

from conversation.adapters.postgres.rows import (
    _ORDER,
    _conversation,
    _iso,
    _message,
    _stats_row,
    _ts,
    message_row,
    upsert_stats,
)
from conversation.adapters.postgres.schema import conversations, messages, session_owners
from conversation.domain.messages import Message
from conversation.domain.stats import summarise_conversation
from conversation.services.ports import SessionOwner


def _insert_message(connection: Any, conversation_id: str, tenant_id: str, message: Message) -> bool:
    """Append after the conversation's last position; False for a message id already there."""
    next_seq = connection.scalar(
        select(func.coalesce(func.max(messages.c.seq), -1) + 1).where(
            messages.c.conversation_id == conversation_id
        )
    )
    # RETURNING, not rowcount: the driver's rowcount for ON CONFLICT DO NOTHING is not
    # reliable here (it said 1 for a skipped row).
    inserted = connection.execute(
        insert(messages)
        .values(message_row(conversation_id, tenant_id, next_seq, message))
        .on_conflict_do_nothing()
        .returning(messages.c.id)
    ).first()
    return inserted is not None


# Insert-or-select in one statement: the rows this statement inserted come from RETURNING, the
# others (already owned) from the table. Sessions in id order, so two concurrent claims lock
# their rows in the same order.
_CLAIM_SESSIONS = text("""
WITH wanted AS (
    SELECT * FROM unnest(CAST(:sessions AS text[]), CAST(:tenants AS text[]))
        AS w(session_id, tenant_id)
), claimed AS (
    INSERT INTO session_owners (session_id, tenant_id, created_at)
    SELECT session_id, tenant_id, now() FROM wanted ORDER BY session_id
    ON CONFLICT (session_id) DO NOTHING
    RETURNING session_id, tenant_id
)
SELECT session_id, tenant_id, true AS new FROM claimed
UNION ALL
SELECT o.session_id, o.tenant_id, false FROM session_owners o JOIN wanted USING (session_id)
""")


def _claim_sessions(
    connection: Any, claims: Sequence[tuple[str, str]]
) -> dict[str, SessionOwner]:
    """session id -> its owner, for (tenant, session) claims: a session no tenant owns
    becomes the claiming tenant's (the first claim of a batch wins)."""
    wanted: dict[str, str] = {}
    for tenant_id, session_id in claims:
        wanted.setdefault(session_id, tenant_id)
    if not wanted:
        return {}
    owners = {row.session_id: SessionOwner(row.tenant_id, row.new) for row in connection.execute(
        _CLAIM_SESSIONS, {"sessions": list(wanted), "tenants": list(wanted.values())})}
    missing = [session_id for session_id in wanted if session_id not in owners]
    if missing:
        # Claimed by a transaction that committed while this statement waited on its row: the
        # statement's snapshot predates it, a new statement sees it.
        owners.update((session_id, SessionOwner(tenant_id)) for session_id, tenant_id in
                      connection.execute(
                          select(session_owners.c.session_id, session_owners.c.tenant_id)
                          .where(session_owners.c.session_id.in_(missing))).tuples())
    return owners


def _stored_messages(
    connection: Any, wanted: Sequence[tuple[str, str, str]]
) -> dict[tuple[str, str, str], str]:
    """(tenant, session, message id) -> conversation id, for those of the wanted messages a
    persisted conversation of their session holds. The sessions' conversations first
    (ix_conversations_tenant_session), then their messages by primary key (conversation_id,
    id): two statements, so that no plan can start from the messages (a message id alone, or
    the tenant equated to a constant, would offer a walk over many of them)."""
    by_session: dict[tuple[str, str], set[str]] = {}
    for tenant_id, session_id, message_id in wanted:
        by_session.setdefault((tenant_id, session_id), set()).add(message_id)
    if not by_session:
        return {}
    c, m = conversations.c, messages.c
    held = connection.execute(
        select(c.id, c.tenant_id, c.session_id)
        .where(tuple_(c.tenant_id, c.session_id).in_(sorted(by_session)))
    ).all()
    if not held:
        return {}
    owners = {row.id: (row.tenant_id, row.session_id) for row in held}
    pairs = [(conversation_id, message_id) for conversation_id, session in owners.items()
             for message_id in sorted(by_session[session])]
    found: dict[tuple[str, str, str], str] = {}
    for row in connection.execute(
        select(m.conversation_id, m.id, m.tenant_id)
        .where(tuple_(m.conversation_id, m.id).in_(pairs))
    ):
        tenant_id, session_id = owners[row.conversation_id]
        if row.tenant_id == tenant_id:  # a row another tenant left under the id: not its
            found[(tenant_id, session_id, row.id)] = row.conversation_id
    return found


def _refresh_stats(connection: Any, conversation_id: str) -> None:
    """Recompute a persisted conversation's counters and stats row from its messages."""
    row = connection.execute(select(conversations).where(conversations.c.id == conversation_id)).first()
    history = [
        _message(r)
        for r in connection.execute(
            select(messages)
            .where(messages.c.conversation_id == conversation_id,
                   messages.c.tenant_id == row.tenant_id)
            .order_by(*_ORDER)
        )
    ]
    stats = summarise_conversation(history, _iso(row.closed_at))
    connection.execute(
        conversations.update()
        .where(conversations.c.id == conversation_id)
        .values(message_count=stats.message_count, last_message_at=_ts(stats.ended_at))
    )
    upsert_stats(connection, [_stats_row(_conversation(row), stats)])
