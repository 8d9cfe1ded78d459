"""SummaryBuilder on the fakes: folds what is older than the verbatim tail, incrementally, one
worker at a time, in whichever tier holds the conversation."""
from __future__ import annotations

from typing import Any

import pytest

from conversation.domain.context import message_key
from conversation.domain.messages import Role
from conversation.services.migration import ConversationMigrator
from conversation.services.save import MessageSaver
from conversation.services.summaries import SummaryBuilder, SummaryStatus
from tests.fakes import FakeLocks, JoiningSummariser, WordTokenizer
from tests.unit.services.conftest import command

# The summary's allowance is 64 tokens; the tail gets 21: two 7-token messages and the priming.
BUDGET = 85


@pytest.fixture
def summariser() -> JoiningSummariser:
    return JoiningSummariser()


@pytest.fixture
def builder(active, archive, summariser) -> SummaryBuilder:
    return SummaryBuilder(active, archive, WordTokenizer(), summariser, FakeLocks())


@pytest.fixture
def saver(active, archive) -> MessageSaver:
    return MessageSaver(active, archive, WordTokenizer())


def say(saver: MessageSaver, *indexes: int) -> str:
    for i in indexes:
        outcome = saver.save(command(f"m{i} x y", created_at=f"2026-01-01T10:00:{i:02d}Z",
                                     role=Role.USER if i % 2 == 0 else Role.ASSISTANT))
    return outcome.conversation_id


def test_what_is_older_than_the_tail_is_folded_once(saver, active, builder, summariser) -> None:
    conversation_id = say(saver, *range(6))
    outcome = builder.refresh(conversation_id, BUDGET)
    assert (outcome.status, outcome.folded) == (SummaryStatus.UPDATED, 4)
    summary = active.summary(conversation_id)
    fourth = active.messages(conversation_id)[3]
    assert summary.text == "m0 x y | m1 x y | m2 x y | m3 x y"
    assert summary.through == message_key(fourth.created_at, fourth.id)
    assert builder.refresh(conversation_id, BUDGET).status is SummaryStatus.UP_TO_DATE
    assert len(summariser.calls) == 1


def test_later_messages_are_folded_onto_the_summary(saver, active, builder, summariser) -> None:
    conversation_id = say(saver, *range(6))
    builder.refresh(conversation_id, BUDGET)
    say(saver, 6, 7)
    outcome = builder.refresh(conversation_id, BUDGET)
    assert (outcome.status, outcome.folded) == (SummaryStatus.UPDATED, 2)
    assert summariser.calls[-1] == ("m0 x y | m1 x y | m2 x y | m3 x y", ["m4 x y", "m5 x y"])


def test_a_conversation_that_fits_needs_no_summary(saver, builder) -> None:
    conversation_id = say(saver, 0, 1)
    assert builder.refresh(conversation_id, BUDGET).status is SummaryStatus.UP_TO_DATE


def test_one_worker_at_a_time(saver, builder) -> None:
    conversation_id = say(saver, *range(6))
    builder.locks.acquire(f"summary:{conversation_id}", 300)
    assert builder.refresh(conversation_id, BUDGET).status is SummaryStatus.BUSY


def test_an_unknown_conversation_is_not_found(builder) -> None:
    assert builder.refresh("no-such", BUDGET).status is SummaryStatus.NOT_FOUND


def test_a_migrated_conversations_summary_is_kept_in_the_archive(saver, active, archive,
                                                                 builder) -> None:
    conversation_id = say(saver, *range(6))
    closed = active.close_session("acme", "s-1", "2026-01-01T10:01:00Z")
    ConversationMigrator(active, archive).migrate(conversation_id, closed.generation)
    assert builder.refresh(conversation_id, BUDGET).status is SummaryStatus.UPDATED
    assert archive.summary(conversation_id).text.startswith("m0 x y")


def test_a_conversation_that_moves_while_summarised_is_left_to_the_next_request(
        saver, active, archive) -> None:
    conversation_id = say(saver, *range(6))

    class MigratingSummariser(JoiningSummariser):
        def summarise(self, *args: Any, **kwargs: Any) -> str:
            closed = active.close_session("acme", "s-1", "2026-01-01T10:01:00Z")
            ConversationMigrator(active, archive).migrate(conversation_id, closed.generation)
            return super().summarise(*args, **kwargs)

    builder = SummaryBuilder(active, archive, WordTokenizer(), MigratingSummariser(), FakeLocks())
    assert builder.refresh(conversation_id, BUDGET).status is SummaryStatus.NOT_FOUND
    assert archive.summary(conversation_id) is None
