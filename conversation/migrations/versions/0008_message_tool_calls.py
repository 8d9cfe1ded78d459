"""Tool calls: an assistant message's `tool_calls`, a tool message's `tool_call_id`.

Issue 17: both are stored with the message (Chat Completions' shape, jsonb for the calls) and
come back wherever the message does. Nullable, no default: adding them rewrites no row.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("messages", sa.Column("tool_calls", JSONB))
    op.add_column("messages", sa.Column("tool_call_id", sa.Text))


def downgrade() -> None:
    op.drop_column("messages", "tool_call_id")
    op.drop_column("messages", "tool_calls")
