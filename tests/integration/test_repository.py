"""The PostgreSQL repository on a real server: idempotent batch writes, ordered reads."""
from __future__ import annotations

import uuid

import pytest

from config.settings import Settings
from conversation.adapters.postgres import SqlRepository, make_engine
from conversation.domain.messages import Conversation, ConversationStatus, Message, Role
from conversation.domain.stats import summarise_conversation

pytestmark = pytest.mark.integration


@pytest.fixture
def repository(settings: Settings):  # noqa: ANN201
    engine = make_engine(settings.database_url or "")
    yield SqlRepository(engine)
    engine.dispose()


def conversation_with(n: int) -> tuple[Conversation, list[Message]]:
    conversation = Conversation(uuid.uuid4().hex, "acme", f"s-{uuid.uuid4().hex}", "bot",
                                "2026-01-01T00:00:00.000000Z", ConversationStatus.CLOSED)
    history = [Message(f"m{i}", Role.USER if i % 2 == 0 else Role.ASSISTANT, f"text {i}",
                       f"2026-01-01T00:00:{i:02d}.000000Z", 5, "cl100k_base",
                       metadata={"i": i} if i == 3 else {})
               for i in range(n)]
    return conversation, history


def test_writing_a_batch_twice_changes_nothing(repository) -> None:
    """The second write takes the staging path (the conversations exist): no duplicates."""
    batch = [conversation_with(n) for n in (3, 7, 1)]
    items = [(c, h, summarise_conversation(h)) for c, h in batch]
    repository.store_conversations(items)
    repository.store_conversations(items)
    longer = conversation_with(9)
    repository.store_conversations([(batch[1][0], longer[1], summarise_conversation(longer[1]))])
    for (conversation, history), expected in zip(batch, (3, 9, 1), strict=True):
        stored = repository.messages(conversation.id)
        assert [m.id for m in stored] == [f"m{i}" for i in range(expected)]
    assert repository.messages(batch[1][0].id)[3].metadata == {"i": 3}


def test_history_reads_newest_first_across_chunks(repository) -> None:
    conversation, history = conversation_with(50)
    repository.store_conversation(conversation, history, summarise_conversation(history))
    owner, tail = repository.owned_history(conversation.id, expected=7)
    assert owner == conversation.tenant_id
    assert tail.count() == 50 and tail.first().id == "m0"
    chunks = list(tail.newest_chunks())
    assert [len(chunk) for chunk in chunks] == [7, 14, 28, 1]  # doubling reads from the tail
    records = [record for chunk in chunks for record in chunk]
    assert [r.id for r in records] == [f"m{i}" for i in reversed(range(50))]
    # Written by PostgreSQL, read back exactly as saved (a summary names its last message so).
    assert [r.created_at for r in reversed(records)] == [m.created_at for m in history]
    assert [(r.role, r.content, r.tokens, r.encoding) for r in reversed(records)] == [
        (m.role.value, m.content, m.tokens, m.encoding) for m in history]


def test_history_timestamps_keep_their_microseconds(repository) -> None:
    conversation, history = conversation_with(3)
    odd = ["1999-12-31T23:59:59.999999Z", "2026-02-28T07:08:09.000001Z",
           "2026-11-25T03:04:05.123456Z"]
    history = [m._replace(created_at=moment) for m, moment in zip(history, odd, strict=True)]
    repository.store_conversation(conversation, history, summarise_conversation(history))
    _, tail = repository.owned_history(conversation.id)
    assert [r.created_at for chunk in tail.newest_chunks() for r in chunk] == odd[::-1]


def test_save_direct_is_idempotent(repository) -> None:
    conversation, history = conversation_with(2)
    first = repository.save_direct(conversation, history[0], False)
    second = repository.save_direct(conversation, history[0], False)
    assert first == (conversation.id, True)
    assert second == (conversation.id, False)


@pytest.mark.parametrize("fresh", [True, False], ids=["copied straight", "through staging"])
def test_copy_keeps_every_character(repository, fresh: bool) -> None:
    """The hand-written COPY text escapes what its format needs, and nothing else."""
    conversation = Conversation(uuid.uuid4().hex, "acme", f"s-{uuid.uuid4().hex[:8]}", "bot",
                                "2026-01-01T00:00:00.000000Z", ConversationStatus.CLOSED)
    tricky = ["tab\there", "new\nline", "back\\slash", "\\N", "carriage\rreturn", "ñandú 😀 €",
              "", "  spaces  ", "\\t literally", "end\\"]
    history = [Message(f"t{i}", Role.USER, text, f"2026-01-01T00:00:{i:02d}.000000Z", 3,
                       "cl100k_base", name="tool\tname" if i == 2 else None,
                       metadata={"note": text, "quote": '"q"', "nested": {"a": [1, "\\n"]}},
                       agent_id="agent\\x" if i == 3 else None)
               for i, text in enumerate(tricky)]
    if not fresh:  # the conversation exists already: the staging path
        repository.store_conversations([(conversation, history[:1],
                                         summarise_conversation(history[:1]))])
    repository.store_conversations([(conversation, history, summarise_conversation(history))])
    stored = repository.messages(conversation.id)
    assert [(m.id, m.content, m.name, m.agent_id, m.metadata, m.created_at) for m in stored] == [
        (m.id, m.content, m.name, m.agent_id, m.metadata, m.created_at) for m in history]
