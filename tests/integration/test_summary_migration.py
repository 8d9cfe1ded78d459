"""A summary stored in Redis with a NUL (a model's output, before summaries were cleaned)
migrates: PostgreSQL's text holds no NUL, and json_to_recordset refused the whole batch's
conversation rows ("\\u0000 cannot be converted to text"), quarantining the conversation."""
from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from conversation.adapters.postgres.schema import conversations
from conversation.bootstrap import Container
from conversation.domain.messages import NewMessage, Role
from conversation.services.migration import ConversationMigrator, MigrationStatus
from conversation.services.ports import Summary
from tests.integration.conftest import forget_tenant_rows

pytestmark = pytest.mark.integration


def test_a_summary_with_a_nul_migrates_without_it(container: Container) -> None:
    tenant = f"t{uuid.uuid4().hex[:8]}"
    try:
        conversation_id = container.saver.save(NewMessage(
            tenant_id=tenant, session_id="s1", agent_id="bot", role=Role.USER,
            content="refund please", message_id="m1")).conversation_id
        container.active_store.save_summary(conversation_id, Summary("asked\x00 twice", "x|y"))
        closed = container.active_store.close_session(tenant, "s1",
                                                      "2026-11-24T12:00:00.000000Z")
        outcome = ConversationMigrator(container.active_store, container.repository).migrate(
            closed.conversation_id, closed.generation)
        assert outcome.status is MigrationStatus.MIGRATED
        with container.engine.connect() as connection:
            summary = connection.scalar(select(conversations.c.summary)
                                        .where(conversations.c.id == conversation_id))
        assert summary == "asked twice"
    finally:
        forget_tenant_rows(container, tenant)
