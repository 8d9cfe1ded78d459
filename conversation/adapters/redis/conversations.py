"""Active conversations in Redis: saves (one script call per batch on standalone Redis,
two steps on a cluster), history, summaries, listings."""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import orjson

from conversation.adapters.redis import lua
from conversation.adapters.redis.calls import _run_pipeline
from conversation.adapters.redis.codec import _decode_messages, _dumps, _get, _text
from conversation.adapters.redis.history import RedisHistory
from conversation.adapters.redis.keys import TAIL_CHUNK
from conversation.adapters.redis.sessions import RedisSessions
from conversation.adapters.redis.statuses import Applied, ResolveStatus, SaveStatus
from conversation.domain.errors import ForeignSession
from conversation.domain.messages import Conversation, Message
from conversation.services.ports import AppendResult, Summary

_APPEND_RESULTS = {
    SaveStatus.SAVED: AppendResult.SAVED,
    SaveStatus.DUPLICATE: AppendResult.DUPLICATE,
    SaveStatus.MOVED: AppendResult.MOVED,
    SaveStatus.FOREIGN_CONVERSATION: AppendResult.FOREIGN,
    SaveStatus.NOT_ACTIVE: AppendResult.NOT_FOUND,
    SaveStatus.UNCONFIRMED: AppendResult.NEW_CONVERSATION,
}
# The same by the script's integer (an IntEnum's value hashes and compares as it): no enum
# call per message of a batch.
_APPEND_BY_CODE: dict[int, AppendResult] = {int(k): v for k, v in _APPEND_RESULTS.items()}
# Statuses of an append that wrote nothing because the conversation is not here.
_NOT_HERE = (SaveStatus.MOVED, SaveStatus.FOREIGN_CONVERSATION, SaveStatus.NOT_ACTIVE)
_ACTIVE_RESULTS = (AppendResult.SAVED, AppendResult.DUPLICATE)


def _unflattened(flat: list[Any]) -> list[list[Any]]:
    """save_batch.lua's replies, from its flat array (each reply's length, then its
    elements)."""
    replies: list[list[Any]] = []
    at = 0
    while at < len(flat):
        length = int(flat[at])
        replies.append(flat[at + 1:at + 1 + length])
        at += 1 + length
    return replies


class RedisConversations(RedisSessions):
    """Saves into active conversations, and their reads (it resolves sessions first)."""

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
        session (and conversation) run as one group of one script call, in their order: the
        session is resolved once for them all (and the indexes touched once a call). Those
        interleaved with its messages naming the conversation run group after group, in the
        batch's order.
        """
        if self.cluster:
            return [self._save_in_two_steps_or_refusal(*item) for item in items]
        groups: list[tuple[tuple[str, str, str, bool], list[int]]] = []
        open_groups: dict[tuple[str, str, str, bool], int] = {}
        # The latest group of each session and each conversation named: a message joins its
        # key's group only while no other group took one of its session's (or its named
        # conversation's) since. A batch's messages share one received time, so their order
        # in the conversation is the order the script appends them, which must be the batch's
        # (a session's messages naming its conversation and not naming it, interleaved).
        latest: dict[tuple[str, str], int] = {}
        for index, (conversation, _, explicit, create) in enumerate(items):
            key = (conversation.tenant_id, conversation.session_id,
                   conversation.id if explicit else "", create)
            session_mark = ("s", conversation.session_id)
            conversation_mark = ("c", conversation.id) if explicit else None
            group = open_groups.get(key)
            if (group is None or latest.get(session_mark, group) != group
                    or (conversation_mark is not None
                        and latest.get(conversation_mark, group) != group)):
                groups.append((key, []))
                group = open_groups[key] = len(groups) - 1
            groups[group][1].append(index)
            latest[session_mark] = group
            if conversation_mark is not None:
                latest[conversation_mark] = group

        keys = [self.keys.active_sessions]
        args: list[Any] = [self.keys.prefix]
        mapping, state, dumps = self.keys.session_mapping, self.keys.session_state, orjson.dumps
        for (tenant_id, session_id, explicit_id, create), indexes in groups:
            conversation = items[indexes[0]][0]
            keys += (mapping(session_id), state(session_id))
            # JSON as orjson's bytes, as they go on the wire (a str would be decoded here and
            # encoded again by the client, for every message of a batch). The message's JSON is
            # opaque here: whatever fields it carries go as they are.
            if len(indexes) == 1:  # a batch spanning many sessions: mostly groups of one
                message = items[indexes[0]][1]
                args += (tenant_id, session_id, explicit_id, conversation.id,
                         dumps(conversation.to_dict()), "1" if create else "0",
                         message.created_at, 1,
                         message.id, message.created_at, dumps(message.to_dict()))
                continue
            messages = [items[i][1] for i in indexes]
            args += (tenant_id, session_id, explicit_id, conversation.id,
                     dumps(conversation.to_dict()), "1" if create else "0",
                     max(message.created_at for message in messages), len(messages))
            for message in messages:
                args += (message.id, message.created_at, dumps(message.to_dict()))

        def build(pipe: Any) -> None:
            pipe.evalsha(self._save_batch.sha, len(keys), *keys, *args)

        (flat,) = _run_pipeline(self.client, build, lua.SAVE_BATCH)
        results: list[tuple[AppendResult, str] | ForeignSession | None] = [None] * len(items)
        for ((_, session_id, _, _), indexes), reply in zip(groups, _unflattened(flat),
                                                          strict=True):
            if int(reply[0]) == SaveStatus.FOREIGN_SESSION:
                for i in indexes:
                    results[i] = ForeignSession(f"session {session_id} belongs to another tenant")
                continue
            conversation_id = _text(reply[-1])
            for i, status in zip(indexes, reply[:-1], strict=True):
                results[i] = (_APPEND_BY_CODE[status], conversation_id)
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
        if status is ResolveStatus.UNCONFIRMED:
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

        replies = _run_pipeline(self.client, build, lua.APPEND)
        status = SaveStatus(int(replies[0]))
        if status in _NOT_HERE:
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
        return int(saved) == Applied.APPLIED

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
