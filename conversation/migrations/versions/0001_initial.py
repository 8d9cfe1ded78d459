"""The design's tables: conversations, messages, conversation_stats, api_keys, dead_letters.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "conversations",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("tenant_id", sa.String(128), nullable=False),
        sa.Column("session_id", sa.String(128), nullable=False),
        sa.Column("agent_id", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True)),
        sa.Column("last_message_at", sa.DateTime(timezone=True)),
        sa.Column("message_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("summary", sa.Text),
        sa.Column("summary_through", sa.String(300)),
        sa.Column("migrated_at", sa.DateTime(timezone=True)),
    )
    op.create_index(
        "ix_conversations_tenant_created", "conversations", ["tenant_id", "created_at", "id"]
    )
    op.create_index(
        "ix_conversations_tenant_agent_created",
        "conversations",
        ["tenant_id", "agent_id", "created_at"],
    )
    op.create_index("ix_conversations_tenant_session", "conversations", ["tenant_id", "session_id"])

    op.create_table(
        "messages",
        sa.Column(
            "conversation_id",
            sa.String(128),
            sa.ForeignKey("conversations.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("tenant_id", sa.String(128), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("name", sa.String(128)),
        sa.Column("tokens", sa.Integer, nullable=False),
        sa.Column("encoding", sa.String(32), nullable=False),
        sa.Column("agent_id", sa.String(128)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("metadata", JSONB),
        sa.PrimaryKeyConstraint("conversation_id", "id", name="pk_messages"),
    )
    op.create_index(
        "ix_messages_conversation_order", "messages", ["conversation_id", "created_at", "seq"]
    )
    op.create_index("ix_messages_tenant_created", "messages", ["tenant_id", "created_at"])

    op.create_table(
        "conversation_stats",
        sa.Column(
            "conversation_id",
            sa.String(128),
            sa.ForeignKey("conversations.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("tenant_id", sa.String(128), nullable=False),
        sa.Column("agent_id", sa.String(128), nullable=False),
        sa.Column("message_count", sa.Integer, nullable=False),
        sa.Column("user_messages", sa.Integer, nullable=False),
        sa.Column("assistant_messages", sa.Integer, nullable=False),
        sa.Column("tokens_in", sa.Integer, nullable=False),
        sa.Column("tokens_out", sa.Integer, nullable=False),
        sa.Column("duration", sa.Float, nullable=False),
        sa.Column("first_response_seconds", sa.Float),
        sa.Column("satisfaction", sa.Float),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("ended_at", sa.DateTime(timezone=True)),
    )
    op.create_index(
        "ix_conversation_stats_tenant_started", "conversation_stats", ["tenant_id", "started_at"]
    )
    op.create_index(
        "ix_conversation_stats_tenant_agent_started",
        "conversation_stats",
        ["tenant_id", "agent_id", "started_at"],
    )

    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("tenant_id", sa.String(128)),
        sa.Column("is_admin", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("label", sa.String(200)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_api_keys_tenant", "api_keys", ["tenant_id"])

    op.create_table(
        "dead_letters",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("task_id", sa.String(64)),
        sa.Column("task_name", sa.String(128), nullable=False),
        sa.Column("queue", sa.String(64), nullable=False),
        sa.Column("kwargs", JSONB, nullable=False),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("reasons", JSONB),
        sa.Column("traceback", sa.Text),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="1"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("replayed_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_dead_letters_created", "dead_letters", ["created_at"])


def downgrade() -> None:
    for table in ("dead_letters", "api_keys", "conversation_stats", "messages", "conversations"):
        op.drop_table(table)
