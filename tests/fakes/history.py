"""A conversation's history as both stores hand it out, over a list of messages."""
from __future__ import annotations

from collections.abc import Iterator, Mapping

from conversation.domain.messages import Message
from conversation.services.ports import MessageRecord


def message_record(message: Message) -> MessageRecord:
    """A message as a store's history hands it out."""
    return MessageRecord(message.id, message.role.value, message.content, message.created_at,
                         message.tokens, message.encoding, message.name, message.tool_calls,
                         message.tool_call_id)


class ListHistory:
    """A history over a list of messages, handing out records as the stores do."""

    def __init__(self, messages: list[Message], counts: dict | None = None) -> None:
        self._messages = messages
        # (encoding, message id) -> tokens: what `store_counts` kept.
        self.counts: dict[tuple[str, str], int] = {} if counts is None else counts

    def count(self) -> int:
        return len(self._messages)

    def _record(self, message: Message, encoding: str | None) -> MessageRecord:
        record = message_record(message)
        stored = self.counts.get((encoding, message.id)) if encoding else None
        if message.encoding != encoding and stored is not None:
            record.other_tokens = stored
        return record

    def first(self, encoding: str | None = None) -> MessageRecord | None:
        return self._record(self._messages[0], encoding) if self._messages else None

    def newest_chunks(self, encoding: str | None = None) -> Iterator[list[MessageRecord]]:
        newest_first = [self._record(message, encoding) for message in reversed(self._messages)]
        # Uneven chunks, as a store's doubling reads give them.
        start, size = 0, 3
        while start < len(newest_first):
            yield newest_first[start : start + size]
            start, size = start + size, size * 2

    def store_counts(self, encoding: str, counts: Mapping[str, int]) -> None:
        self.counts.update({(encoding, message_id): n for message_id, n in counts.items()})
