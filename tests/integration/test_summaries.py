"""The summary buffer on real Redis and PostgreSQL: the summary moves with its conversation."""
from __future__ import annotations

from dataclasses import replace

import pytest

from config.settings import Settings
from conversation.bootstrap import Container
from conversation.domain.messages import NewMessage, Role
from conversation.services.migration import ConversationMigrator, MigrationStatus
from conversation.services.summaries import SummaryStatus

pytestmark = pytest.mark.integration


@pytest.fixture
def container(settings: Settings):  # noqa: ANN201
    windows = {"8k": ("token_buffer", 6000), "128k": ("summary_buffer", 400)}
    container = Container(replace(settings, windows=windows))
    yield container
    container.close()


def test_summary_is_built_migrated_and_serves_the_context_from_postgres(container) -> None:
    for i in range(20):
        for role, text in ((Role.USER, f"Question {i}: is parcel {i} on its way?"),
                           (Role.ASSISTANT, f"Answer {i}: parcel {i} ships on Friday.")):
            conversation_id = container.saver.save(NewMessage(
                tenant_id="acme", session_id="sum-1", agent_id="bot", role=role, content=text,
                message_id=f"{role}-{i}")).conversation_id
    context = container.context_builder.get_context(
        tenant_id="acme", conversation_id=conversation_id, model="gpt-4o")
    assert context["summary_pending"] is True
    # get_context asked for the summary through the broker (the task's own queue).
    assert container.redis.exists(
        container.active_store.keys.summary_requested(conversation_id)) == 1

    assert container.summary_builder.refresh(conversation_id, 400).status is SummaryStatus.UPDATED
    active = container.context_builder.get_context(
        tenant_id="acme", conversation_id=conversation_id, model="gpt-4o")
    assert active["summary"] and active["summary_pending"] is False and active["tokens"] <= 400

    closed = container.active_store.close_session("acme", "sum-1", "2026-11-24T12:00:00.000000Z")
    outcome = ConversationMigrator(container.active_store, container.repository).migrate(
        conversation_id, closed.generation)
    assert outcome.status is MigrationStatus.MIGRATED
    assert container.active_store.summary(conversation_id) is None
    assert container.repository.summary(conversation_id).text == active["summary"]
    persisted = container.context_builder.get_context(
        tenant_id="acme", conversation_id=conversation_id, model="gpt-4o")
    assert persisted["messages"] == active["messages"]
    assert persisted["summary"] == active["summary"]
    assert persisted["summary_pending"] is False
