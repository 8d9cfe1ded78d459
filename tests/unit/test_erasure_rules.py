"""Which dead-letter payloads hold erased data (the rule the queue's erasure applies; the
repository's SQL applies the same one to the dead_letters table)."""
from __future__ import annotations

import pytest

from conversation.services.erasure import without_erased

MINE = {"tenant_id": "t", "session_id": "s", "content": "secret"}


def test_a_tenants_payloads_go_and_its_batch_items_leave_the_others() -> None:
    assert without_erased(MINE, "t") is None
    theirs = {**MINE, "tenant_id": "u"}
    assert without_erased(theirs, "t") is theirs
    batch = {"messages": [theirs, MINE]}
    assert without_erased(batch, "t") == {"messages": [theirs]}
    assert without_erased({"messages": [MINE]}, "t") is None
    assert without_erased({"sessions": [{"tenant_id": "t", "session_id": "s"}]}, "t") is None


def test_a_conversations_payloads_are_those_naming_it_or_its_session_naming_none() -> None:
    named = {**MINE, "conversation_id": "c"}
    assert without_erased(named, "t", "c", "s") is None
    assert without_erased(MINE, "t", "c", "s") is None  # its session's, naming no conversation
    assert without_erased({"conversation_id": "c", "generation": 2}, "t", "c", "s") is None
    another = {**MINE, "conversation_id": "d"}
    assert without_erased(another, "t", "c", "s") is another
    intruder = {**named, "tenant_id": "u"}  # another tenant naming the id: its own data
    assert without_erased(intruder, "t", "c", "s") is intruder


def test_a_truncated_preview_goes_whole_when_it_names_the_erased_data() -> None:
    preview = {"_truncated": True, "preview": '{"messages": [{"tenant_id": "t", "content": "x'}
    assert without_erased(preview, "t") is None
    assert without_erased(preview, "u") is preview
    assert without_erased(preview, "t", "c", "s") is preview


def test_the_queue_erasure_task_is_named_routed_and_checks_its_payload() -> None:
    """Erasure publishes `conversation.erase_queued_letters` (conversation.bootstrap): a
    worker of the stats queue runs it (tasks/app.py discovers tasks/erasure_tasks.py), and it
    refuses a payload it cannot use."""
    from config.celery import STATS_QUEUE, TASK_QUEUES
    from tasks.base import InvalidPayload
    from tasks.erasure_tasks import erase_queued_letters

    assert erase_queued_letters.name == "conversation.erase_queued_letters"
    assert TASK_QUEUES["conversation.erase_queued_letters"] == STATS_QUEUE
    for bad in ({"targets": "acme"}, {"targets": [["acme", None]]}, {"other": 1}):
        with pytest.raises(InvalidPayload):
            erase_queued_letters.run(**bad)
