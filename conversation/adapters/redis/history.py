"""A conversation's messages in Redis, read from the tail (the context path's read)."""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import redis

from conversation.adapters.redis.codec import _ENCODING_OF, _RECORD, _decode_records, _text
from conversation.adapters.redis.keys import RedisKeys
from conversation.services.ports import MessageRecord


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
        self._prefetched: tuple[int, bytes | None, list[Any]] | None = None

    def _prefetch(self) -> tuple[int, bytes | None, list[Any]]:
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
