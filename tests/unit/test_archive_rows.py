"""Migration writes conversations and their stats through json_to_recordset, which gives NULL
for any column a row leaves out (over the column's default, and on conflict over the stored
value): the rows migration builds must name every column of their table."""
from __future__ import annotations

from datetime import UTC, datetime

from conversation.adapters.postgres.rows import _stats_row, conversation_row
from conversation.adapters.postgres.schema import conversation_stats, conversations
from conversation.domain.messages import Conversation, ConversationStatus
from conversation.domain.stats import ConversationStats


def sample() -> tuple[Conversation, ConversationStats]:
    conversation = Conversation(
        id="c1", tenant_id="acme", session_id="s1", agent_id="bot",
        status=ConversationStatus.CLOSED, created_at="2026-11-01T10:00:00.000000Z",
        closed_at="2026-11-01T10:05:00.000000Z", summary="so far\x00", summary_through=3)
    stats = ConversationStats(message_count=4, user_messages=2, assistant_messages=2,
                              tokens_in=10, tokens_out=20, duration_seconds=300.0,
                              first_response_seconds=2.0, satisfaction=80.0,
                              started_at="2026-11-01T10:00:00.000000Z",
                              ended_at="2026-11-01T10:04:00.000000Z",
                              resolution_seconds=300.0, model="gpt-4o")
    return conversation, stats


def test_a_conversation_row_names_every_column() -> None:
    conversation, stats = sample()
    row = conversation_row(conversation, stats, datetime.now(UTC))
    assert set(row) == {column.name for column in conversations.c}
    assert row["summary"] == "so far"  # a NUL, which text cannot hold, is dropped


def test_a_stats_row_names_every_column() -> None:
    conversation, stats = sample()
    assert set(_stats_row(conversation, stats)) == {column.name for column in conversation_stats.c}
