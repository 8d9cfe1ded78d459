"""Days whose satisfaction_sum is not finite are noted for the statistics task to recompute.

Issue 15: before satisfaction was held to -100..100, a rating such as 1e308 was stored, and the
day's sum overflowed to infinity, so its average read null for good (the rollup only recomputes
days a change notes). The rollup now ignores off-scale ratings; noting those days in
`stats_changes` makes the next `conversation.aggregate_stats` rebuild them from
`conversation_stats`. Nothing is changed in place, so the repair is the rollup's own code.

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
    """)


def downgrade() -> None:
    """Nothing to undo: the noted days are recomputed (or stay noted) either way."""
