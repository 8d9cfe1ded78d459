"""Dead letters keep the whole payload a replay sends, out of line when `kwargs` cannot.

Issue 15: past 256 KB a dead letter kept only a preview in `kwargs`, so `dlq replay` could not
send it. `payload` holds the exact kwargs (zlib-compressed JSON) whenever `kwargs` is a preview;
`replayable` is false for a letter never meant to be replayed (an over-size task, kept only as a
preview), which replay skips.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("dead_letters", sa.Column("payload", sa.LargeBinary))
    op.add_column("dead_letters", sa.Column("replayable", sa.Boolean, nullable=False,
                                            server_default=sa.true()))


def downgrade() -> None:
    op.drop_column("dead_letters", "replayable")
    op.drop_column("dead_letters", "payload")
