"""Per-tenant retention; indexes for retention and for sessions looked up in outages.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tenant_retention",
        sa.Column("tenant_id", sa.String(128), primary_key=True),
        sa.Column("days", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_conversations_tenant_last_message", "conversations",
                    ["tenant_id", "last_message_at"])
    # Who owns a session, asked while Redis is down.
    op.create_index("ix_conversations_session", "conversations", ["session_id"])


def downgrade() -> None:
    op.drop_index("ix_conversations_session", "conversations")
    op.drop_index("ix_conversations_tenant_last_message", "conversations")
    op.drop_table("tenant_retention")
