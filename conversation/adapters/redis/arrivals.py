"""Waiting for a message to be stored (get_context's wait_for_message_id): pub/sub."""
from __future__ import annotations

import math
import time
import uuid
from collections.abc import Sequence
from typing import Any

import redis

from conversation.adapters.redis.base import RedisStoreBase


class RedisArrivals(RedisStoreBase):
    """Announcing stored messages, and subscribing to one's announcement."""

    def announce_saved(self, tenant_id: str, message_ids: Sequence[str]) -> None:
        """Wake whoever waits for these messages (get_context's wait_for_message_id): those
        PostgreSQL stored (what this store stores, its save scripts announce themselves).

        A PUBLISH each: PostgreSQL's saves are the outage path, a few messages a call (the
        save scripts, on the hot path, ask PUBSUB NUMSUB first)."""
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


    def take_wait_slot(self, tenant_id: str, seconds: float, cap: int) -> str | None:
        """One of the tenant's `cap` waits at a time (across every worker), held for at most
        `seconds`: its token, to give back; None when the tenant holds them all.

        A sorted set of the holders by deadline, rather than a counter: a worker killed while
        it waited leaves a slot that lapses at its deadline, where a counter would stay up (its
        expiry renewed by every later wait). Counted after adding itself, so two takers racing
        for the last slot may both be refused, never both admitted."""
        key = self._waits_key(tenant_id)
        token = uuid.uuid4().hex
        now = time.time()
        pipe = self.client.pipeline(transaction=False)  # one key: fine on a Redis Cluster
        pipe.zremrangebyscore(key, "-inf", now)
        pipe.zadd(key, {token: now + seconds})
        pipe.zcard(key)
        pipe.expire(key, math.ceil(seconds) + 1)
        held = pipe.execute()[2]
        if held <= cap:
            return token
        self.client.zrem(key, token)
        return None

    def give_back_wait_slot(self, tenant_id: str, token: str) -> None:
        self.client.zrem(self._waits_key(tenant_id), token)

    def _waits_key(self, tenant_id: str) -> str:
        return f"{self.keys.prefix}waits:{tenant_id}"


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
