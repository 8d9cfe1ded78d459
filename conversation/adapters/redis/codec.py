"""How values are stored in Redis: JSON in, domain values and records out."""
from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

import msgspec
import orjson

from conversation.domain.messages import Message
from conversation.services.ports import MessageRecord, SessionState


def _dumps(data: dict[str, Any]) -> str:
    return orjson.dumps(data).decode()


def _json_array(items: Sequence[bytes]) -> bytes:
    """Stored JSON values as one array: one parse for them all is far cheaper than one each."""
    return b"[" + b",".join(items) + b"]"


def _decode_records(items: Sequence[bytes]) -> list[MessageRecord]:
    return _RECORDS.decode(_json_array(items)) if items else []


def _decode_messages(items: Sequence[bytes]) -> list[Message]:
    return [Message.from_dict(data) for data in orjson.loads(_json_array(items))] if items else []


_ENCODING_OF = operator.attrgetter("encoding")
_RECORD = msgspec.json.Decoder(MessageRecord)
_RECORDS = msgspec.json.Decoder(list[MessageRecord])


def _token_counts(stored: dict[Any, Any]) -> dict[str, dict[str, int]]:
    """The token_counts hash ("encoding|message id" -> tokens) by encoding."""
    counts: dict[str, dict[str, int]] = {}
    for field_name, tokens in stored.items():
        encoding, _, message_id = _text(field_name).partition("|")
        counts.setdefault(encoding, {})[message_id] = int(tokens)
    return counts


def _session_state(state: dict[Any, Any]) -> SessionState | None:
    if not state:
        return None
    return SessionState(
        tenant_id=_get(state, "tenant_id") or "",
        conversation_id=_get(state, "conversation_id"),
        generation=int(_get(state, "generation") or 0),
        closed_at=_get(state, "closed_at"),
    )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _get(mapping: dict[Any, Any], key: str) -> str | None:
    value = mapping.get(key, mapping.get(key.encode()))
    return _text(value) if value is not None else None

