"""Days that hold an off-scale satisfaction rating are noted for the statistics task to recompute.

Issue 15: before satisfaction was held to -100..100, any number was stored as a rating: 1e308
made the day's sum overflow to infinity (its average null for good), 500 or -1e6 left a finite
sum and a wrong average (the rollup only recomputes days a change notes). The rollup now ignores
off-scale ratings; noting those days in `stats_changes` makes the next
`conversation.aggregate_stats` rebuild them from `conversation_stats`. The days are found by the
ratings stored there (a rating counts on the day its conversation started, in UTC, as the
rollup's trigger dates it), and by a sum that is not finite. Nothing is changed in place, so the
repair is the rollup's own code. One sequential read of each table, no lock beyond reading.

Revision ID: 0010_satisfaction_repair
Revises: 0009
Create Date: 2026-12-01
"""
from __future__ import annotations

from alembic import op

revision = "0010_satisfaction_repair"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # PostgreSQL compares its float specials as values: 'NaN' equals 'NaN' here.
    op.execute("""
        INSERT INTO stats_changes (tenant_id, day)
        SELECT DISTINCT tenant_id, day FROM stats_daily
        WHERE satisfaction_sum IN ('Infinity'::float8, '-Infinity'::float8, 'NaN'::float8)
        UNION
        SELECT tenant_id, (started_at AT TIME ZONE 'UTC')::date FROM conversation_stats
        WHERE started_at IS NOT NULL AND satisfaction IS NOT NULL
          AND NOT (satisfaction BETWEEN -100 AND 100)  -- NaN sorts above every number
    """)


def downgrade() -> None:
    """Nothing to undo: the noted days are recomputed (or stay noted) either way."""
