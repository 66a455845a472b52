"""paragraph counts per source, for learned boilerplate

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 20:10:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "source_paragraphs",
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.Column("fingerprint", sa.String(length=32), nullable=False),
        sa.Column("articles", sa.Integer(), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("source", "fingerprint"),
    )


def downgrade() -> None:
    op.drop_table("source_paragraphs")
