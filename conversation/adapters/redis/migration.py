"""The migration queue in Redis: ready conversations, their load and finish, quarantine,
idle conversations."""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import orjson

from conversation.adapters.redis import lua
from conversation.adapters.redis.base import RedisStoreBase
from conversation.adapters.redis.calls import _run_pipeline
from conversation.adapters.redis.codec import (
    _decode_messages,
    _get,
    _session_state,
    _text,
    _token_counts,
)
from conversation.adapters.redis.keys import MIGRATED_MARKER_SECONDS
from conversation.adapters.redis.statuses import Applied
from conversation.domain.messages import Conversation
from conversation.services.ports import ConversationRefused, MigrationLoad, Summary


class RedisMigrationQueue(RedisStoreBase):
    """What the migration reads and clears in Redis."""

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

        replies = _run_pipeline(self.client, build, lua.FINISH_MIGRATION)
        finished = [int(r) == Applied.APPLIED for r in replies]
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
