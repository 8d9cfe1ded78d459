"""A tenant's conversations and messages as CSV or JSONL, streamed: one message per line, the
conversation's fields repeated, so memory stays constant whatever the size of the export.

Persisted conversations come from PostgreSQL (the read replica when set) through a server-side
cursor; the tenant's active conversations follow from Redis, one conversation at a time.
"""
from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Engine, and_, select

from conversation.adapters.sql_schema import conversations, messages
from conversation.domain.messages import parse_timestamp, utc_timestamp
from conversation.services.tiers import Tiers

FORMATS = ("csv", "jsonl")
COLUMNS = (
    "conversation_id", "session_id", "agent_id", "status", "conversation_created_at",
    "closed_at", "message_id", "role", "name", "content", "tokens", "created_at", "metadata",
    "tool_calls", "tool_call_id",
)
# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection, OWASP):
# the CSV export, made to be opened in one, prefixes such text with ' so it shows as written.
# JSONL is the exact export.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
ROWS_PER_FETCH = 200  # rows held at once: messages can be 200,000 characters


def export_records(
    read_engine: Engine,
    tiers: Tiers,
    tenant_id: str,
    start: datetime | None = None,
    end: datetime | None = None,
) -> Iterator[dict[str, Any]]:
    """Every message of the tenant's conversations created in [start, end), in order."""
    c, m = conversations.c, messages.c
    query = (
        select(c.id, c.session_id, c.agent_id, c.status, c.created_at, c.closed_at,
               m.id.label("message_id"), m.role, m.name, m.content, m.tokens,
               m.created_at.label("message_created_at"), m.metadata, m.tool_calls,
               m.tool_call_id)
        # The message's own tenant too: a row of another tenant under the id is never read.
        .join(messages, and_(m.conversation_id == c.id, m.tenant_id == c.tenant_id))
        .where(c.tenant_id == tenant_id)
        .order_by(c.created_at, c.id, m.created_at, m.seq)
    )
    if start:
        query = query.where(c.created_at >= start)
    if end:
        query = query.where(c.created_at < end)
    persisted: set[str] = set()
    with read_engine.connect() as connection:
        result = connection.execution_options(stream_results=True, yield_per=ROWS_PER_FETCH)
        for row in result.execute(query):
            persisted.add(row.id)
            yield {
                "conversation_id": row.id, "session_id": row.session_id,
                "agent_id": row.agent_id, "status": row.status,
                "conversation_created_at": utc_timestamp(row.created_at),
                "closed_at": utc_timestamp(row.closed_at) if row.closed_at else None,
                "message_id": row.message_id, "role": row.role, "name": row.name,
                "content": row.content, "tokens": row.tokens,
                "created_at": utc_timestamp(row.message_created_at),
                "metadata": row.metadata or {},
                "tool_calls": row.tool_calls or None, "tool_call_id": row.tool_call_id,
            }
    yield from _active_records(tiers, tenant_id, start, end, persisted)


def _active_records(
    tiers: Tiers,
    tenant_id: str,
    start: datetime | None,
    end: datetime | None,
    persisted: set[str],
) -> Iterator[dict[str, Any]]:
    # None while Redis is down: what PostgreSQL holds is exported.
    for conversation in tiers.active_conversations(tenant_id):
        created = parse_timestamp(conversation.created_at)
        if conversation.id in persisted or (start and created < start) or (end and created >= end):
            continue
        for message in tiers.active_messages(conversation.id):
            yield {
                "conversation_id": conversation.id, "session_id": conversation.session_id,
                "agent_id": conversation.agent_id, "status": str(conversation.status),
                "conversation_created_at": conversation.created_at,
                "closed_at": conversation.closed_at, "message_id": message.id,
                "role": str(message.role), "name": message.name, "content": message.content,
                "tokens": message.tokens, "created_at": message.created_at,
                "metadata": message.metadata or {},
                "tool_calls": message.tool_calls, "tool_call_id": message.tool_call_id,
            }


def as_jsonl(records: Iterator[dict[str, Any]]) -> Iterator[bytes]:
    for record in records:
        yield orjson.dumps(record) + b"\n"


def as_csv(records: Iterator[dict[str, Any]]) -> Iterator[bytes]:
    buffer = io.StringIO()
    # RFC 4180's CRLF: the csv module quotes a field holding any character of the line
    # terminator, so with a bare "\n" a message's lone "\r" went out unquoted and split its row.
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    for record in records:
        tool_calls = record["tool_calls"]
        writer.writerow({
            **{column: _as_text_cell(value) for column, value in record.items()},
            "metadata": orjson.dumps(record["metadata"]).decode(),
            # JSON text in its cell, empty when the message has none (like tool_call_id).
            "tool_calls": orjson.dumps(tool_calls).decode() if tool_calls else None,
        })
        yield buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue().encode()


def _as_text_cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def encode(records: Iterator[dict[str, Any]], fmt: str) -> Iterator[bytes]:
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}")
    return as_csv(records) if fmt == "csv" else as_jsonl(records)
