"""ContextBuilder on the fakes: the newest messages within the budget, from whichever tier
holds the conversation, its tenant's only; waiting for a message; costs counted once."""
from __future__ import annotations

import pytest

from conversation.domain.context import message_key
from conversation.domain.messages import Role
from conversation.services.context import ContextBuilder
from conversation.services.migration import ConversationMigrator
from conversation.services.ports import Summary
from conversation.services.save import MessageSaver
from tests.fakes import RecordingSummaryRequests, TwoEncodingTokenizer, UnreachableStore
from tests.unit.services.conftest import command

WINDOWS = {"8k": ("token_buffer", 6000), "small": ("token_buffer", 20),
           "buffer": ("summary_buffer", 14)}


@pytest.fixture
def tokenizer() -> TwoEncodingTokenizer:
    return TwoEncodingTokenizer()


@pytest.fixture
def requests() -> RecordingSummaryRequests:
    return RecordingSummaryRequests()


@pytest.fixture
def builder(active, archive, tokenizer, requests) -> ContextBuilder:
    return ContextBuilder(active, archive, tokenizer, WINDOWS, {"letters-": "8k"},
                          summary_requests=requests, wait_seconds=0.2)


@pytest.fixture
def saver(active, archive, tokenizer) -> MessageSaver:
    return MessageSaver(active, archive, tokenizer)


def conversation_of(saver, *contents: str) -> str:
    for i, content in enumerate(contents):
        outcome = saver.save(command(content, created_at=f"2026-01-01T10:00:0{i}Z",
                                     role=Role.USER if i % 2 == 0 else Role.ASSISTANT))
    return outcome.conversation_id


def test_the_whole_conversation_when_it_fits(saver, builder) -> None:
    conversation_id = conversation_of(saver, "one", "two words")
    context = builder.get_context(tenant_id="acme", session_id="s-1", window="8k")
    assert context["conversation_id"] == conversation_id
    assert context["messages"] == [{"role": "user", "content": "one"},
                                   {"role": "assistant", "content": "two words"}]
    assert (context["total_messages"], context["truncated"]) == (2, False)


def test_the_newest_messages_within_the_budget(saver, builder) -> None:
    conversation_id = conversation_of(saver, "a b c", "d e f", "g h i", "j k l")
    context = builder.get_context(tenant_id="acme", conversation_id=conversation_id,
                                  window="small")
    assert [m["content"] for m in context["messages"]] == ["g h i", "j k l"]
    assert context["truncated"] is True and context["tokens"] <= 20


def test_another_tenants_conversation_answers_like_a_missing_one(saver, builder) -> None:
    conversation_id = conversation_of(saver, "secret")
    theirs = builder.get_context(tenant_id="intruder", conversation_id=conversation_id,
                                 window="8k")
    missing = builder.get_context(tenant_id="intruder", conversation_id="no-such",
                                  window="8k")
    assert theirs["messages"] == [] and theirs["error"] == missing["error"].replace(
        "no-such", conversation_id)


def test_a_migrated_conversation_is_read_from_the_archive(saver, active, archive,
                                                          builder) -> None:
    conversation_id = conversation_of(saver, "one", "two")
    closed = active.close_session("acme", "s-1", "2026-01-01T10:01:00Z")
    ConversationMigrator(active, archive).migrate(conversation_id, closed.generation)
    context = builder.get_context(tenant_id="acme", session_id="s-1", window="8k")
    assert context["conversation_id"] == conversation_id
    assert [m["content"] for m in context["messages"]] == ["one", "two"]


def test_with_the_active_tier_down_the_archive_answers(saver, active, archive,
                                                       tokenizer) -> None:
    conversation_id = conversation_of(saver, "one")
    closed = active.close_session("acme", "s-1", "2026-01-01T10:01:00Z")
    ConversationMigrator(active, archive).migrate(conversation_id, closed.generation)
    down = ContextBuilder(UnreachableStore(), archive, tokenizer, WINDOWS, {},  # type: ignore[arg-type]
                          wait_seconds=0.05)
    context = down.get_context(tenant_id="acme", conversation_id=conversation_id, window="8k")
    assert [m["content"] for m in context["messages"]] == ["one"]


def test_costs_in_another_encoding_are_counted_once(saver, builder, tokenizer) -> None:
    conversation_id = conversation_of(saver, "abc", "de")
    first = builder.get_context(tenant_id="acme", conversation_id=conversation_id,
                                model="letters-1")
    again = builder.get_context(tenant_id="acme", conversation_id=conversation_id,
                                model="letters-1")
    assert first["tokens"] == again["tokens"]
    assert sorted(tokenizer.letter_counts) == ["abc", "de"]  # the second read counted none


def test_waiting_finds_a_message_already_stored(saver, builder) -> None:
    conversation_id = conversation_of(saver, "here")
    context = builder.get_context(tenant_id="acme", session_id="s-1", window="8k",
                                  wait_for_message_id="here")
    assert (context["waited_for"], context["conversation_id"]) == ("found", conversation_id)


def test_waiting_for_a_message_never_stored_says_missing(saver, builder) -> None:
    conversation_id = conversation_of(saver, "here")
    context = builder.get_context(tenant_id="acme", conversation_id=conversation_id,
                                  window="8k", wait_for_message_id="never")
    assert context["waited_for"] == "missing"
    assert [m["content"] for m in context["messages"]] == ["here"]


def test_over_budget_without_a_summary_asks_for_one(saver, builder, requests) -> None:
    conversation_id = conversation_of(saver, "a b c", "d e f", "g h i", "j k l")
    context = builder.get_context(tenant_id="acme", conversation_id=conversation_id,
                                  window="buffer")
    assert context["summary_pending"] is True and context["summary"] is None
    assert requests.requests == [(conversation_id, 14)]


def test_over_budget_with_a_summary_sends_it_before_the_newest(saver, active, builder) -> None:
    conversation_id = conversation_of(saver, "a b c", "d e f", "g h i", "j k l")
    covered = active.messages(conversation_id)[1]
    active.save_summary(conversation_id, Summary("abc def", message_key(covered.created_at,
                                                                        covered.id)))
    context = builder.get_context(tenant_id="acme", conversation_id=conversation_id,
                                  window="buffer", max_tokens=30)
    assert context["summary"] == "abc def"
    assert [m["content"] for m in context["messages"]] == ["g h i", "j k l"]
