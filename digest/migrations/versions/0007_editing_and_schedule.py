"""editing and scheduling: a subject the editor may set, pinned items, a send time

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26 01:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("issues") as batch:
        # Empty: the template's own subject (the title).
        batch.add_column(sa.Column("subject", sa.Text(), nullable=False, server_default=""))
        # An approved issue goes out at this time (UTC), or at once when it is empty.
        batch.add_column(sa.Column("send_after", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("issue_items") as batch:
        batch.add_column(
            sa.Column("pinned", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("issue_items") as batch:
        batch.drop_column("pinned")
    with op.batch_alter_table("issues") as batch:
        batch.drop_column("send_after")
        batch.drop_column("subject")
