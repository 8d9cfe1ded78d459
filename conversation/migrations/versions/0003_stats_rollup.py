"""Statistics rollup: per-conversation resolution and model, a change log filled by triggers,
daily rollup rows and the snapshot of active conversations.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# Every change to conversation_stats (migration, a late message, erasure, retention, a cascade)
# notes the (tenant, UTC day) buckets it touched; aggregate_stats recomputes exactly those.
# Statement-level triggers with transition tables: one INSERT per statement, not per row, and
# an append-only log, so writers never wait on the aggregator.
NOTE_CHANGES = """
CREATE FUNCTION note_stats_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO stats_changes (tenant_id, day)
        SELECT DISTINCT r.tenant_id, d.day FROM new_rows r,
            LATERAL (VALUES ((r.started_at AT TIME ZONE 'UTC')::date),
                            ((r.closed_at AT TIME ZONE 'UTC')::date)) AS d(day)
        WHERE d.day IS NOT NULL;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        INSERT INTO stats_changes (tenant_id, day)
        SELECT DISTINCT r.tenant_id, d.day FROM old_rows r,
            LATERAL (VALUES ((r.started_at AT TIME ZONE 'UTC')::date),
                            ((r.closed_at AT TIME ZONE 'UTC')::date)) AS d(day)
        WHERE d.day IS NOT NULL;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER conversation_stats_inserted AFTER INSERT ON conversation_stats
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION note_stats_change();
CREATE TRIGGER conversation_stats_updated AFTER UPDATE ON conversation_stats
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION note_stats_change();
CREATE TRIGGER conversation_stats_deleted AFTER DELETE ON conversation_stats
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION note_stats_change();
"""


def upgrade() -> None:
    op.add_column("conversation_stats", sa.Column("closed_at", sa.DateTime(timezone=True)))
    op.add_column("conversation_stats", sa.Column("resolution_seconds", sa.Float))
    op.add_column("conversation_stats", sa.Column(
        "model", sa.String(128), nullable=False, server_default="unknown"))
    op.create_index("ix_conversation_stats_tenant_closed", "conversation_stats",
                    ["tenant_id", "closed_at"])
    op.create_table(
        "stats_changes",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("tenant_id", sa.String(128), nullable=False),
        sa.Column("day", sa.Date, nullable=False),
    )
    op.create_table(
        "stats_daily",
        sa.Column("tenant_id", sa.String(128), nullable=False),
        sa.Column("day", sa.Date, nullable=False),
        # "*" stands for all agents / all models: the rows a tenant's totals read.
        sa.Column("agent_id", sa.String(128), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        *[sa.Column(name, sa.BigInteger, nullable=False, server_default="0")
          for name in ("started", "closed", "messages", "messages_in", "messages_out",
                       "tokens_in", "tokens_out", "rated")],
        sa.Column("satisfaction_sum", sa.Float, nullable=False, server_default="0"),
        *[sa.Column(name, JSONB, nullable=False, server_default="{}")
          for name in ("duration", "first_response", "resolution")],
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "agent_id", "model", "day", name="pk_stats_daily"),
    )
    op.create_table(
        "stats_active",
        sa.Column("tenant_id", sa.String(128), nullable=False),
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("agent_id", sa.String(128), nullable=False),
        sa.Column("conversations", sa.Integer, nullable=False),
        sa.Column("messages", sa.BigInteger, nullable=False),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "agent_id", "day", name="pk_stats_active"),
    )
    op.execute(NOTE_CHANGES)
    # Existing rows: fill the new columns; the update trigger notes their buckets.
    op.execute("""
        UPDATE conversation_stats s SET closed_at = c.closed_at,
            resolution_seconds = GREATEST(0, EXTRACT(EPOCH FROM c.closed_at - s.started_at))
        FROM conversations c WHERE c.id = s.conversation_id
    """)


def downgrade() -> None:
    for name in ("inserted", "updated", "deleted"):
        op.execute(f"DROP TRIGGER conversation_stats_{name} ON conversation_stats")
    op.execute("DROP FUNCTION note_stats_change()")
    op.drop_table("stats_active")
    op.drop_table("stats_daily")
    op.drop_table("stats_changes")
    op.drop_index("ix_conversation_stats_tenant_closed", "conversation_stats")
    for name in ("model", "resolution_seconds", "closed_at"):
        op.drop_column("conversation_stats", name)
