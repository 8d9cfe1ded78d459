"""COPY: a migration batch's messages in one stream."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from conversation.adapters.postgres.rows import MESSAGE_COLUMNS
from conversation.domain.messages import Conversation, Message, Role


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
        # Declared types: psycopg formats each column with its one dumper instead of looking
        # one up for every value.
        copy.set_types(_COPY_TYPES)
        write = copy.write_row
        dumps = orjson.dumps
        for conversation, history, _ in batch:
            conversation_id, tenant_id = conversation.id, conversation.tenant_id
            # A message unpacked whole: one step, where eleven attribute reads were a good part
            # of each row's cost.
            for seq, (message_id, role, content, created_at, tokens, encoding, name, metadata,
                      agent_id, tool_calls, tool_call_id) in enumerate(history):
                write((
                    conversation_id, message_id, seq, tenant_id, _ROLE_TEXT[role], content, name,
                    tokens, encoding, agent_id, created_at,
                    dumps(metadata).decode() if metadata else None,
                    dumps(tool_calls).decode() if tool_calls else None,
                    tool_call_id,
                ))


_ROLE_TEXT = {role: role.value for role in Role}
# MESSAGE_COLUMNS' types as the rows carry them: text (timestamps and JSON too, which
# PostgreSQL parses as COPY's text format always has it do) but for the two integers.
_COPY_TYPES = ["int4" if column in ("seq", "tokens") else "text" for column in MESSAGE_COLUMNS]
