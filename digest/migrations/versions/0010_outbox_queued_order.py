"""outbox: index the queued rows of an issue in id order

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-26 05:00:00
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A sender reads an issue's queued rows a batch at a time in id order (`id > last`).
    # With (issue_id, state) alone PostgreSQL read and sorted every queued row for each
    # batch, a time that grew with the square of the send; with id last in the index each
    # batch is one range read.
    op.create_index("ix_outbox_issue_state_id", "outbox", ["issue_id", "state", "id"])
    op.drop_index("ix_outbox_issue_state", table_name="outbox")


def downgrade() -> None:
    op.create_index("ix_outbox_issue_state", "outbox", ["issue_id", "state"])
    op.drop_index("ix_outbox_issue_state_id", table_name="outbox")
