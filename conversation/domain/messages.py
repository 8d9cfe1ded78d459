"""Messages and conversations as the service stores them."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NamedTuple

# \A...\Z, not ^...$: `$` also matches before a trailing newline, so "acme\n" would pass a
# `match` as a tenant of its own. Any caller's `match`, `search` or `fullmatch` sees the whole.
IDENTIFIER_PATTERN = re.compile(r"\A[A-Za-z0-9_.\-]{1,128}\Z")


class Role(StrEnum):
    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"


class ConversationStatus(StrEnum):
    ACTIVE = "active"
    CLOSED = "closed"


def utc_timestamp(moment: datetime) -> str:
    """A fixed-width ISO-8601 UTC string: sorting these strings sorts the instants."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    # isoformat, not strftime("%Y..."): glibc writes year 1 as "1", not "0001", which breaks
    # both the fixed width (the order) and reading it back.
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def parse_timestamp(value: str) -> datetime:
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


# The last UTC day Python holds is left out: statistics bucket an instant into its day
# [day, day + 1), which Python cannot compute for 9999-12-31. PostgreSQL's timestamptz holds
# far more (4713 BC to 294276 AD), so Python's range, less that day, is the service's.
LATEST_INSTANT = datetime(9999, 12, 31, tzinfo=UTC)
_RANGE = "0001-01-01T00:00:00Z to 9999-12-30T23:59:59.999999Z"


def stored_timestamp(value: str) -> str:
    """The form a timestamp is stored in (both tiers), or ValueError saying why it cannot be.

    The saver's own conversion, run at validation: an instant Python cannot hold once in UTC
    ("0001-01-01T00:00:00+01:00") is refused with a reason instead of failing the save."""
    try:
        moment = parse_timestamp(value)
    except OverflowError as exc:
        raise ValueError(f"is out of range once converted to UTC ({_RANGE})") from exc
    except ValueError as exc:
        raise ValueError("is not an ISO-8601 timestamp") from exc
    if moment >= LATEST_INSTANT:
        raise ValueError(f"is out of range ({_RANGE})")
    return utc_timestamp(moment)


# What PostgreSQL's text and jsonb and the Redis codec (orjson) refuse in a string.
_UNSTORABLE_CHARACTER = re.compile("[\x00\ud800-\udfff]")
_NUL = "contains a NUL character, which PostgreSQL cannot store"
# orjson writes integers of 64 bits (signed or unsigned) and refuses larger ones.
_JSON_INT_RANGE = (-(2**63), 2**64 - 1)


def text_problem(value: str) -> str | None:
    """Why a string cannot be stored as it is (NUL, lone surrogate), or None."""
    if value.isascii():  # a flag CPython keeps: most text is checked by one `in`
        return _NUL if "\x00" in value else None
    found = _UNSTORABLE_CHARACTER.search(value)
    if found is None:
        return None
    return _NUL if found.group() == "\x00" else "is not valid UTF-8 (lone surrogate)"


def storable_text(value: str) -> str:
    """Text as both tiers can store it: NUL and lone surrogates dropped. For what the service
    makes itself (a model's summary); a producer's text is refused instead (text_problem)."""
    return value if text_problem(value) is None else _UNSTORABLE_CHARACTER.sub("", value)


def json_problem(value: Any, max_depth: int) -> str | None:
    """Why a JSON value cannot be stored the same in both tiers, or None.

    Iterative (a recursive walk would overflow on hostile input). Refused: NUL and lone
    surrogates in keys and strings (jsonb, orjson), NaN and infinities (not JSON: orjson would
    store null, jsonb refuses them), integers orjson cannot write, and anything not JSON."""
    stack: list[tuple[Any, str, int]] = [(value, "", 1)]
    while stack:
        item, path, depth = stack.pop()
        if depth > max_depth:
            return f"is nested deeper than {max_depth} levels"
        if isinstance(item, str):
            problem = text_problem(item)
            if problem:
                return f"{_at(path)}{problem}"
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int):
            if not _JSON_INT_RANGE[0] <= item <= _JSON_INT_RANGE[1]:
                return f"{_at(path)}is an integer beyond 64 bits"
        elif isinstance(item, float):
            if not math.isfinite(item):
                return f"{_at(path)}is {item!r} (NaN and Infinity are not JSON)"
        elif isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str):
                    return f"{_at(path)}has a key that is not a string"
                problem = text_problem(key)
                if problem:
                    return f"{_at(path)}has a key that {problem}"
                stack.append((child, f"{path}.{key}" if path else key, depth + 1))
        elif isinstance(item, list):
            stack.extend((child, f"{path}[{i}]", depth + 1) for i, child in enumerate(item))
        else:
            return f"{_at(path)}is a {type(item).__name__}, not JSON"
    return None


def _at(path: str) -> str:
    """Where in a value a problem is ("a.b[2] "), cut short: the reason names, not copies."""
    if not path:
        return ""
    return (path[:100] + "... ") if len(path) > 100 else f"{path} "


def now_timestamp() -> str:
    # utc_timestamp's form, without its conversions: the moment is UTC already (one a message).
    return datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


_new_tuple = tuple.__new__
_NO_METADATA: dict[str, Any] = {}
_ROLES = {role.value: role for role in Role}


class Message(NamedTuple):
    """One chat message; `tokens` is its cost under `encoding`, counted once at save time.

    A named tuple, not a dataclass: a context read builds one per message it walks, and a
    tuple is several times cheaper to make. Treat `metadata` as read-only.
    """

    id: str
    role: Role
    content: str
    created_at: str
    tokens: int
    encoding: str
    name: str | None = None
    metadata: dict[str, Any] = _NO_METADATA
    agent_id: str | None = None
    # Chat Completions' shape: [{"id", "type": "function", "function": {"name", "arguments"}}]
    # on an assistant message; the call a tool message answers. Treat as read-only.
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "role": self.role.value,
            "content": self.content,
            "created_at": self.created_at,
            "tokens": self.tokens,
            "encoding": self.encoding,
        }
        if self.name is not None:
            data["name"] = self.name
        if self.metadata:
            data["metadata"] = self.metadata
        if self.agent_id is not None:
            data["agent_id"] = self.agent_id
        if self.tool_calls:
            data["tool_calls"] = self.tool_calls
        if self.tool_call_id is not None:
            data["tool_call_id"] = self.tool_call_id
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Message:
        get = data.get
        # tuple.__new__ straight away: a context read decodes a thousand of these, and the
        # NamedTuple constructor's keyword handling costs a third of each.
        return _new_tuple(cls, (
            data["id"],
            _ROLES[data["role"]],
            data["content"],
            data["created_at"],
            data["tokens"],
            data["encoding"],
            get("name"),
            get("metadata") or _NO_METADATA,
            get("agent_id"),
            get("tool_calls") or None,
            get("tool_call_id"),
        ))


@dataclass(frozen=True)
class Conversation:
    id: str
    tenant_id: str
    session_id: str
    agent_id: str
    created_at: str
    status: ConversationStatus = ConversationStatus.ACTIVE
    closed_at: str | None = None
    summary: str | None = None
    summary_through: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "tenant_id": self.tenant_id,
            "session_id": self.session_id,
            "agent_id": self.agent_id,
            "created_at": self.created_at,
            "status": str(self.status),
            "closed_at": self.closed_at,
            "summary": self.summary,
            "summary_through": self.summary_through,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Conversation:
        return cls(
            id=data["id"],
            tenant_id=data["tenant_id"],
            session_id=data["session_id"],
            agent_id=data["agent_id"],
            created_at=data["created_at"],
            status=ConversationStatus(data.get("status", "active")),
            closed_at=data.get("closed_at"),
            summary=data.get("summary"),
            summary_through=data.get("summary_through"),
        )


@dataclass(frozen=True)
class NewMessage:
    """A validated save_message command."""

    tenant_id: str
    session_id: str
    agent_id: str
    role: Role
    content: str
    message_id: str
    conversation_id: str | None = None
    created_at: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None


def chat_message(
    role: str,
    content: str,
    name: str | None = None,
    tool_calls: list[dict[str, Any]] | None = None,
    tool_call_id: str | None = None,
) -> dict[str, Any]:
    """A message as Chat Completions takes it: `name`, `tool_calls` and `tool_call_id` only
    when the message has them (the contract's context entries)."""
    entry: dict[str, Any] = {"role": role, "content": content}
    if name:
        entry["name"] = name
    if tool_calls:
        entry["tool_calls"] = tool_calls
    if tool_call_id is not None:
        entry["tool_call_id"] = tool_call_id
    return entry
