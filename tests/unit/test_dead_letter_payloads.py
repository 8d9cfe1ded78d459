"""What a dead letter records: `kwargs` as jsonb can show them, and the exact payload out of
line whenever that copy is not it, so a replay never sends a preview or an altered payload."""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from conversation.adapters.dead_letters import MAX_RECORDED_BYTES, _exact, payload_of
from tests.fakes import payload


def row(kwargs: Any, blob: bytes | None, replayable: bool = True) -> SimpleNamespace:
    return SimpleNamespace(kwargs=kwargs, payload=blob, replayable=replayable)


def test_a_small_clean_payload_is_kept_inline_only() -> None:
    kwargs = {"messages": [payload(metadata={"a": [1, 2.5, None]})]}
    recorded, blob, replayable = _exact(kwargs)
    assert (recorded, blob, replayable) == (kwargs, None, True)
    assert payload_of(row(recorded, blob)) == kwargs


def test_text_jsonb_refuses_is_shown_readable_and_replayed_exact() -> None:
    kwargs = payload(content="a\x00b", metadata={"k\x00": "\ud800"})
    recorded, blob, replayable = _exact(kwargs)
    assert recorded["content"] == "a\ufffdb" and replayable
    replayed = payload_of(row(recorded, blob))
    assert replayed["content"] == "a\x00b" and replayed["metadata"]["k\x00"] == "\ud800"


def test_nan_is_shown_as_text_and_never_replayed_as_another_payload() -> None:
    # The service's JSON writer (orjson) would publish NaN as null: a different payload.
    recorded, blob, replayable = _exact(payload(metadata={"n": float("nan")}))
    assert recorded["metadata"]["n"] == "nan"
    assert (blob, replayable) == (None, False)
    assert payload_of(row(recorded, blob, replayable)) is None


def test_a_payload_past_the_inline_limit_is_a_preview_and_replays_whole() -> None:
    items = [payload(message_id=f"m{i}", content="é" * 100_000) for i in range(3)]
    recorded, blob, replayable = _exact({"messages": items})
    assert replayable
    assert recorded["_truncated"] and recorded["bytes"] > MAX_RECORDED_BYTES
    assert recorded["messages"] == [
        {"tenant_id": "acme", "session_id": "s-1", "agent_id": "support", "message_id": f"m{i}"}
        for i in range(3)
    ]
    assert blob is not None and len(blob) < 10_000  # compressed
    assert payload_of(row(recorded, blob)) == {"messages": items}


def test_a_preview_is_never_replayed() -> None:
    assert payload_of(row({"_truncated": True, "preview": "{"}, None)) is None
    assert payload_of(row({"_truncated": True}, None, replayable=False)) is None
