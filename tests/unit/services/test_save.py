"""MessageSaver on the fakes: which tier a message goes to, ownership, idempotency, order."""
from __future__ import annotations

from dataclasses import replace

import pytest

from conversation.domain.errors import ForeignConversation, ForeignSession
from conversation.domain.messages import Conversation, ConversationStatus
from conversation.domain.refusals import RefusalReason
from conversation.domain.stats import summarise_conversation
from conversation.services.save import MessageSaver, SaveOutcome
from tests.fakes import UnreachableStore, WordTokenizer
from tests.unit.services.conftest import command


@pytest.fixture
def saver(active, archive) -> MessageSaver:
    return MessageSaver(active, archive, WordTokenizer(), clock=lambda: "2026-01-01T10:00:00Z")


def archived(saver: MessageSaver, archive, conversation_id: str, tenant_id: str = "acme",
             session_id: str = "s-old") -> Conversation:
    message = saver.build_message(command("archived", tenant_id=tenant_id,
                                          session_id=session_id))
    conversation = Conversation(conversation_id, tenant_id, session_id, "support",
                                message.created_at, ConversationStatus.CLOSED,
                                closed_at=message.created_at)
    archive.store_conversations([(conversation, [message],
                                  summarise_conversation([message], message.created_at))])
    return conversation


def test_a_new_sessions_first_message_is_claimed_then_saved_in_the_active_tier(
        saver, active, archive) -> None:
    outcome = saver.save(command("one two three"))
    assert (outcome.stored, outcome.tier) == (True, "redis")
    assert archive.session_owners == {"s-1": "acme"}  # claimed in the archive first
    [stored] = active.messages(outcome.conversation_id)
    assert (stored.content, stored.tokens, stored.created_at) == (
        "one two three", 3 + 1 + 3, "2026-01-01T10:00:00Z")
    assert active.session_conversation("acme", "s-1") == outcome.conversation_id


def test_the_same_message_id_is_stored_once(saver, active) -> None:
    first = saver.save(command("hi", message_id="m-1"))
    again = saver.save(command("hi again", message_id="m-1"))
    assert (first.stored, again.stored) == (True, False)
    assert [m.content for m in active.messages(first.conversation_id)] == ["hi"]


def test_messages_are_kept_by_time_then_arrival(saver, active) -> None:
    for content, at in [("b", "10:00:01"), ("a", "10:00:00"), ("b2", "10:00:01")]:
        outcome = saver.save(command(content, created_at=f"2026-01-01T{at}Z"))
    assert [m.content for m in active.messages(outcome.conversation_id)] == ["a", "b", "b2"]


def test_a_session_another_tenant_owns_in_the_archive_is_refused_before_any_write(
        saver, active, archive) -> None:
    archive.claim_sessions([("other", "s-1")])
    [outcome] = saver.save_many([command("mine")])
    assert outcome.refusal is not None
    assert outcome.refusal.reason is RefusalReason.FOREIGN_SESSION
    assert active.conversations == {} and active.sessions == {}


def test_a_session_another_tenant_holds_in_the_active_tier_is_refused(saver, active) -> None:
    mine = saver.save(command("mine"))
    with pytest.raises(ForeignSession):
        saver.save(command("theirs", tenant_id="intruder"))
    assert [m.content for m in active.messages(mine.conversation_id)] == ["mine"]


def test_a_message_for_an_archived_conversation_is_appended_there(saver, active, archive) -> None:
    archived(saver, archive, "c-old")
    outcome = saver.save(command("late", conversation_id="c-old", session_id="s-old"))
    assert outcome == SaveOutcome("c-old", "late", True, "postgres")
    assert [m.content for m in archive.messages("c-old")] == ["archived", "late"]
    assert active.get_conversation("c-old") is None  # never split across the tiers


def test_an_archived_conversation_of_another_tenant_is_refused(saver, archive) -> None:
    archived(saver, archive, "c-theirs", tenant_id="other")
    with pytest.raises(ForeignConversation):
        saver.save(command("mine", conversation_id="c-theirs", session_id="s-9"))
    assert [m.content for m in archive.messages("c-theirs")] == ["archived"]


def test_a_save_redelivered_after_its_conversation_migrated_is_a_duplicate(
        saver, active, archive) -> None:
    old = archived(saver, archive, "c-old", session_id="s-1")
    outcome = saver.save(command("archived"))  # the same message id, same session
    assert outcome == SaveOutcome(old.id, "archived", False, "postgres")
    assert active.conversations == {}


def test_a_message_stored_in_the_archive_wakes_its_waiter(saver, active, archive) -> None:
    archived(saver, archive, "c-old")
    listener = active.listen_for("acme", "late")
    saver.save(command("late", conversation_id="c-old", session_id="s-old"))
    assert listener.wait(0) is True


def test_with_the_active_tier_down_the_message_goes_to_the_archive(archive) -> None:
    saver = MessageSaver(UnreachableStore(), archive, WordTokenizer())  # type: ignore[arg-type]
    first = saver.save(command("one"))
    second = saver.save(command("two"))
    again = saver.save(command("one"))
    assert (first.tier, first.stored, again.stored) == ("postgres", True, False)
    assert first.conversation_id == second.conversation_id == again.conversation_id
    assert [m.content for m in archive.messages(first.conversation_id)] == ["one", "two"]


def test_a_batch_keeps_its_order_and_refuses_only_the_bad_message(saver, active) -> None:
    saver.save(command("owner's first", session_id="taken"))
    outcomes = saver.save_many([
        command("one", session_id="bulk"),
        command("intruder", session_id="taken", tenant_id="intruder"),
        command("two", session_id="bulk"),
        command("one", session_id="bulk"),
    ])
    assert [o.refusal.reason if o.refusal else o.stored for o in outcomes] == [
        True, RefusalReason.FOREIGN_SESSION, True, False]
    assert [m.content for m in active.messages(outcomes[0].conversation_id)] == ["one", "two"]


def test_an_explicit_conversation_new_everywhere_is_made_in_the_active_tier(
        saver, active, archive) -> None:
    outcome = saver.save(command("hello", conversation_id="c-mine"))
    assert (outcome.conversation_id, outcome.tier) == ("c-mine", "redis")
    assert replace(active.get_conversation("c-mine"), created_at="") == Conversation(
        "c-mine", "acme", "s-1", "support", "")
    assert archive.get_conversation("c-mine") is None
