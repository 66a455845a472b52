"""schedule approval: when an issue was approved, and whether an editor has taken it over

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26 02:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("issues") as batch:
        # When the issue was last approved (UTC): an approval to go at once is late after
        # late_after hours like any other send time. Empty for issues approved before this.
        batch.add_column(sa.Column("approved_at", sa.DateTime(timezone=True), nullable=True))
        # An editor saved, approved or cancelled it: scheduled runs no longer approve or send
        # the draft by themselves.
        batch.add_column(
            sa.Column("editor_took_over", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("issues") as batch:
        batch.drop_column("editor_took_over")
        batch.drop_column("approved_at")
