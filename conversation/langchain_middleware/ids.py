"""Names derived from the run, so a retried step saves the same message once: message ids,
session ids from thread ids, and the ids a remote context read waits for."""
from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, ToolMessage

# Derived message ids live in their own namespace: the same run step gives the same id.
_NAMESPACE = uuid.UUID("6f1d6c8e-3c1b-5d0e-9a57-1f0c2b7e4a19")
# The service's identifier rule (CONTRACT; conversation.domain.messages.IDENTIFIER_PATTERN,
# not imported: the remote mode imports nothing of the service but its client).
_IDENTIFIER = re.compile(r"\A[A-Za-z0-9_.\-]{1,128}\Z")


def _keys(messages: Sequence[BaseMessage]) -> list[str]:
    """What names each message across a replay. A model's answer: the message it answered
    (`answer/{key}/{i}`, the i-th message of the response), so a retried step gets the same
    id. A tool result: the answer that made the call, and the call's id (models reuse call
    ids such as "call_0" from turn to turn). Anything else: its LangChain id (the agent's
    state gives every message one)."""
    keys: list[str] = []
    answered, position = "start", 0
    calls: dict[str, str] = {}  # call id -> the key of the answer that made it
    for message in messages:
        if isinstance(message, AIMessage):
            key = f"answer/{answered}/{position}"
            position += 1
            for call in [*message.tool_calls, *message.invalid_tool_calls]:
                if call.get("id"):
                    calls[str(call["id"])] = key
        else:
            if isinstance(message, ToolMessage) and message.tool_call_id:
                maker = calls.get(message.tool_call_id)
                # The answer's key as a digest: keys chained through a long tool loop
                # stay short.
                key = (f"tool/{uuid.uuid5(_NAMESPACE, maker).hex}/{message.tool_call_id}"
                       if maker else f"tool/{message.tool_call_id}")
            else:
                key = f"message/{message.id or uuid.uuid4().hex}"
            answered, position = key, 0
        keys.append(key)
    return keys



def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _session_id(thread: str) -> str:
    """A thread id the service takes as a session id as it is; any other (an e-mail address,
    a path) mapped to the same valid id every time (uuid5, as hex)."""
    if _IDENTIFIER.match(thread):
        return thread
    return uuid.uuid5(_NAMESPACE, f"thread/{thread}").hex


def _wait_id(to_send: list[dict[str, Any]], sent_alone: set[str]) -> str | None:
    """The id a remote context read waits for: the batch's last message not already sent as a
    task of its own (the batch is stored in one transaction, so its last message found means
    all found); if every one was sent alone, the first (the oldest, which the others follow).
    Either way the context is checked afterwards (`_up_to`, `_tool_rule`)."""
    fresh = [p["message_id"] for p in to_send if p["message_id"] not in sent_alone]
    if fresh:
        return fresh[-1]
    return to_send[0]["message_id"] if to_send else None
