"""Search at ten times the data: message_search in recency order within the tenant.

Issue 18 (`make bench-scale`, 10 M messages): a common word's search ranked every match of the
tenant (~166 k of 'refund' in the largest tenant: ~1 s, growing with the data). The search now
ranks the tenant's newest 1,000 matches (then the older ones, newest first:
conversation/queries/search.py), and finds them, for a word common in the tenant's recent
messages, by walking its messages newest first and stopping at the 1,000th match: this index
gives that walk (and the sample of the newest rows that decides on it). A rare word's matches
still come from the GIN index on (tenant_id, vector).

Built CONCURRENTLY (outside the migration's transaction), as 0010's: saves, migrations and the
indexer go on writing while it builds (about a minute at 10 M messages). An interrupted build's
INVALID index is dropped and built again.

Revision ID: 0011_search_scale
Revises: 0010_scale
Create Date: 2026-12-01
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_search_scale"
down_revision = "0010_scale"
branch_labels = None
depends_on = None

INDEX = "ix_message_search_tenant_created"


def upgrade() -> None:
    with op.get_context().autocommit_block():
        invalid = op.get_bind().execute(
            sa.text("SELECT NOT indisvalid FROM pg_index WHERE indexrelid = to_regclass(:name)"),
            {"name": INDEX}).scalar()
        if invalid:
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX}")
        op.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {INDEX} "
                   "ON message_search (tenant_id, created_at)")


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX}")
