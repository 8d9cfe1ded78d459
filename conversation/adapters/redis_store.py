"""The active store: conversations in Redis under the contract's keys (CONTRACT.md section 2).

Keys that one atomic step touches share a Redis Cluster slot through a hash tag: everything of
a conversation is tagged `{conversation_id}`, everything of a session `{session_id}`. The global
sets (`active_sessions`, the per-tenant active index) are updated in steps of their own.

Each message is stored as JSON with its token count, in a list kept in `created_at` order:
the common case appends; a late arrival is inserted where its time puts it.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import redis

from conversation.domain.errors import ForeignSession
from conversation.domain.messages import Conversation, Message
from conversation.services.ports import AppendResult, ClosedSession, SessionState

# How long a migrated conversation leaves a marker behind, so late messages find PostgreSQL
# without asking it; after that the save path asks PostgreSQL itself.
MIGRATED_MARKER_SECONDS = 7 * 24 * 3600
# How long a released session remembers its tenant and generation.
RELEASED_SESSION_SECONDS = 30 * 24 * 3600
TAIL_CHUNK = 64

_APPEND = """
-- KEYS: messages, message_ids, last_at, owner, migrated, conversation
-- ARGV: tenant, message_id, created_at, message_json, conversation_json, create
local owner = redis.call('GET', KEYS[4])
if not owner then
  local moved = redis.call('GET', KEYS[5])
  if moved then
    if moved ~= ARGV[1] then return -2 end
    return -1
  end
  if ARGV[6] ~= '1' then return -3 end
  redis.call('SET', KEYS[4], ARGV[1])
  redis.call('SET', KEYS[6], ARGV[5])
elseif owner ~= ARGV[1] then
  return -2
end
if redis.call('SADD', KEYS[2], ARGV[2]) == 0 then return 0 end
local last = redis.call('GET', KEYS[3])
if (not last) or ARGV[3] >= last then
  redis.call('RPUSH', KEYS[1], ARGV[4])
  redis.call('SET', KEYS[3], ARGV[3])
  return 1
end
-- A late arrival: walk back from the newest message to the one it follows.
local n = redis.call('LLEN', KEYS[1])
for i = -1, -n, -1 do
  local item = redis.call('LINDEX', KEYS[1], i)
  if cjson.decode(item)['created_at'] <= ARGV[3] then
    redis.call('LINSERT', KEYS[1], 'AFTER', item, ARGV[4])
    return 1
  end
end
redis.call('LPUSH', KEYS[1], ARGV[4])
return 1
"""

_RESOLVE_SESSION = """
-- KEYS: session_mapping, session_state   ARGV: tenant, candidate conversation id
local owner = redis.call('HGET', KEYS[2], 'tenant_id')
if owner and owner ~= ARGV[1] then return {-2, ''} end
if not owner then
  redis.call('HSET', KEYS[2], 'tenant_id', ARGV[1], 'generation', 0)
end
redis.call('PERSIST', KEYS[2])
local created = 0
local conversation = redis.call('GET', KEYS[1])
if (not conversation) and ARGV[2] == '' then
  conversation = ''
elseif not conversation then
  conversation = ARGV[2]
  redis.call('SET', KEYS[1], conversation)
  redis.call('HSET', KEYS[2], 'conversation_id', conversation)
  created = 1
end
-- A message on a closed session is a reconnect: it cancels the pending migration.
if redis.call('HEXISTS', KEYS[2], 'closed_at') == 1 then
  redis.call('HDEL', KEYS[2], 'closed_at')
  redis.call('HINCRBY', KEYS[2], 'generation', 1)
end
return {created, conversation}
"""

_CLOSE_SESSION = """
-- KEYS: session_mapping, session_state   ARGV: tenant, closed_at
local owner = redis.call('HGET', KEYS[2], 'tenant_id')
if not owner then return {0, '', 0} end
if owner ~= ARGV[1] then return {-2, '', 0} end
local conversation = redis.call('GET', KEYS[1])
if not conversation then return {0, '', 0} end
local generation = redis.call('HINCRBY', KEYS[2], 'generation', 1)
redis.call('HSET', KEYS[2], 'closed_at', ARGV[2])
return {1, conversation, generation}
"""

_OPEN_SESSION = """
-- KEYS: session_state   ARGV: tenant
local owner = redis.call('HGET', KEYS[1], 'tenant_id')
if not owner then return 0 end
if owner ~= ARGV[1] then return -2 end
if redis.call('HEXISTS', KEYS[1], 'closed_at') == 1 then
  redis.call('HDEL', KEYS[1], 'closed_at')
  redis.call('HINCRBY', KEYS[1], 'generation', 1)
  return 1
end
return 0
"""

_FINISH_MIGRATION = """
-- KEYS: messages, message_ids, last_at, owner, migrated, conversation
-- ARGV: expected count, tenant, marker seconds
if redis.call('LLEN', KEYS[1]) ~= tonumber(ARGV[1]) then return 0 end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[6])
redis.call('SET', KEYS[5], ARGV[2], 'EX', tonumber(ARGV[3]))
return 1
"""

_RELEASE_SESSION = """
-- KEYS: session_mapping, session_state   ARGV: conversation id, generation, keep seconds
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if redis.call('HGET', KEYS[2], 'generation') ~= ARGV[2] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HDEL', KEYS[2], 'closed_at', 'conversation_id')
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[3]))
return 1
"""


class RedisKeys:
    """The contract's key names, hash-tagged for Redis Cluster, under an optional prefix."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix

    def conversation(self, tenant_id: str, conversation_id: str) -> str:
        return f"{self.prefix}conversation:{tenant_id}:{{{conversation_id}}}"

    def messages(self, conversation_id: str) -> str:
        return f"{self.prefix}messages:{{{conversation_id}}}"

    def message_ids(self, conversation_id: str) -> str:
        return f"{self.prefix}message_ids:{{{conversation_id}}}"

    def last_at(self, conversation_id: str) -> str:
        return f"{self.prefix}last_at:{{{conversation_id}}}"

    def owner(self, conversation_id: str) -> str:
        return f"{self.prefix}owner:{{{conversation_id}}}"

    def migrated(self, conversation_id: str) -> str:
        return f"{self.prefix}migrated:{{{conversation_id}}}"

    def session_mapping(self, session_id: str) -> str:
        return f"{self.prefix}session_mapping:{{{session_id}}}"

    def session_state(self, session_id: str) -> str:
        return f"{self.prefix}session_state:{{{session_id}}}"

    @property
    def active_sessions(self) -> str:
        return f"{self.prefix}active_sessions"

    def tenant_active(self, tenant_id: str) -> str:
        return f"{self.prefix}active_conversations:{tenant_id}"

    def conversation_keys(self, tenant_id: str, conversation_id: str) -> list[str]:
        return [
            self.messages(conversation_id),
            self.message_ids(conversation_id),
            self.last_at(conversation_id),
            self.owner(conversation_id),
            self.migrated(conversation_id),
            self.conversation(tenant_id, conversation_id),
        ]


def _dumps(data: dict[str, Any]) -> str:
    return orjson.dumps(data).decode()


class RedisHistory:
    """A conversation's list read in chunks from the tail."""

    def __init__(self, client: redis.Redis, key: str, chunk: int = TAIL_CHUNK) -> None:
        self.client = client
        self.key = key
        self.chunk = chunk
        self._count: int | None = None

    def count(self) -> int:
        if self._count is None:
            self._count = int(self.client.llen(self.key))
        return self._count

    def first(self) -> Message | None:
        raw = self.client.lindex(self.key, 0)
        return Message.from_dict(orjson.loads(raw)) if raw else None

    def newest_first(self) -> Iterator[Message]:
        end = -1
        chunk = self.chunk
        while True:
            raw = self.client.lrange(self.key, end - chunk + 1, end)
            for item in reversed(raw):
                yield Message.from_dict(orjson.loads(item))
            if len(raw) < chunk:
                return
            end -= chunk
            chunk = min(chunk * 2, 4096)


class RedisActiveStore:
    def __init__(self, client: redis.Redis, prefix: str = "") -> None:
        self.client = client
        self.keys = RedisKeys(prefix)
        self._append = client.register_script(_APPEND)
        self._resolve = client.register_script(_RESOLVE_SESSION)
        self._close = client.register_script(_CLOSE_SESSION)
        self._open = client.register_script(_OPEN_SESSION)
        self._finish = client.register_script(_FINISH_MIGRATION)
        self._release = client.register_script(_RELEASE_SESSION)

    # --- sessions -------------------------------------------------------------------------

    def resolve_session(
        self, tenant_id: str, session_id: str, candidate_conversation_id: str | None
    ) -> tuple[str | None, bool]:
        created, conversation_id = self._resolve(
            keys=[self.keys.session_mapping(session_id), self.keys.session_state(session_id)],
            args=[tenant_id, candidate_conversation_id or ""],
        )
        if int(created) == -2:
            raise ForeignSession(f"session {session_id} belongs to another tenant")
        return _text(conversation_id) or None, int(created) == 1

    def close_session(
        self, tenant_id: str, session_id: str, closed_at: str
    ) -> ClosedSession | None:
        status, conversation_id, generation = self._close(
            keys=[self.keys.session_mapping(session_id), self.keys.session_state(session_id)],
            args=[tenant_id, closed_at],
        )
        if int(status) == -2:
            raise ForeignSession(f"session {session_id} belongs to another tenant")
        if int(status) == 0:
            return None
        return ClosedSession(_text(conversation_id), int(generation))

    def open_session(self, tenant_id: str, session_id: str) -> bool:
        status = int(self._open(keys=[self.keys.session_state(session_id)], args=[tenant_id]))
        if status == -2:
            raise ForeignSession(f"session {session_id} belongs to another tenant")
        return status == 1

    def session_state(self, session_id: str) -> SessionState | None:
        state = self.client.hgetall(self.keys.session_state(session_id))
        if not state:
            return None
        return SessionState(
            tenant_id=_get(state, "tenant_id") or "",
            conversation_id=_get(state, "conversation_id"),
            generation=int(_get(state, "generation") or 0),
            closed_at=_get(state, "closed_at"),
        )

    def session_conversation(self, tenant_id: str, session_id: str) -> str | None:
        state = self.session_state(session_id)
        if state is None or state.tenant_id != tenant_id:
            return None
        raw = self.client.get(self.keys.session_mapping(session_id))
        return _text(raw) if raw else None

    def release_session(self, session_id: str, conversation_id: str, generation: int) -> bool:
        released = int(
            self._release(
                keys=[self.keys.session_mapping(session_id), self.keys.session_state(session_id)],
                args=[conversation_id, generation, RELEASED_SESSION_SECONDS],
            )
        )
        if released:
            self.client.srem(self.keys.active_sessions, session_id)
        return released == 1

    # --- conversations --------------------------------------------------------------------

    def append_message(
        self, conversation: Conversation, message: Message, *, create: bool
    ) -> AppendResult:
        keys = self.keys.conversation_keys(conversation.tenant_id, conversation.id)
        pipe = self.client.pipeline(transaction=False)
        self._append(
            keys=keys,
            args=[
                conversation.tenant_id,
                message.id,
                message.created_at,
                _dumps(message.to_dict()),
                _dumps(conversation.to_dict()),
                "1" if create else "0",
            ],
            client=pipe,
        )
        # The global indexes live in other slots: same round trip, own steps.
        pipe.sadd(self.keys.active_sessions, conversation.session_id)
        pipe.sadd(self.keys.tenant_active(conversation.tenant_id), conversation.id)
        status = int(pipe.execute()[0])
        if status in (-1, -2, -3):
            # Nothing was written: undo the index entries of a conversation that is not here.
            self.client.srem(self.keys.tenant_active(conversation.tenant_id), conversation.id)
        return {
            1: AppendResult.SAVED,
            0: AppendResult.DUPLICATE,
            -1: AppendResult.MOVED,
            -2: AppendResult.FOREIGN,
            -3: AppendResult.NOT_FOUND,
        }[status]

    def get_conversation(self, conversation_id: str) -> Conversation | None:
        tenant = self.client.get(self.keys.owner(conversation_id))
        if tenant is None:
            return None
        raw = self.client.get(self.keys.conversation(_text(tenant), conversation_id))
        return Conversation.from_dict(orjson.loads(raw)) if raw else None

    def history(self, conversation_id: str) -> RedisHistory:
        return RedisHistory(self.client, self.keys.messages(conversation_id))

    def messages(self, conversation_id: str) -> list[Message]:
        raw = self.client.lrange(self.keys.messages(conversation_id), 0, -1)
        return [Message.from_dict(orjson.loads(item)) for item in raw]

    def message_count(self, conversation_id: str) -> int:
        return int(self.client.llen(self.keys.messages(conversation_id)))

    def finish_migration(self, conversation: Conversation, expected_count: int) -> bool:
        finished = int(
            self._finish(
                keys=self.keys.conversation_keys(conversation.tenant_id, conversation.id),
                args=[expected_count, conversation.tenant_id, MIGRATED_MARKER_SECONDS],
            )
        )
        if finished:
            self.client.srem(self.keys.tenant_active(conversation.tenant_id), conversation.id)
        return finished == 1

    def active_conversations(self, tenant_id: str) -> list[Conversation]:
        ids = sorted(_text(i) for i in self.client.smembers(self.keys.tenant_active(tenant_id)))
        if not ids:
            return []
        # One GET per key in a pipeline: the keys live in different cluster slots.
        pipe = self.client.pipeline(transaction=False)
        for conversation_id in ids:
            pipe.get(self.keys.conversation(tenant_id, conversation_id))
        raws = pipe.execute()
        return [Conversation.from_dict(orjson.loads(raw)) for raw in raws if raw]

    def ping(self) -> bool:
        return bool(self.client.ping())


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _get(mapping: dict[Any, Any], key: str) -> str | None:
    value = mapping.get(key, mapping.get(key.encode()))
    return _text(value) if value is not None else None
