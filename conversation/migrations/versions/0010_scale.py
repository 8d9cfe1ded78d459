"""Search at ten times the data: the GIN index of message_search leads with the tenant.

Issue 18 (`make bench-scale`, 10 M messages, 50 tenants): the GIN index on `vector` alone
found every tenant's messages holding the words, and the search then read each of them from
the heap to keep the tenant's: for a common word, most of the table. With btree_gin, one
index on (tenant_id, vector) finds the tenant's matches alone, and replaces the old one, so
the indexer maintains one GIN index as before. The search ranks and pages within message_search before
joining messages and conversations (conversation/queries/search.py).

`ix_messages_conversation_order` becomes (conversation_id, tenant_id, created_at, seq, id):
every read of a conversation's messages names its owner (a row of another tenant under the same
id is never read) and wants this order. With the conversation in one index and the tenant in
another, the planner intersected the conversation's entries with the whole tenant's (2.2 M for
the largest tenant at 10 M messages) and sorted the result, for the message count and each
chunk of a context read from PostgreSQL; one index holding both conditions and the whole order
reads the conversation's newest messages directly.

Built CONCURRENTLY (outside the migration's transaction), the new beside the old: saves,
migrations and the indexer go on writing, and reads keep an index, while they build (minutes
at 10 M messages; mind an interrupted build's INVALID index). btree_gin is a trusted extension (PostgreSQL 13+): the
database's owner may create it.

Revision ID: 0010_scale
Revises: 0010_satisfaction_repair
Create Date: 2026-12-01
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_scale"
down_revision = "0010_satisfaction_repair"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS btree_gin")
    with op.get_context().autocommit_block():
        _drop_if_invalid("ix_message_search_tenant_vector")
        op.execute("CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_message_search_tenant_vector "
                   "ON message_search USING gin (tenant_id, vector)")
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS ix_message_search_vector")
        _replace_index("ix_messages_conversation_order",
                       "conversation_id, tenant_id, created_at, seq, id")


def _replace_index(name: str, columns: str) -> None:
    """Build the new one beside the old under a temporary name, then swap: reads keep an index
    throughout. A `_new` already there is an interrupted run's (of either direction: its
    columns may be the other's), built again."""
    op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}_new")
    op.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name}_new ON messages ({columns})")
    op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
    op.execute(f"ALTER INDEX {name}_new RENAME TO {name}")


def _drop_if_invalid(name: str) -> None:
    """An interrupted CREATE INDEX CONCURRENTLY leaves its index INVALID (never read, still
    written): IF NOT EXISTS would keep it, and the index it replaces is then dropped."""
    invalid = op.get_bind().execute(
        sa.text("SELECT NOT indisvalid FROM pg_index WHERE indexrelid = to_regclass(:name)"),
        {"name": name}).scalar()
    if invalid:
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")


def downgrade() -> None:
    with op.get_context().autocommit_block():
        _replace_index("ix_messages_conversation_order", "conversation_id, created_at, seq")
        _drop_if_invalid("ix_message_search_vector")
        op.execute("CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_message_search_vector "
                   "ON message_search USING gin (vector)")
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS ix_message_search_tenant_vector")
    # btree_gin stays: other objects may use it by then.
