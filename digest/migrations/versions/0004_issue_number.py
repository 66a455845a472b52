"""issue numbers: each digest counts its issues 1, 2, 3, … for the email header

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 22:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("issues") as batch:
        batch.add_column(sa.Column("number", sa.Integer(), nullable=False, server_default="0"))
    # Existing issues are numbered in the order they were built, per digest.
    op.execute(
        "UPDATE issues SET number = (SELECT COUNT(*) FROM issues AS earlier"
        " WHERE earlier.digest = issues.digest AND earlier.id <= issues.id)"
    )


def downgrade() -> None:
    with op.batch_alter_table("issues") as batch:
        batch.drop_column("number")
