"""Erasure in Redis: a conversation's keys in one atomic step, a tenant's sessions."""
from __future__ import annotations

import orjson

from conversation.adapters.redis.codec import _text
from conversation.adapters.redis.conversations import RedisConversations
from conversation.adapters.redis.migration import RedisMigrationQueue
from conversation.adapters.redis.statuses import EraseStatus
from conversation.domain.messages import Conversation


class RedisErasure(RedisConversations, RedisMigrationQueue):
    """Erasure, across the conversation's keys, its session's and the global indexes."""

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
            removed = int(self._erase(keys=keys, args=[tenant]))  # else the keys deleted
            if removed != EraseStatus.OWNER_CHANGED:
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
