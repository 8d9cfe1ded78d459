"""Full-text search over messages: one tsvector per message in every configured language (so a
query stemmed by any of them matches), behind a GIN expression index.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""
from __future__ import annotations

from alembic import op

from conversation.adapters.search_sql import (
    DEFAULT_LANGUAGES,
    create_index_sql,
    drop_sql,
    search_function_sql,
)

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(search_function_sql(DEFAULT_LANGUAGES))
    op.execute(create_index_sql())


def downgrade() -> None:
    for statement in drop_sql():
        op.execute(statement)
