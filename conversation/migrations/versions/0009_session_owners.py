"""Session ids owned durably: `session_owners` records the tenant that first used each one.

Issue 15 (review): session ownership lived in Redis only (and, for sessions saved during an
outage, in `conversations`), so during an outage a session live only in Redis looked unowned
to PostgreSQL, and once a migrated session's Redis record expired another tenant could take
the id. Backfilled from `conversations`: the first tenant per session id by created_at.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "session_owners",
        sa.Column("session_id", sa.String(128), primary_key=True),
        sa.Column("tenant_id", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_session_owners_tenant", "session_owners", ["tenant_id"])
    op.execute(
        "INSERT INTO session_owners (session_id, tenant_id, created_at) "
        "SELECT DISTINCT ON (session_id) session_id, tenant_id, created_at "
        "FROM conversations ORDER BY session_id, created_at, id"
    )


def downgrade() -> None:
    op.drop_table("session_owners")
