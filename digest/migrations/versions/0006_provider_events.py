"""provider events: what the mail provider reported about each message, once per event id

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 00:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "provider_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sg_event_id", sa.String(length=100), nullable=False),
        sa.Column("event", sa.String(length=40), nullable=False),
        sa.Column("issue_id", sa.Integer(), nullable=True),
        sa.Column("subscriber_id", sa.Integer(), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("raw", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("sg_event_id", name="uq_provider_events_sg_event_id"),
    )
    op.create_index("ix_provider_events_issue_event", "provider_events", ["issue_id", "event"])


def downgrade() -> None:
    op.drop_index("ix_provider_events_issue_event", table_name="provider_events")
    op.drop_table("provider_events")
