"""The active store: conversations in Redis under the contract's keys (CONTRACT.md section 2).

Keys that one atomic step touches share a Redis Cluster slot through a hash tag: everything of
a conversation is tagged `{conversation_id}`, everything of a session `{session_id}`. The global
sets (`active_sessions`, the per-tenant active index) are updated in steps of their own.

Each message is stored as JSON with its token count, in a list kept in `created_at` order:
the common case appends; a late arrival is inserted where its time puts it.
"""
from __future__ import annotations

import operator
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

import msgspec
import orjson
import redis

from conversation.domain.errors import ForeignSession
from conversation.domain.messages import Conversation, Message, parse_timestamp
from conversation.services.ports import (
    ConversationRefused,
    AppendResult,
    ClosedSession,
    MessageRecord,
    MigrationLoad,
    SessionState,
    Summary,
)

# How long a migrated conversation leaves a marker behind, so late messages find PostgreSQL
# without asking it; after that the save path asks PostgreSQL itself.
MIGRATED_MARKER_SECONDS = 7 * 24 * 3600
# How long a released session remembers its tenant and generation.
RELEASED_SESSION_SECONDS = 30 * 24 * 3600
TAIL_CHUNK = 64

# Lua functions shared by the scripts below, so each rule is written once.
_APPEND_FN = """
-- Append a message to a conversation's keys. Returns 1 saved, 0 duplicate, -1 moved to
-- PostgreSQL, -2 another tenant's, -3 not active (and create was not asked for).
local function append(k_messages, k_ids, k_last, k_owner, k_migrated, k_conversation,
                      tenant, message_id, created_at, message_json, conversation_json, create)
  local owner = redis.call('GET', k_owner)
  if not owner then
    local moved = redis.call('GET', k_migrated)
    if moved then
      if moved ~= tenant then return -2 end
      return -1
    end
    if create ~= '1' then return -3 end
    redis.call('SET', k_owner, tenant)
    redis.call('SET', k_conversation, conversation_json)
  elseif owner ~= tenant then
    return -2
  end
  if redis.call('SADD', k_ids, message_id) == 0 then return 0 end
  local last = redis.call('GET', k_last)
  if (not last) or created_at >= last then
    redis.call('RPUSH', k_messages, message_json)
    redis.call('SET', k_last, created_at)
    return 1
  end
  -- A late arrival: walk back from the newest message to the one it follows.
  local n = redis.call('LLEN', k_messages)
  for i = -1, -n, -1 do
    local item = redis.call('LINDEX', k_messages, i)
    if cjson.decode(item)['created_at'] <= created_at then
      redis.call('LINSERT', k_messages, 'AFTER', item, message_json)
      return 1
    end
  end
  redis.call('LPUSH', k_messages, message_json)
  return 1
end
"""

_RESOLVE_FN = """
-- The session's current conversation: set to `candidate` when it has none and one is given
-- (''). A message written after the session closed (`at` later than closed_at) is a
-- reconnect that cancels the pending migration; one written before it is a late delivery,
-- and the migration takes it along.
-- A new conversation is made only when `confirmed` is '1': before that, the caller checks
-- that the messages were not stored by an earlier conversation of the session, migrated
-- since (a redelivered save), so nothing is written and {-5, ''} is returned.
-- Returns {1 if just set else 0, conversation id or ''}, {-2, ''} for another tenant's, or
-- {-5, ''} for a new conversation or session to confirm.
local function resolve(k_mapping, k_state, tenant, candidate, at, confirmed)
  local owner = redis.call('HGET', k_state, 'tenant_id')
  if owner and owner ~= tenant then return {-2, ''} end
  -- A session new to Redis is claimed in PostgreSQL (its durable owner) before it is owned
  -- here, with or without an explicit conversation: unconfirmed, nothing is written.
  if (not owner) and confirmed ~= '1' then return {-5, ''} end
  local conversation = redis.call('GET', k_mapping)
  if (not conversation) and candidate ~= '' and confirmed ~= '1' then return {-5, ''} end
  if not owner then
    redis.call('HSET', k_state, 'tenant_id', tenant, 'generation', 0)
  end
  redis.call('PERSIST', k_state)
  local created = 0
  if (not conversation) and candidate == '' then
    conversation = ''
  elseif not conversation then
    conversation = candidate
    redis.call('SET', k_mapping, conversation)
    redis.call('HSET', k_state, 'conversation_id', conversation)
    created = 1
  end
  local closed_at = redis.call('HGET', k_state, 'closed_at')
  if closed_at and at > closed_at then
    redis.call('HDEL', k_state, 'closed_at')
    redis.call('HINCRBY', k_state, 'generation', 1)
  end
  return {created, conversation}
end
"""

_APPEND = _APPEND_FN + """
-- KEYS: messages, message_ids, last_at, owner, migrated, conversation
-- ARGV: tenant, message_id, created_at, message_json, conversation_json, create,
--       the channel announcing the message once stored (get_context's wait_for_message_id)
local status = append(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6],
                      ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6])
if status == 1 then redis.call('PUBLISH', ARGV[7], '1') end
return status
"""

_RESOLVE_SESSION = _RESOLVE_FN + """
-- KEYS: session_mapping, session_state
-- ARGV: tenant, candidate conversation id or '', the message's created_at ('': none),
--       '1' when a new conversation is confirmed
return resolve(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
"""

# Standalone Redis only: the session and conversation steps in one script, for one or many
# messages of one session. Redis Cluster cannot run it (the conversation's keys are known only
# inside the script, in another slot), so there the same functions run as two scripts.
_SAVE_GROUP_FN = """
-- One session's messages (ARGV[first..last], as (message_id, created_at, message_json)):
-- resolve the session, then append each, in order.
-- tenant, session, explicit conversation id or '', candidate id, key prefix,
-- conversation_json, create ('1': an explicit conversation may be created, or a new
-- conversation for the session is confirmed), the latest created_at of the messages.
-- Returns one status per message, then the conversation id; {-4, ''}: another tenant's
-- session; -5 for every message: the session has no conversation, confirm a new one.
-- Each message stored is announced on its channel (RedisKeys.arrival).
local function save_group(k_mapping, k_state, k_active, tenant, session, explicit, candidate,
                          prefix, conversation_json, create_arg, latest, first, last)
  if explicit ~= '' then candidate = '' end
  local resolved = resolve(k_mapping, k_state, tenant, candidate, latest, create_arg)
  if resolved[1] == -2 then return {-4, ''} end
  if resolved[1] == -5 then
    local unconfirmed = {}
    for i = first, last, 3 do unconfirmed[#unconfirmed + 1] = -5 end
    unconfirmed[#unconfirmed + 1] = ''
    return unconfirmed
  end
  local id = explicit
  if id == '' then id = resolved[2] end
  local given = candidate
  if explicit ~= '' then given = explicit end
  if id ~= given then
    local doc = cjson.decode(conversation_json)
    doc['id'] = id
    conversation_json = cjson.encode(doc)
  end
  local create = '0'
  if explicit == '' or create_arg == '1' then create = '1' end
  local tag = '{' .. id .. '}'
  local k_messages, k_ids = prefix .. 'messages:' .. tag, prefix .. 'message_ids:' .. tag
  local k_last, k_owner = prefix .. 'last_at:' .. tag, prefix .. 'owner:' .. tag
  local k_migrated = prefix .. 'migrated:' .. tag
  local k_conversation = prefix .. 'conversation:' .. tenant .. ':' .. tag
  local statuses = {}
  local stored, saved = false, false
  for i = first, last, 3 do
    local status = append(k_messages, k_ids, k_last, k_owner, k_migrated, k_conversation,
      tenant, ARGV[i], ARGV[i + 1], ARGV[i + 2], conversation_json, create)
    statuses[#statuses + 1] = status
    if status >= 0 then stored = true end
    if status == 1 then
      saved = true
      -- Wakes a get_context waiting for it (wait_for_message_id); costs nothing unheard.
      redis.call('PUBLISH', prefix .. 'arrived:' .. tenant .. ':' .. ARGV[i], '1')
    end
  end
  if stored then
    if explicit ~= '' and resolved[2] == '' then
      resolve(k_mapping, k_state, tenant, explicit, '', '1')
    end
    redis.call('SADD', k_active, session)
    redis.call('SADD', prefix .. 'active_conversations:' .. tenant, id)
    if saved then
      redis.call('ZADD', prefix .. 'conversation_activity', redis.call('TIME')[1], id)
    end
  end
  statuses[#statuses + 1] = id
  return statuses
end
"""

_SAVE_IN_SESSION = _RESOLVE_FN + _APPEND_FN + _SAVE_GROUP_FN + """
-- KEYS: session_mapping, session_state, active_sessions
-- ARGV: tenant, session, explicit conversation id or '', candidate id, key prefix,
--       conversation_json, create, the latest created_at, then the message triples.
return save_group(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5],
                  ARGV[6], ARGV[7], ARGV[8], 9, #ARGV)
"""

# A whole batch, however many sessions it spans, in one script call (standalone Redis): a
# gateway's batch of 500 messages from 500 sessions paid 500 calls' packing, dispatch and
# reply parsing before. Each session's group is what _SAVE_IN_SESSION does for it alone.
_SAVE_BATCH = _RESOLVE_FN + _APPEND_FN + _SAVE_GROUP_FN + """
-- KEYS: active_sessions, then for each group its session_mapping and session_state
-- ARGV: key prefix, then for each group: tenant, session, explicit conversation id or '',
--       candidate id, conversation_json, create, the latest created_at, its number of
--       messages n, then its n message triples.
-- Returns one reply of save_group's per group, in order.
local prefix = ARGV[1]
local replies = {}
local a = 2
for g = 0, (#KEYS - 1) / 2 - 1 do
  local n = tonumber(ARGV[a + 7])
  local first = a + 8
  local last = first + 3 * n - 1
  replies[#replies + 1] = save_group(KEYS[2 + 2 * g], KEYS[3 + 2 * g], KEYS[1], ARGV[a],
    ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], prefix, ARGV[a + 4], ARGV[a + 5], ARGV[a + 6],
    first, last)
  a = last + 1
end
return replies
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

# Standalone Redis only: a close, its entry for the lost-timer sweep and its second's bucket
# and timer marker in one script (keys of four slots: a cluster runs the steps apart).
_CLOSE_INTO_TIMER = _CLOSE_SESSION.replace("""local generation = redis.call('HINCRBY', KEYS[2], 'generation', 1)
redis.call('HSET', KEYS[2], 'closed_at', ARGV[2])
return {1, conversation, generation}""", """local generation = redis.call('HINCRBY', KEYS[2], 'generation', 1)
redis.call('HSET', KEYS[2], 'closed_at', ARGV[2])
-- KEYS (more): closed_sessions, the second's bucket, its marker
-- ARGV (more): session, closed epoch (text), keep seconds
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[3])
redis.call('SADD', KEYS[4], conversation .. ':' .. generation .. ':' .. ARGV[4])
redis.call('EXPIRE', KEYS[4], tonumber(ARGV[5]))
local armed = 0
if redis.call('SET', KEYS[5], '1', 'NX', 'EX', tonumber(ARGV[5])) then armed = 1 end
return {1, conversation, generation, armed}""")

_ARM_CLOSE_TIMER = """
-- KEYS: a second's close bucket, its timer marker (one hash tag: one slot)
-- ARGV: keep seconds, then the members to add ("conversation_id:generation:closed epoch")
-- Returns 1 when this call armed the second's timer (the caller schedules it), else 0.
if #ARGV > 1 then
  redis.call('SADD', KEYS[1], unpack(ARGV, 2))
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
end
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', tonumber(ARGV[1])) then return 1 end
return 0
"""

_TAKE_CLOSE_TIMER = """
-- KEYS: a second's close bucket, its timer marker
-- The marker goes first: a close that lands after this arms a timer of its own, so none
-- is left in a bucket whose timer has already looked.
redis.call('DEL', KEYS[2])
return redis.call('SMEMBERS', KEYS[1])
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
-- KEYS: messages, message_ids, last_at, owner, migrated, conversation, summary, token_counts
-- ARGV: expected count, tenant, marker seconds
if redis.call('LLEN', KEYS[1]) ~= tonumber(ARGV[1]) then return 0 end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[6], KEYS[7], KEYS[8])
redis.call('SET', KEYS[5], ARGV[2], 'EX', tonumber(ARGV[3]))
return 1
"""

_SAVE_SUMMARY = """
-- KEYS: owner, summary   ARGV: text, through
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], 'text', ARGV[1], 'through', ARGV[2])
return 1
"""

_ERASE_CONVERSATION = """
-- KEYS: every key of one conversation (one hash tag, one slot), owner and migrated marker
--       first   ARGV: the tenant the keys were named for ('' for none)
-- All go in one step, or none if the owner changed since they were named (-1: read again).
local owner = redis.call('GET', KEYS[1]) or redis.call('GET', KEYS[2]) or ''
if owner ~= ARGV[1] then return -1 end
return redis.call('DEL', unpack(KEYS))
"""

_FORGET_SESSION = """
-- KEYS: session_mapping, session_state   ARGV: conversation id
-- The session's records go with its conversation, unless it has moved on to another one.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1], KEYS[2])
"""

_RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
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


_APPEND_RESULTS = {
    1: AppendResult.SAVED,
    0: AppendResult.DUPLICATE,
    -1: AppendResult.MOVED,
    -2: AppendResult.FOREIGN,
    -3: AppendResult.NOT_FOUND,
    -5: AppendResult.NEW_CONVERSATION,
}
_ACTIVE_RESULTS = (AppendResult.SAVED, AppendResult.DUPLICATE)


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

    def token_counts(self, conversation_id: str) -> str:
        """Hash: "encoding|message id" -> the message's cost in an encoding other than the one
        it was counted in at save time (counted on first use)."""
        return f"{self.prefix}token_counts:{{{conversation_id}}}"

    def migrated(self, conversation_id: str) -> str:
        return f"{self.prefix}migrated:{{{conversation_id}}}"

    def summary(self, conversation_id: str) -> str:
        return f"{self.prefix}summary:{{{conversation_id}}}"

    def arrival(self, tenant_id: str, message_id: str) -> str:
        """Pub/sub channel announcing that the tenant's message was stored."""
        return f"{self.prefix}arrived:{tenant_id}:{message_id}"

    def lock(self, name: str) -> str:
        return f"{self.prefix}lock:{name}"

    def summary_requested(self, conversation_id: str) -> str:
        return f"{self.prefix}summary_requested:{{{conversation_id}}}"

    def session_mapping(self, session_id: str) -> str:
        return f"{self.prefix}session_mapping:{{{session_id}}}"

    def session_state(self, session_id: str) -> str:
        return f"{self.prefix}session_state:{{{session_id}}}"

    @property
    def active_sessions(self) -> str:
        return f"{self.prefix}active_sessions"

    @property
    def activity(self) -> str:
        """Sorted set: conversation id -> when its last message arrived (epoch seconds)."""
        return f"{self.prefix}conversation_activity"

    @property
    def closed_sessions(self) -> str:
        """Sorted set: session id -> close time (epoch seconds), for the lost-timer sweep."""
        return f"{self.prefix}closed_sessions"

    @property
    def ready_migrations(self) -> str:
        """Sorted set: "conversation_id:generation" -> when its timer fired, until migrated."""
        return f"{self.prefix}ready_migrations"

    def close_bucket(self, second: int) -> str:
        """Set: "conversation_id:generation:closed epoch" of the sessions whose grace ends
        within `second` (epoch), until its shared timer hands them to the migration."""
        return f"{self.prefix}close_bucket:{{closes-{second}}}"

    def close_timer(self, second: int) -> str:
        """Present while a timer task for `second` is scheduled and has not looked yet."""
        return f"{self.prefix}close_timer:{{closes-{second}}}"

    @property
    def quarantined(self) -> str:
        """Hash: conversation id -> why migration set it aside (PostgreSQL refused it)."""
        return f"{self.prefix}quarantined_conversations"

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
            self.summary(conversation_id),
            self.token_counts(conversation_id),
        ]


def _dumps(data: dict[str, Any]) -> str:
    return orjson.dumps(data).decode()


def _json_array(items: Sequence[bytes]) -> bytes:
    """Stored JSON values as one array: one parse for them all is far cheaper than one each."""
    return b"[" + b",".join(items) + b"]"


def _decode_records(items: Sequence[bytes]) -> list[MessageRecord]:
    return _RECORDS.decode(_json_array(items)) if items else []


def _decode_messages(items: Sequence[bytes]) -> list[Message]:
    return [Message.from_dict(data) for data in orjson.loads(_json_array(items))] if items else []


def _run_pipeline(client: Any, build: Callable[[Any], None], *scripts: str) -> list[Any]:
    """Run a pipeline of EVALSHA calls (a pipeline given Script objects asks SCRIPT EXISTS on
    every execute: a round trip more). If the server lost its script cache (a restart, SCRIPT
    FLUSH), load the scripts and run it again: every script here is idempotent."""
    def run() -> list[Any]:
        if not isinstance(client, redis.Redis):
            # redis-py's cluster pipeline refuses EVALSHA: on a cluster, one call at a time,
            # each sent by the client to the node that holds its keys.
            calls = _RecordedCalls()
            build(calls)
            return calls.replay(client)
        pipe = client.pipeline(transaction=False)
        build(pipe)
        return pipe.execute(raise_on_error=False)

    replies = run()
    if any(isinstance(r, redis.exceptions.NoScriptError) for r in replies):
        for script in scripts:
            client.script_load(script)
        replies = run()
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies


class _RecordedCalls:
    """Stands in for a pipeline: records the commands, then runs them one by one, replies (or
    errors, as a pipeline's raise_on_error=False gives them) in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Callable[..., None]:
        def record(*args: Any, **kwargs: Any) -> None:
            self.calls.append((name, args, kwargs))
        return record

    def replay(self, client: Any) -> list[Any]:
        replies: list[Any] = []
        for name, args, kwargs in self.calls:
            try:
                replies.append(getattr(client, name)(*args, **kwargs))
            except redis.exceptions.RedisError as exc:
                replies.append(exc)
        return replies


class RedisHistory:
    """A conversation's list read from the tail: its owner, the count, the first message and
    the newest `expected` messages in one round trip, then further back in doubling chunks if
    needed."""

    def __init__(
        self, client: redis.Redis, keys: RedisKeys, conversation_id: str, expected: int
    ) -> None:
        self.client = client
        self.key = keys.messages(conversation_id)
        self.owner_key = keys.owner(conversation_id)
        self.counts_key = keys.token_counts(conversation_id)
        self.expected = max(1, expected)
        self.owner: str | None = None
        self._prefetched: tuple[int, bytes | None, list[bytes]] | None = None

    def _prefetch(self) -> tuple[int, bytes | None, list[bytes]]:
        if self._prefetched is None:
            pipe = self.client.pipeline(transaction=False)
            pipe.llen(self.key)
            pipe.lindex(self.key, 0)
            pipe.lrange(self.key, -self.expected, -1)
            pipe.get(self.owner_key)
            count, first, tail, owner = pipe.execute()
            self.owner = _text(owner) if owner is not None else None
            self._prefetched = (int(count), first, tail)
        return self._prefetched

    def count(self) -> int:
        return self._prefetch()[0]

    def first(self, encoding: str | None = None) -> MessageRecord | None:
        raw = self._prefetch()[1]
        if not raw:
            return None
        record = _RECORD.decode(raw)
        if encoding is not None:
            self._attach_counts([record], encoding)
        return record

    def newest_chunks(self, encoding: str | None = None) -> Iterator[list[MessageRecord]]:
        count, _, raw = self._prefetch()
        read = 0
        chunk = len(raw)
        while True:
            records = _decode_records(raw)
            if encoding is not None:
                self._attach_counts(records, encoding)
            records.reverse()
            yield records
            read += len(raw)
            if read >= count or not raw:
                return
            # Another message may have arrived meanwhile: LRANGE by negative index still
            # continues right below what was read, give or take that one message.
            chunk = min(chunk * 2, 4096)
            raw = self.client.lrange(self.key, -read - chunk, -read - 1)

    def _attach_counts(self, records: list[MessageRecord], encoding: str) -> None:
        """The stored costs in `encoding` of the records counted in another (a round trip only
        when there are such records)."""
        if set(map(_ENCODING_OF, records)) <= {encoding}:
            return  # the common case, checked at C speed: every record counted in `encoding`
        other = [r for r in records if r.encoding != encoding]
        found = self.client.hmget(self.counts_key, [f"{encoding}|{r.id}" for r in other])
        for record, tokens in zip(other, found, strict=True):
            if tokens is not None:
                record.other_tokens = int(tokens)

    def store_counts(self, encoding: str, counts: Mapping[str, int]) -> None:
        if counts:
            self.client.hset(self.counts_key,
                             mapping={f"{encoding}|{mid}": n for mid, n in counts.items()})


class RedisActiveStore:
    def __init__(self, client: redis.Redis, prefix: str = "") -> None:
        self.client = client
        self.keys = RedisKeys(prefix)
        self._append = client.register_script(_APPEND)
        self._resolve = client.register_script(_RESOLVE_SESSION)
        self._save_in_session = client.register_script(_SAVE_IN_SESSION)
        self._save_batch = client.register_script(_SAVE_BATCH)
        self._save_summary = client.register_script(_SAVE_SUMMARY)
        self._close = client.register_script(_CLOSE_SESSION)
        self._open = client.register_script(_OPEN_SESSION)
        self._arm_timer = client.register_script(_ARM_CLOSE_TIMER)
        self._close_into_timer = client.register_script(_CLOSE_INTO_TIMER)
        self._take_timer = client.register_script(_TAKE_CLOSE_TIMER)
        self._finish = client.register_script(_FINISH_MIGRATION)
        self._release = client.register_script(_RELEASE_SESSION)
        self._erase = client.register_script(_ERASE_CONVERSATION)
        self._forget_session = client.register_script(_FORGET_SESSION)
        # Redis Cluster runs the session and conversation steps of a save apart.
        self.cluster = not isinstance(client, redis.Redis)
        self._idle_pubsubs: list[Any] = []

    # --- sessions -------------------------------------------------------------------------

    def resolve_session(
        self,
        tenant_id: str,
        session_id: str,
        candidate_conversation_id: str | None,
        message_at: str | None = None,
        *,
        confirmed: bool = True,
    ) -> tuple[str | None, bool]:
        """The session's conversation and whether it was just set to the candidate. Without
        `confirmed`, a session with no conversation gets none: (None, False) then asks the
        caller to check for a redelivery first."""
        status, conversation_id = self._resolve_status(
            tenant_id, session_id, candidate_conversation_id, message_at, confirmed=confirmed)
        return conversation_id, status == 1

    def _resolve_status(
        self,
        tenant_id: str,
        session_id: str,
        candidate_conversation_id: str | None,
        message_at: str | None,
        *,
        confirmed: bool,
    ) -> tuple[int, str | None]:
        """The resolve script's status (1 just set, 0 found, -5 to confirm) and conversation."""
        status, conversation_id = self._resolve(
            keys=[self.keys.session_mapping(session_id), self.keys.session_state(session_id)],
            args=[tenant_id, candidate_conversation_id or "", message_at or "",
                  "1" if confirmed else "0"],
        )
        if int(status) == -2:
            raise ForeignSession(f"session {session_id} belongs to another tenant")
        return int(status), _text(conversation_id) or None

    def close_session(
        self, tenant_id: str, session_id: str, closed_at: str
    ) -> ClosedSession | None:
        closed = self.close_sessions([(tenant_id, session_id, closed_at)])[0]
        if isinstance(closed, ForeignSession):
            raise closed
        return closed

    def close_sessions(
        self, requests: Sequence[tuple[str, str, str]]
    ) -> list[ClosedSession | None | ForeignSession]:
        """Close many sessions (tenant, session, closed_at) in one pipelined round trip, then
        index them for the lost-timer sweep in one more. Each result in its place: the closed
        session, None (no conversation), or the refusal of another tenant's session."""
        def build(pipe: Any) -> None:
            for tenant_id, session_id, closed_at in requests:
                keys = [self.keys.session_mapping(session_id), self.keys.session_state(session_id)]
                pipe.evalsha(self._close.sha, len(keys), *keys, tenant_id, closed_at)

        replies = _run_pipeline(self.client, build, _CLOSE_SESSION) if requests else []
        results: list[ClosedSession | None | ForeignSession] = []
        swept: dict[str, float] = {}
        for (_, session_id, closed_at), (status, conversation_id, generation) in zip(
            requests, replies, strict=True
        ):
            if int(status) == -2:
                results.append(ForeignSession(f"session {session_id} belongs to another tenant"))
            elif int(status) == 0:
                results.append(None)
            else:
                results.append(ClosedSession(_text(conversation_id), int(generation)))
                swept[session_id] = parse_timestamp(closed_at).timestamp()
        if swept:
            self.client.zadd(self.keys.closed_sessions, swept)
        return results

    def close_sessions_into_timers(
        self, requests: Sequence[tuple[str, str, str, str, int]], keep_seconds: int
    ) -> tuple[list[ClosedSession | None | ForeignSession], list[int]]:
        """Close sessions (tenant, session, closed_at, closed epoch as text, the second their
        grace ends in) and put each closed one in its second's timer bucket: the results in
        place, and the seconds whose timer this armed. One pipelined round trip on standalone
        Redis; on a cluster, the closes, then the buckets (other slots)."""
        if self.cluster:
            results = self.close_sessions([(t, s, at) for t, s, at, _, _ in requests])
            members: dict[int, list[str]] = {}
            for (_, _, _, epoch, second), result in zip(requests, results, strict=True):
                if isinstance(result, ClosedSession):
                    members.setdefault(second, []).append(
                        f"{result.conversation_id}:{result.generation}:{epoch}")
            return results, self.arm_close_timers(members, keep_seconds)

        def build(pipe: Any) -> None:
            for tenant_id, session_id, closed_at, epoch, second in requests:
                keys = [self.keys.session_mapping(session_id), self.keys.session_state(session_id),
                        self.keys.closed_sessions, self.keys.close_bucket(second),
                        self.keys.close_timer(second)]
                pipe.evalsha(self._close_into_timer.sha, len(keys), *keys, tenant_id, closed_at,
                             session_id, epoch, keep_seconds)

        replies = _run_pipeline(self.client, build, _CLOSE_INTO_TIMER) if requests else []
        results: list[ClosedSession | None | ForeignSession] = []
        armed: list[int] = []
        for request, reply in zip(requests, replies, strict=True):
            status = int(reply[0])
            if status == -2:
                results.append(ForeignSession(f"session {request[1]} belongs to another tenant"))
            elif status == 0:
                results.append(None)
            else:
                results.append(ClosedSession(_text(reply[1]), int(reply[2])))
                if int(reply[3]) and request[4] not in armed:
                    armed.append(request[4])
        return results, armed

    def arm_close_timers(
        self, members: Mapping[int, Sequence[str]], keep_seconds: int
    ) -> list[int]:
        """Add closed sessions to their second's bucket; the seconds whose timer this armed
        (the first close of a second: the caller schedules its one timer task)."""
        seconds = list(members)

        def build(pipe: Any) -> None:
            for second in seconds:
                keys = [self.keys.close_bucket(second), self.keys.close_timer(second)]
                pipe.evalsha(self._arm_timer.sha, len(keys), *keys, keep_seconds,
                             *members[second])

        replies = _run_pipeline(self.client, build, _ARM_CLOSE_TIMER) if seconds else []
        return [second for second, armed in zip(seconds, replies, strict=True) if int(armed)]

    def take_close_timer(self, second: int) -> list[str]:
        """A second's timer fired: disarm it and read its bucket (left in place until each
        member is handed on, so a timer that dies meanwhile loses nothing)."""
        keys = [self.keys.close_bucket(second), self.keys.close_timer(second)]
        return sorted(_text(m) for m in self._take_timer(keys=keys))

    def forget_close_timer_members(self, second: int, members: Sequence[str]) -> None:
        if members:
            self.client.srem(self.keys.close_bucket(second), *members)

    def closed_sessions_before(self, moment: float, limit: int) -> list[str]:
        """Sessions closed before `moment` (epoch seconds) whose migration is not done."""
        ids = self.client.zrangebyscore(self.keys.closed_sessions, "-inf", moment, 0, limit)
        return [_text(i) for i in ids]

    def forget_closed_session(self, session_id: str) -> None:
        self.client.zrem(self.keys.closed_sessions, session_id)

    def mark_ready(self, conversation_id: str, generation: int) -> None:
        # Identifiers never hold ':' (the contract), so the member splits back unambiguously.
        self.client.zadd(self.keys.ready_migrations, {f"{conversation_id}:{generation}": time.time()})

    def mark_ready_many(self, requests: Sequence[tuple[str, int]]) -> None:
        if requests:
            now = time.time()
            self.client.zadd(self.keys.ready_migrations, {f"{c}:{g}": now for c, g in requests})

    def ready_migrations(self, limit: int) -> list[tuple[str, int]]:
        """The oldest `limit` conversations whose timer fired, with the timer's generation."""
        members = self.client.zrange(self.keys.ready_migrations, 0, limit - 1)
        ready = []
        for member in members:
            conversation_id, _, generation = _text(member).rpartition(":")
            ready.append((conversation_id, int(generation)))
        return ready

    def forget_ready(self, requests: Sequence[tuple[str, int]]) -> None:
        if requests:
            self.client.zrem(self.keys.ready_migrations, *(f"{c}:{g}" for c, g in requests))

    def open_session(self, tenant_id: str, session_id: str) -> bool:
        status = int(self._open(keys=[self.keys.session_state(session_id)], args=[tenant_id]))
        if status == -2:
            raise ForeignSession(f"session {session_id} belongs to another tenant")
        return status == 1

    def session_state(self, session_id: str) -> SessionState | None:
        return _session_state(self.client.hgetall(self.keys.session_state(session_id)))

    def session_states(self, session_ids: Sequence[str]) -> list[SessionState | None]:
        pipe = self.client.pipeline(transaction=False)
        for session_id in session_ids:
            pipe.hgetall(self.keys.session_state(session_id))
        return [_session_state(state) for state in pipe.execute()]

    def session_conversation(self, tenant_id: str, session_id: str) -> str | None:
        # The state hash carries the mapping's conversation id: the scripts set and clear both
        # together, so one read answers.
        state = self.session_state(session_id)
        if state is None or state.tenant_id != tenant_id:
            return None
        return state.conversation_id

    def release_session(self, session_id: str, conversation_id: str, generation: int) -> bool:
        return self.release_sessions([(session_id, conversation_id, generation)])[0]

    def release_sessions(self, sessions: Sequence[tuple[str, str, int]]) -> list[bool]:
        """Release many migrated sessions (session, conversation, generation), each only if
        still at that conversation and generation: two pipelined round trips in all (a burst
        of a thousand closes paid two each before)."""
        if not sessions:
            return []

        def build(pipe: Any) -> None:
            for session_id, conversation_id, generation in sessions:
                keys = [self.keys.session_mapping(session_id), self.keys.session_state(session_id)]
                pipe.evalsha(self._release.sha, len(keys), *keys, conversation_id, generation,
                             RELEASED_SESSION_SECONDS)

        released = [int(r) == 1 for r in _run_pipeline(self.client, build, _RELEASE_SESSION)]
        gone = [s for (s, _, _), done in zip(sessions, released, strict=True) if done]
        if gone:
            pipe = self.client.pipeline(transaction=False)
            pipe.srem(self.keys.active_sessions, *gone)
            pipe.zrem(self.keys.closed_sessions, *gone)
            pipe.execute()
        return released

    # --- saving ---------------------------------------------------------------------------

    def save_in_session(
        self,
        conversation: Conversation,
        message: Message,
        *,
        explicit: bool,
        create: bool = False,
    ) -> tuple[AppendResult, str]:
        """Resolve the session, then append: one round trip on standalone Redis.

        `conversation.id` is the producer's conversation id when `explicit`, else a fresh
        candidate used only if the session has no conversation. Nothing is created unless
        `create` is set (the caller looked in PostgreSQL first): an explicit conversation not
        active here answers NOT_FOUND, a session with no conversation NEW_CONVERSATION.
        Returns the result and the conversation id used.
        """
        result = self.save_many_in_session([(conversation, message, explicit, create)])[0]
        if isinstance(result, ForeignSession):
            raise result
        return result

    def save_many_in_session(
        self, items: Sequence[tuple[Conversation, Message, bool, bool]]
    ) -> list[tuple[AppendResult, str] | ForeignSession]:
        """`save_in_session` for many messages in one pipelined round trip, in order.

        Each item is (conversation, message, explicit, create); a refused session is returned
        in its place, so one bad message does not stop the others. The messages of one
        session (and conversation) run in one script call, in their order: the session is
        resolved and the indexes touched once for them all.
        """
        if self.cluster:
            return [self._save_in_two_steps_or_refusal(*item) for item in items]
        groups: dict[tuple[str, str, str, bool], list[int]] = {}
        for index, (conversation, _, explicit, create) in enumerate(items):
            key = (conversation.tenant_id, conversation.session_id,
                   conversation.id if explicit else "", create)
            groups.setdefault(key, []).append(index)

        keys = [self.keys.active_sessions]
        args: list[Any] = [self.keys.prefix]
        for (tenant_id, session_id, explicit_id, create), indexes in groups.items():
            conversation = items[indexes[0]][0]
            keys += [self.keys.session_mapping(session_id), self.keys.session_state(session_id)]
            args += [
                tenant_id,
                session_id,
                explicit_id,
                conversation.id,
                _dumps(conversation.to_dict()),
                "1" if create else "0",
                max(items[i][1].created_at for i in indexes),
                len(indexes),
            ]
            for i in indexes:
                message = items[i][1]
                # The message's JSON is opaque here: whatever fields it carries go as they are.
                args += [message.id, message.created_at, _dumps(message.to_dict())]

        def build(pipe: Any) -> None:
            pipe.evalsha(self._save_batch.sha, len(keys), *keys, *args)

        (replies,) = _run_pipeline(self.client, build, _SAVE_BATCH)
        results: list[tuple[AppendResult, str] | ForeignSession | None] = [None] * len(items)
        for ((_, session_id, _, _), indexes), reply in zip(groups.items(), replies, strict=True):
            if int(reply[0]) == -4:
                for i in indexes:
                    results[i] = ForeignSession(f"session {session_id} belongs to another tenant")
                continue
            conversation_id = _text(reply[-1])
            for i, status in zip(indexes, reply[:-1], strict=True):
                results[i] = (_APPEND_RESULTS[int(status)], conversation_id)
        return [r for r in results if r is not None]

    def _save_in_two_steps_or_refusal(
        self, conversation: Conversation, message: Message, explicit: bool, create: bool
    ) -> tuple[AppendResult, str] | ForeignSession:
        try:
            return self._save_in_two_steps(conversation, message, explicit=explicit, create=create)
        except ForeignSession as refusal:
            return refusal

    def _save_in_two_steps(
        self, conversation: Conversation, message: Message, *, explicit: bool, create: bool
    ) -> tuple[AppendResult, str]:
        """Redis Cluster: the session's slot, then the conversation's slot."""
        status, session_conversation = self._resolve_status(
            conversation.tenant_id,
            conversation.session_id,
            None if explicit else conversation.id,
            message.created_at,
            confirmed=create,
        )
        if status == -5:
            return AppendResult.NEW_CONVERSATION, ""
        conversation_id = conversation.id if explicit else session_conversation
        assert conversation_id is not None
        if conversation_id != conversation.id:
            conversation = replace(conversation, id=conversation_id)
        result = self.append_message(conversation, message, create=create or not explicit)
        if explicit and session_conversation is None and result in _ACTIVE_RESULTS:
            self.resolve_session(conversation.tenant_id, conversation.session_id, conversation_id)
        return result, conversation_id

    # --- conversations --------------------------------------------------------------------

    def append_message(
        self, conversation: Conversation, message: Message, *, create: bool
    ) -> AppendResult:
        keys = self.keys.conversation_keys(conversation.tenant_id, conversation.id)
        args = [
            conversation.tenant_id,
            message.id,
            message.created_at,
            _dumps(message.to_dict()),
            _dumps(conversation.to_dict()),
            "1" if create else "0",
            self.keys.arrival(conversation.tenant_id, message.id),
        ]

        def build(pipe: Any) -> None:
            pipe.evalsha(self._append.sha, len(keys), *keys, *args)
            # The global indexes live in other slots: same round trip, own steps.
            pipe.sadd(self.keys.active_sessions, conversation.session_id)
            pipe.sadd(self.keys.tenant_active(conversation.tenant_id), conversation.id)
            pipe.zadd(self.keys.activity, {conversation.id: time.time()})

        replies = _run_pipeline(self.client, build, _APPEND)
        status = int(replies[0])
        if status in (-1, -2, -3):
            # Nothing was written: undo the index entries of a conversation that is not here.
            self.client.srem(self.keys.tenant_active(conversation.tenant_id), conversation.id)
            self.client.zrem(self.keys.activity, conversation.id)
        return _APPEND_RESULTS[status]

    def get_conversation(self, conversation_id: str) -> Conversation | None:
        tenant = self.owner(conversation_id)
        if tenant is None:
            return None
        raw = self.client.get(self.keys.conversation(tenant, conversation_id))
        return Conversation.from_dict(orjson.loads(raw)) if raw else None

    def owner(self, conversation_id: str) -> str | None:
        tenant = self.client.get(self.keys.owner(conversation_id))
        return _text(tenant) if tenant is not None else None

    def owned_history(
        self, conversation_id: str, expected: int = TAIL_CHUNK
    ) -> tuple[str | None, RedisHistory]:
        """The owner and the newest `expected` messages, read now in one round trip."""
        history = RedisHistory(self.client, self.keys, conversation_id, expected)
        history.count()
        return history.owner, history

    def messages(self, conversation_id: str) -> list[Message]:
        return _decode_messages(self.client.lrange(self.keys.messages(conversation_id), 0, -1))

    def message_count(self, conversation_id: str) -> int:
        return int(self.client.llen(self.keys.messages(conversation_id)))

    def message_counts(self, conversation_ids: Sequence[str]) -> list[int]:
        pipe = self.client.pipeline(transaction=False)
        for conversation_id in conversation_ids:
            pipe.llen(self.keys.messages(conversation_id))
        return [int(count) for count in pipe.execute()]

    def load_for_migration(
        self, conversation_ids: Sequence[str]
    ) -> list[MigrationLoad | None]:
        """Conversation, session state, messages and summary of many conversations, in three
        pipelined round trips whatever their number; None for one that is not active."""
        pipe = self.client.pipeline(transaction=False)
        for conversation_id in conversation_ids:
            pipe.get(self.keys.owner(conversation_id))
        owners = pipe.execute()
        present = [(c, _text(o)) for c, o in zip(conversation_ids, owners, strict=True) if o]
        for conversation_id, tenant in present:
            pipe.get(self.keys.conversation(tenant, conversation_id))
            pipe.lrange(self.keys.messages(conversation_id), 0, -1)
            pipe.hgetall(self.keys.summary(conversation_id))
            pipe.hgetall(self.keys.token_counts(conversation_id))
        replies = pipe.execute()
        loaded: dict[str, MigrationLoad] = {}
        for index, (conversation_id, _) in enumerate(present):
            raw, items, stored_summary, counts = replies[4 * index : 4 * index + 4]
            if not raw:
                continue
            text, through = _get(stored_summary, "text"), _get(stored_summary, "through")
            try:
                loaded[conversation_id] = MigrationLoad(
                    Conversation.from_dict(orjson.loads(raw)),
                    None,
                    _decode_messages(items),
                    Summary(text, through) if text is not None and through is not None else None,
                    _token_counts(counts),
                )
            except (ValueError, KeyError, TypeError) as error:
                # Bad data already in Redis: this conversation alone cannot move.
                raise ConversationRefused(
                    f"conversation {conversation_id} does not decode from Redis: "
                    f"{type(error).__name__}: {error}"[:500]
                ) from error
        for load in loaded.values():
            pipe.hgetall(self.keys.session_state(load.conversation.session_id))
        for conversation_id, state in zip(list(loaded), pipe.execute(), strict=True):
            loaded[conversation_id] = replace(loaded[conversation_id], session=_session_state(state))
        return [loaded.get(conversation_id) for conversation_id in conversation_ids]

    def finish_migrations(self, done: Sequence[tuple[Conversation, int]]) -> list[bool]:
        """Remove each conversation that still holds exactly the given number of messages
        (no message arrived after it was read), in one pipelined round trip."""
        def build(pipe: Any) -> None:
            for conversation, expected in done:
                keys = self.keys.conversation_keys(conversation.tenant_id, conversation.id)
                args = [expected, conversation.tenant_id, MIGRATED_MARKER_SECONDS]
                pipe.evalsha(self._finish.sha, len(keys), *keys, *args)

        replies = _run_pipeline(self.client, build, _FINISH_MIGRATION)
        finished = [int(r) == 1 for r in replies]
        pipe = self.client.pipeline(transaction=False)
        for (conversation, _), ok in zip(done, finished, strict=True):
            if ok:
                pipe.srem(self.keys.tenant_active(conversation.tenant_id), conversation.id)
                pipe.zrem(self.keys.activity, conversation.id)
                pipe.hdel(self.keys.quarantined, conversation.id)
        pipe.execute()
        return finished

    def quarantine(self, conversation_id: str, reason: str) -> None:
        self.client.hset(self.keys.quarantined, conversation_id, reason)

    def quarantined(self, conversation_ids: Sequence[str]) -> list[bool]:
        if not conversation_ids:
            return []
        reasons = self.client.hmget(self.keys.quarantined, list(conversation_ids))
        return [reason is not None for reason in reasons]

    def release_quarantine(self, conversation_id: str) -> bool:
        return int(self.client.hdel(self.keys.quarantined, conversation_id)) == 1

    def idle_conversations(self, before: float, limit: int) -> list[str]:
        """Active conversations whose last message arrived before `before` (epoch seconds)."""
        ids = self.client.zrangebyscore(self.keys.activity, "-inf", before, 0, limit)
        return [_text(i) for i in ids]

    def forget_activity(self, conversation_id: str) -> None:
        self.client.zrem(self.keys.activity, conversation_id)

    def erase_conversation(self, conversation_id: str) -> bool:
        """Remove every key of one conversation, active or migrated, in one atomic step (its
        keys share a slot); then, each in a step of its own, the session's records if they
        still point at it and the global indexes. True if any key existed."""
        for _ in range(10):
            tenant = self.owner(conversation_id) or _text(
                self.client.get(self.keys.migrated(conversation_id)) or b"")
            raw = self.client.get(self.keys.conversation(tenant, conversation_id)) if tenant else None
            keys = [self.keys.owner(conversation_id), self.keys.migrated(conversation_id)]
            keys += [k for k in self.keys.conversation_keys(tenant, conversation_id)
                     if k not in keys]
            keys.append(self.keys.summary_requested(conversation_id))
            removed = int(self._erase(keys=keys, args=[tenant]))
            if removed >= 0:
                break
        else:
            raise RuntimeError(f"conversation {conversation_id} kept changing hands: not erased")
        pipe = self.client.pipeline(transaction=False)
        if tenant:
            pipe.srem(self.keys.tenant_active(tenant), conversation_id)
        pipe.zrem(self.keys.activity, conversation_id)
        pipe.hdel(self.keys.quarantined, conversation_id)
        pipe.execute()
        self.forget_ready([
            (conversation_id, generation)
            for ready_id, generation in self.ready_migrations(10_000) if ready_id == conversation_id
        ])
        if raw:
            session_id = Conversation.from_dict(orjson.loads(raw)).session_id
            forgotten = int(self._forget_session(
                keys=[self.keys.session_mapping(session_id), self.keys.session_state(session_id)],
                args=[conversation_id]))
            if forgotten:
                pipe = self.client.pipeline(transaction=False)
                pipe.srem(self.keys.active_sessions, session_id)
                pipe.zrem(self.keys.closed_sessions, session_id)
                pipe.execute()
        return removed > 0

    def erase_tenant_sessions(self, tenant_id: str) -> int:
        """Forget the tenant's sessions (ownership, generations): a scan, for rare erasures."""
        removed = 0
        for key in self.client.scan_iter(match=f"{self.keys.prefix}session_state:*", count=500):
            if _text(self.client.hget(key, "tenant_id") or b"") == tenant_id:
                # "{prefix}session_state:{<session id>}"
                session_id = _text(key)[len(self.keys.prefix) + len("session_state:{") : -1]
                # State and mapping share the session's slot: one DEL, one step.
                self.client.delete(key, self.keys.session_mapping(session_id))
                self.client.srem(self.keys.active_sessions, session_id)
                self.client.zrem(self.keys.closed_sessions, session_id)
                removed += 1
        return removed

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

    def active_session_count(self) -> int:
        return int(self.client.scard(self.keys.active_sessions))

    def active_snapshot(self) -> list[tuple[Conversation, int]]:
        """Every active conversation of every tenant with its message count, for the
        statistics rollup (a SCAN for the per-tenant indexes, then pipelined reads)."""
        prefix = self.keys.tenant_active("")
        snapshot: list[tuple[Conversation, int]] = []
        for index_key in self.client.scan_iter(match=f"{prefix}*", count=1000):
            tenant_id = _text(index_key)[len(prefix):]
            conversations = self.active_conversations(tenant_id)
            pipe = self.client.pipeline(transaction=False)
            for conversation in conversations:
                pipe.llen(self.keys.messages(conversation.id))
            counts = pipe.execute() if conversations else []
            snapshot.extend(zip(conversations, (int(c) for c in counts), strict=True))
        return snapshot

    def summary(self, conversation_id: str) -> Summary | None:
        stored = self.client.hgetall(self.keys.summary(conversation_id))
        text, through = _get(stored, "text"), _get(stored, "through")
        return Summary(text, through) if text is not None and through is not None else None

    def save_summary(self, conversation_id: str, summary: Summary) -> bool:
        saved = self._save_summary(
            keys=[self.keys.owner(conversation_id), self.keys.summary(conversation_id)],
            args=[summary.text, summary.through],
        )
        return int(saved) == 1

    def ping(self) -> bool:
        return bool(self.client.ping())

    # --- read-your-writes -------------------------------------------------------------------

    def has_message(self, tenant_id: str, conversation_id: str, message_id: str) -> bool | None:
        """Whether the tenant's active conversation holds the message (never for another
        tenant's); None when it is not active here (PostgreSQL holds it, or nothing does)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.get(self.keys.owner(conversation_id))
        pipe.sismember(self.keys.message_ids(conversation_id), message_id)
        owner, member = pipe.execute()
        if owner is None:
            return None
        return _text(owner) == tenant_id and bool(member)

    def announce_saved(self, tenant_id: str, message_ids: Sequence[str]) -> None:
        """Wake whoever waits for these messages (get_context's wait_for_message_id): those
        PostgreSQL stored (what this store stores, its save scripts announce themselves).

        A PUBLISH nobody listens to costs Redis next to nothing, and keeps no state."""
        channels = [self.keys.arrival(tenant_id, message_id) for message_id in message_ids]
        if self.cluster:
            for channel in channels:  # cluster pipelines route by key; a channel is none
                self.client.publish(channel, b"1")
            return
        pipe = self.client.pipeline(transaction=False)
        for channel in channels:
            pipe.publish(channel, b"1")
        pipe.execute()

    def listen_for(self, tenant_id: str, message_id: str) -> ArrivalListener:
        """Subscribed (confirmed by Redis) to the message's announcement before this returns,
        so a save announced after the caller's next look is never missed. Subscriptions
        reuse idle pub/sub connections: a new one per wait cost a connect."""
        channel = self.keys.arrival(tenant_id, message_id).encode()
        try:
            pubsub = self._idle_pubsubs.pop()
        except IndexError:
            pubsub = self.client.pubsub()
        try:
            pubsub.subscribe(channel)
            # Up to the confirmation: the subscription is in place server-side from here on.
            # What came before it is left over from the connection's previous wait.
            while True:
                reply = pubsub.get_message(timeout=1.0)
                if reply is None or (reply["type"] == "subscribe"
                                     and reply["channel"] == channel):
                    break
        except BaseException:
            pubsub.close()
            raise
        return ArrivalListener(pubsub, channel, self._idle_pubsubs)


# Pub/sub connections kept for the next wait, per store: a worker process waits one at a time.
MAX_IDLE_PUBSUBS = 4


class ArrivalListener:
    """One waiter's subscription: `wait(seconds)` returns on the announcement or after the
    time. If Redis fails meanwhile it sleeps the time out, the caller polling the stores
    between waits."""

    def __init__(self, pubsub: Any, channel: bytes, idle: list[Any]) -> None:
        self.pubsub = pubsub
        self.channel = channel
        self.idle = idle
        self.broken = False

    def wait(self, seconds: float) -> bool:
        """True when the message was announced (stored); False after `seconds`, or early on
        anything else this connection receives (the caller looks at the stores again)."""
        if seconds <= 0:
            return False
        if not self.broken:
            try:
                reply = self.pubsub.get_message(timeout=seconds)
            except redis.RedisError:
                self.broken = True
            else:
                return (reply is not None and reply["type"] == "message"
                        and reply["channel"] == self.channel)
        time.sleep(seconds)
        return False

    def close(self) -> None:
        """Unsubscribe and keep the connection for the next wait (closed if it failed)."""
        try:
            if not self.broken and len(self.idle) < MAX_IDLE_PUBSUBS:
                self.pubsub.unsubscribe(self.channel)
                self.idle.append(self.pubsub)
                return
        except redis.RedisError:
            pass
        try:
            self.pubsub.close()
        except redis.RedisError:
            pass


class RedisLocks:
    """Short leases: SET NX with an expiry, released only by their holder."""

    def __init__(self, client: Any, prefix: str = "") -> None:
        self.client = client
        self.keys = RedisKeys(prefix)
        self._release = client.register_script(_RELEASE_LOCK)

    def acquire(self, name: str, seconds: int) -> str | None:
        token = uuid.uuid4().hex
        if self.client.set(self.keys.lock(name), token, nx=True, ex=seconds):
            return token
        return None

    def release(self, name: str, token: str) -> None:
        self._release(keys=[self.keys.lock(name)], args=[token])


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
