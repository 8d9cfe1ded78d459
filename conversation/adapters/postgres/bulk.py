"""COPY: a migration batch's messages in one stream."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from conversation.adapters.postgres.rows import MESSAGE_COLUMNS
from conversation.domain.messages import Conversation, Message


def copy_messages(
    connection: Any,
    batch: Sequence[tuple[Conversation, Sequence[Message], Any]],
    new_ids: set[str],
) -> None:
    """COPY the batch's messages in.

    A conversation whose row this transaction created (`new_ids`) can have no message rows
    yet (they are only ever written with or after their conversation's), so its messages are
    copied straight into `messages`. The others (a migration run again, say) go through a
    staging table and `INSERT ... SELECT ... ON CONFLICT DO NOTHING`: COPY's speed, with the
    idempotency COPY alone cannot give.
    """
    cursor = connection.connection.driver_connection.cursor()
    columns = ", ".join(MESSAGE_COLUMNS)
    fresh = [item for item in batch if item[0].id in new_ids]
    known = [item for item in batch if item[0].id not in new_ids]
    if fresh:
        _copy_rows(cursor, "messages", columns, fresh)
    if known:
        cursor.execute(
            "CREATE TEMP TABLE IF NOT EXISTS messages_staging "
            "(LIKE messages INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
        _copy_rows(cursor, "messages_staging", columns, known)
        cursor.execute(
            f"INSERT INTO messages ({columns}) SELECT {columns} FROM messages_staging "
            "ON CONFLICT DO NOTHING"
        )
        cursor.execute("TRUNCATE messages_staging")


def _copy_rows(
    cursor: Any,
    table: str,
    columns: str,
    batch: Sequence[tuple[Conversation, Sequence[Message], Any]],
) -> None:
    with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        write = copy.write_row
        for conversation, history, _ in batch:
            conversation_id, tenant_id = conversation.id, conversation.tenant_id
            for seq, m in enumerate(history):
                write((
                    conversation_id, m.id, seq, tenant_id, m.role.value, m.content, m.name,
                    m.tokens, m.encoding, m.agent_id, m.created_at,
                    orjson.dumps(m.metadata).decode() if m.metadata else None,
                    orjson.dumps(m.tool_calls).decode() if m.tool_calls else None,
                    m.tool_call_id,
                ))
