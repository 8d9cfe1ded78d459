"""Rows to and from the domain's values, and the statements built once per process."""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Table, func
from sqlalchemy.dialects import postgresql

from conversation.adapters.postgres.schema import conversation_stats, conversations, messages
from conversation.domain.messages import (
    Conversation,
    ConversationStatus,
    Message,
    Role,
    parse_timestamp,
    storable_text,
    utc_timestamp,
)
from conversation.domain.stats import ConversationStats
from conversation.services.ports import MessageRecord

TAIL_CHUNK = 64


def _ts(value: str | None) -> datetime | None:
    return parse_timestamp(value) if value else None


def _iso(value: datetime | None) -> str | None:
    return utc_timestamp(value) if value else None


def message_row(conversation_id: str, tenant_id: str, seq: int, message: Message) -> dict[str, Any]:
    return {
        "conversation_id": conversation_id,
        "id": message.id,
        "seq": seq,
        "tenant_id": tenant_id,
        "role": str(message.role),
        "content": message.content,
        "name": message.name,
        "tokens": message.tokens,
        "encoding": message.encoding,
        "agent_id": message.agent_id,
        "created_at": parse_timestamp(message.created_at),
        "metadata": message.metadata or None,
        "tool_calls": message.tool_calls or None,
        "tool_call_id": message.tool_call_id,
    }


def _record(row: Any) -> MessageRecord:
    """A row of _RECORD_COLUMNS as a record."""
    return MessageRecord(*row[:_RECORD_FIELDS])


def _message(row: Any) -> Message:
    return Message(
        id=row.id,
        role=Role(row.role),
        content=row.content,
        created_at=utc_timestamp(row.created_at),
        tokens=row.tokens,
        encoding=row.encoding,
        name=row.name,
        metadata=row.metadata or {},
        agent_id=row.agent_id,
        tool_calls=row.tool_calls or None,
        tool_call_id=row.tool_call_id,
    )


def _conversation(row: Any) -> Conversation:
    return Conversation(
        id=row.id,
        tenant_id=row.tenant_id,
        session_id=row.session_id,
        agent_id=row.agent_id,
        created_at=utc_timestamp(row.created_at),
        status=ConversationStatus(row.status),
        closed_at=_iso(row.closed_at),
        summary=row.summary,
        summary_through=row.summary_through,
    )


def conversation_row(
    conversation: Conversation, stats: ConversationStats, migrated_at: datetime
) -> dict[str, Any]:
    """A `conversations` row as migration writes it: every column (json_to_recordset would
    write NULL for one left out, over its default)."""
    return {
        "id": conversation.id,
        "tenant_id": conversation.tenant_id,
        "session_id": conversation.session_id,
        "agent_id": conversation.agent_id,
        "status": str(conversation.status),
        "created_at": parse_timestamp(conversation.created_at),
        "closed_at": _ts(conversation.closed_at),
        "last_message_at": _ts(stats.ended_at),
        "message_count": stats.message_count,
        # One stored before summaries were cleaned may hold a NUL (text holds none).
        "summary": storable_text(conversation.summary) if conversation.summary else None,
        "summary_through": conversation.summary_through,
        "migrated_at": migrated_at,
    }


def _stats_row(conversation: Conversation, stats: ConversationStats) -> dict[str, Any]:
    return {
        "conversation_id": conversation.id,
        "tenant_id": conversation.tenant_id,
        "agent_id": conversation.agent_id,
        "message_count": stats.message_count,
        "user_messages": stats.user_messages,
        "assistant_messages": stats.assistant_messages,
        "tokens_in": stats.tokens_in,
        "tokens_out": stats.tokens_out,
        "duration": stats.duration_seconds,
        "first_response_seconds": stats.first_response_seconds,
        "satisfaction": stats.satisfaction,
        # A conversation with no message yet still belongs to the day it was made.
        "started_at": _ts(stats.started_at or conversation.created_at),
        "ended_at": _ts(stats.ended_at),
        "closed_at": _ts(conversation.closed_at),
        "resolution_seconds": stats.resolution_seconds,
        "model": stats.model,
    }


_PG = postgresql.dialect()


def _insert_from_json(table: Table) -> str:
    """INSERT ... SELECT of a table's rows from one JSON array of row objects: a statement
    whose text never changes, so psycopg converts it once per process, and whose one
    parameter orjson writes at C speed. (SQLAlchemy's multi-row VALUES for many rows was a
    new statement on each call, and psycopg's parsing it a fifth of migrating many short
    conversations.) Each field goes through its column type's input function, as a value
    of COPY's would."""
    names = ", ".join(c.name for c in table.c)
    types = ", ".join(f"{c.name} {c.type.compile(dialect=_PG)}" for c in table.c)
    return (f"INSERT INTO {table.name} ({names}) SELECT {names} "
            f"FROM json_to_recordset(%s::json) AS r({types})")


def _updating(table: Table, key: str, keep: tuple[str, ...]) -> str:
    return (f" ON CONFLICT ({key}) DO UPDATE SET "
            + ", ".join(f"{c.name} = excluded.{c.name}" for c in table.c if c.name not in keep))


# A row of another tenant under the same id is never taken over: the statement skips it and
# returns no row for it, and the caller refuses that conversation. xmax = 0 on a returned row:
# this statement inserted it (it did not exist).
_CONVERSATIONS_UPSERT = (
    _insert_from_json(conversations)
    + _updating(conversations, "id", ("id", "tenant_id", "session_id", "created_at"))
    + " WHERE conversations.tenant_id = excluded.tenant_id RETURNING id, xmax = 0"
)
_STATS_UPSERT = (_insert_from_json(conversation_stats)
                 + _updating(conversation_stats, "conversation_id", ("conversation_id",)))


def _json_rows(rows: Sequence[dict[str, Any]]) -> str:
    return orjson.dumps(rows).decode()


def upsert_conversations(connection: Any, rows: Sequence[dict[str, Any]]) -> list[Any]:
    """Insert or update conversation rows; (id, inserted) of those written, none for an id
    another tenant holds."""
    return connection.exec_driver_sql(_CONVERSATIONS_UPSERT, (_json_rows(rows),)).all()


def upsert_stats(connection: Any, rows: Sequence[dict[str, Any]]) -> None:
    """Insert or replace conversation_stats rows (_stats_row's)."""
    connection.exec_driver_sql(_STATS_UPSERT, (_json_rows(rows),))


_ORDER = (messages.c.created_at, messages.c.seq, messages.c.id)

MESSAGE_COLUMNS = (
    "conversation_id", "id", "seq", "tenant_id", "role", "content", "name", "tokens",
    "encoding", "agent_id", "created_at", "metadata", "tool_calls", "tool_call_id",
)


# What a context read needs of a message, in MessageRecord's order (metadata and the rest stay
# in the database), then the keyset columns. PostgreSQL writes the timestamp as utc_timestamp
# does: formatting it in Python was half of turning rows into records.
_RECORD_COLUMNS = (
    messages.c.id, messages.c.role, messages.c.content,
    func.to_char(func.timezone("UTC", messages.c.created_at), 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
    messages.c.tokens, messages.c.encoding, messages.c.name, messages.c.tool_calls,
    messages.c.tool_call_id, messages.c.created_at, messages.c.seq,
)
_RECORD_FIELDS = len(MessageRecord.__struct_fields__) - 1  # all but other_tokens
