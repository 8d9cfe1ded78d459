"""A persisted conversation read from the tail (the context path's read), and the token
counts stored for it."""
from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import orjson
from sqlalchemy import Engine, and_, func, select, text, tuple_

from conversation.adapters.postgres.rows import _ORDER, _RECORD_COLUMNS, TAIL_CHUNK, _record
from conversation.adapters.postgres.schema import conversations, message_token_counts, messages
from conversation.services.ports import MessageRecord


class SqlHistory:
    """A persisted conversation read from the tail: its owner, the count, the first message
    and the newest `chunk` messages on one connection, then further back in doubling chunks
    if needed (keyset pagination: reads grow with the window, not the history)."""

    def __init__(self, engine: Engine, conversation_id: str, chunk: int = TAIL_CHUNK) -> None:
        self.engine = engine
        self.conversation_id = conversation_id
        self.chunk = chunk
        self.owner: str | None = None
        self._prefetched: tuple[int, Any, Sequence[Any]] | None = None

    def _mine(self) -> Any:
        """The conversation's messages: those of its owner only (a row of another tenant
        under the same id is never read, whatever wrote it)."""
        return and_(messages.c.conversation_id == self.conversation_id,
                    messages.c.tenant_id == self.owner)

    def _prefetch(self) -> tuple[int, Any, Sequence[Any]]:
        if self._prefetched is None:
            with self.engine.connect() as connection:
                self.owner = connection.scalar(
                    select(conversations.c.tenant_id)
                    .where(conversations.c.id == self.conversation_id)
                )
                if self.owner is None:
                    self._prefetched = (0, None, [])
                    return self._prefetched
                # One index holds both conditions and the order (migration 0010): given the
                # conversation's index and the tenant's apart, the planner intersected the
                # conversation's entries with the whole tenant's (2.2 M for the largest tenant
                # at 10 M messages: issue 18).
                count = connection.scalar(
                    select(func.count()).select_from(messages).where(self._mine()))
                first = connection.execute(
                    select(*_RECORD_COLUMNS).where(self._mine()).order_by(*_ORDER).limit(1)
                ).first()
                tail = connection.execute(self._older_than(None, self.chunk)).all()
            self._prefetched = (int(count or 0), first, tail)
        return self._prefetched

    def _older_than(self, last: Any, limit: int) -> Any:
        """The `limit` messages before `last` (a row; None: the newest), newest first."""
        query = select(*_RECORD_COLUMNS).where(self._mine())
        if last is not None:
            # A row comparison: an index condition from `last` on (issue 18), where the
            # equivalent OR of comparisons filtered every newer row.
            query = query.where(tuple_(*_ORDER) < tuple_(last.created_at, last.seq, last.id))
        return query.order_by(*(c.desc() for c in _ORDER)).limit(limit)

    def count(self) -> int:
        return self._prefetch()[0]

    def first(self, encoding: str | None = None) -> MessageRecord | None:
        row = self._prefetch()[1]
        if row is None:
            return None
        record = _record(row)
        if encoding is not None:
            self._attach_counts([record], encoding)
        return record

    def newest_chunks(self, encoding: str | None = None) -> Iterator[list[MessageRecord]]:
        _, _, rows = self._prefetch()
        chunk = self.chunk
        while rows:
            records = [_record(row) for row in rows]
            if encoding is not None:
                self._attach_counts(records, encoding)
            yield records
            if len(rows) < chunk:
                return
            chunk = min(chunk * 2, 4096)
            with self.engine.connect() as connection:
                rows = connection.execute(self._older_than(rows[-1], chunk)).all()

    def _attach_counts(self, records: list[MessageRecord], encoding: str) -> None:
        other = {r.id: r for r in records if r.encoding != encoding}
        if not other:
            return
        t = message_token_counts.c
        with self.engine.connect() as connection:
            stored = connection.execute(
                select(t.message_id, t.tokens).where(
                    t.conversation_id == self.conversation_id,
                    t.encoding == encoding,
                    t.message_id.in_(list(other)),
                )
            ).all()
        for message_id, tokens in stored:
            other[message_id].other_tokens = tokens

    def store_counts(self, encoding: str, counts: Mapping[str, int]) -> None:
        store_token_counts(self.engine, self.conversation_id, encoding, counts)


# Joined to the messages, so a message erased since it was counted is skipped (its count would
# have nothing to belong to); a count another read stored first is kept.
STORE_TOKEN_COUNTS = text(
    "INSERT INTO message_token_counts (conversation_id, message_id, encoding, tokens) "
    "SELECT m.conversation_id, m.id, :encoding, (CAST(:counts AS jsonb) ->> m.id)::int "
    "FROM messages m WHERE m.conversation_id = :conversation_id AND m.id = ANY(:ids) "
    "ON CONFLICT DO NOTHING"
)


def store_token_counts(
    engine: Engine, conversation_id: str, encoding: str, counts: Mapping[str, int]
) -> None:
    if not counts:
        return
    with engine.begin() as connection:
        connection.execute(
            STORE_TOKEN_COUNTS,
            {"conversation_id": conversation_id, "encoding": encoding, "ids": list(counts),
             "counts": orjson.dumps(counts).decode()},
        )
