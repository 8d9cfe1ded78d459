"""Full-text search over messages, indexed off the write path.

`message_search` holds one tsvector per persisted message (in every configured language, so a
query stemmed by any of them matches) behind a GIN index. Computing those vectors costs more
than writing the message itself, so migrations do not: a trigger appends the conversations
whose messages changed to `search_pending`, and `conversation.index_search` (beat) indexes
them; until then the search computes their vectors on the fly.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import TSVECTOR

from conversation.adapters.search_sql import DEFAULT_LANGUAGES, search_function_sql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

NOTE_PENDING = """
CREATE FUNCTION note_search_pending() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO search_pending (conversation_id)
    SELECT DISTINCT conversation_id FROM new_rows;
    RETURN NULL;
END $$;
CREATE TRIGGER messages_search_pending AFTER INSERT ON messages
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION note_search_pending();
"""


def upgrade() -> None:
    op.execute(search_function_sql(DEFAULT_LANGUAGES))
    op.create_table(
        "message_search",
        sa.Column("conversation_id", sa.String(128), nullable=False),
        sa.Column("message_id", sa.String(128), nullable=False),
        sa.Column("tenant_id", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("vector", TSVECTOR, nullable=False),
        sa.PrimaryKeyConstraint("conversation_id", "message_id", name="pk_message_search"),
        sa.ForeignKeyConstraint(["conversation_id", "message_id"],
                                ["messages.conversation_id", "messages.id"],
                                ondelete="CASCADE", onupdate="CASCADE",
                                name="fk_message_search_message"),
    )
    op.create_index("ix_message_search_vector", "message_search", ["vector"],
                    postgresql_using="gin")
    # Append-only, like stats_changes: writers never wait for the indexer.
    op.create_table(
        "search_pending",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("conversation_id", sa.String(128), nullable=False),
    )
    op.create_index("ix_search_pending_conversation", "search_pending", ["conversation_id"])
    op.execute(NOTE_PENDING)
    op.execute("INSERT INTO search_pending (conversation_id) SELECT id FROM conversations")


def downgrade() -> None:
    op.execute("DROP TRIGGER messages_search_pending ON messages")
    op.execute("DROP FUNCTION note_search_pending()")
    op.drop_table("search_pending")
    op.drop_table("message_search")
    op.execute("DROP FUNCTION IF EXISTS message_search_vector(text)")
