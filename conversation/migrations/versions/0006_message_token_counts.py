"""Messages' costs in encodings other than the one they were counted in at save time.

CONTRACT.md: each message's count is computed once per encoding and stored with it, on first
use for an encoding other than its save-time one. Active conversations keep these in Redis
(they go with the conversation's keys); this table keeps them for persisted ones, and loses
them with their message.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "message_token_counts",
        sa.Column("conversation_id", sa.String(128), nullable=False),
        sa.Column("message_id", sa.String(128), nullable=False),
        sa.Column("encoding", sa.String(32), nullable=False),
        sa.Column("tokens", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("conversation_id", "message_id", "encoding",
                                name="pk_message_token_counts"),
        sa.ForeignKeyConstraint(["conversation_id", "message_id"],
                                ["messages.conversation_id", "messages.id"],
                                ondelete="CASCADE", onupdate="CASCADE",
                                name="fk_message_token_counts_message"),
    )


def downgrade() -> None:
    op.drop_table("message_token_counts")
