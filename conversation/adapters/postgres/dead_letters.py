"""Erasing an erased tenant's (or conversation's) data from the dead letters."""
from __future__ import annotations

from typing import Any

from sqlalchemy import text


def _dead_letter_match(item: str, conversation: bool) -> str:
    """SQL: the task payload (or batch item) `item` is the erased data's: the tenant's, or for
    a conversation, one naming it (a payload with no tenant, a migration's, too) or one of the
    tenant's session that names no conversation (its message went to the session's)."""
    if not conversation:
        return f"{item} @> jsonb_build_object('tenant_id', CAST(:tenant AS text))"
    return (
        f"(({item} @> jsonb_build_object('conversation_id', CAST(:conversation AS text)) "
        f"AND ({item} @> jsonb_build_object('tenant_id', CAST(:tenant AS text)) "
        f"OR {item} -> 'tenant_id' IS NULL)) "
        f"OR ({item} @> jsonb_build_object('tenant_id', CAST(:tenant AS text), "
        f"'session_id', CAST(:session AS text)) AND {item} -> 'conversation_id' IS NULL))"
    )


def _like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def erase_dead_letters(
    connection: Any,
    tenant_id: str,
    conversation_id: str | None = None,
    session_id: str | None = None,
) -> int:
    """Erase the dead letters that hold the tenant's (or one of its conversation's) data; the
    number of dead letters removed or edited.

    A single task's payload goes whole; a batch (`messages`, `sessions`) loses only the items
    that match, and goes when none is left, so another tenant's items in it stay replayable.
    A payload recorded as a truncated preview cannot be edited: it goes whole when the
    preview names the tenant (or the conversation).
    """
    conversation = conversation_id is not None
    params: dict[str, Any] = {"tenant": tenant_id, "conversation": conversation_id or "",
              "session": session_id or ""}
    emptied: list[int] = []
    edited = 0
    for field in ("messages", "sessions"):
        match = _dead_letter_match("e.item", conversation)
        rows = connection.execute(text(f"""
            UPDATE dead_letters d SET kwargs = jsonb_set(d.kwargs, '{{{field}}}', kept.items)
            FROM (
                SELECT l.id, COALESCE(jsonb_agg(e.item) FILTER (WHERE NOT ({match})),
                                      '[]'::jsonb) AS items
                FROM dead_letters l, jsonb_array_elements(l.kwargs -> '{field}') AS e(item)
                WHERE jsonb_typeof(l.kwargs -> '{field}') = 'array' AND l.payload IS NULL
                GROUP BY l.id HAVING bool_or({match})
            ) kept
            WHERE d.id = kept.id
            RETURNING d.id, jsonb_array_length(kept.items) = 0 AS empty
        """), params).all()
        edited += sum(1 for row in rows if not row.empty)
        emptied += [row.id for row in rows if row.empty]
    if conversation:
        preview = ("(d.kwargs ->> 'preview' LIKE :conversation_like ESCAPE '\\' OR "
                   "(d.kwargs ->> 'preview' LIKE :tenant_like ESCAPE '\\' AND "
                   "d.kwargs ->> 'preview' LIKE :session_like ESCAPE '\\'))")
    else:
        preview = "d.kwargs ->> 'preview' LIKE :tenant_like ESCAPE '\\'"
    params |= {
        "tenant_like": f'%"tenant_id": "{_like(tenant_id)}"%',
        "conversation_like": f'%"conversation_id": "{_like(conversation_id or "")}"%',
        "session_like": f'%"session_id": "{_like(session_id or "")}"%',
        "emptied": emptied,
    }
    # A payload kept out of line (compressed, exact) cannot be edited item by item: a batch
    # holding any erased item goes whole, the other tenants' items with it (erasure wins).
    item = _dead_letter_match("e.item", conversation)
    out_of_line = " OR ".join(
        f"""EXISTS (SELECT 1 FROM jsonb_array_elements(CASE WHEN jsonb_typeof(d.kwargs -> '{field}')
                    = 'array' THEN d.kwargs -> '{field}' ELSE '[]'::jsonb END) AS e(item)
                    WHERE {item})"""
        for field in ("messages", "sessions"))
    removed = connection.execute(text(f"""
        DELETE FROM dead_letters d
        WHERE d.id = ANY(CAST(:emptied AS bigint[])) OR {_dead_letter_match("d.kwargs", conversation)}
           OR (d.kwargs ? '_truncated' AND {preview})
           OR (d.payload IS NOT NULL AND ({out_of_line}))
    """), params).rowcount
    return int(removed) + edited
