"""subscribers: double opt-in statuses, person attributes, a fuller consent log

People become pending | active | unsubscribed | bounced | complained; each consent event keeps
its source, the wording shown, the IP and the user agent; on SQLite subscriber ids are never
reused (AUTOINCREMENT), since unsubscribe links carry only the id.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 10:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _consent_columns() -> list[sa.Column]:
    """What each consent event gains: the request's channel, wording shown, IP, user agent."""
    return [
        sa.Column("source", sa.String(length=100), nullable=False, server_default=""),
        sa.Column("wording", sa.Text(), nullable=False, server_default=""),
        sa.Column("ip", sa.String(length=64), nullable=False, server_default=""),
        sa.Column("user_agent", sa.String(length=500), nullable=False, server_default=""),
    ]


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_subscribers_with_autoincrement()
    with op.batch_alter_table("subscribers") as batch:
        batch.add_column(sa.Column("attributes", sa.JSON(), nullable=False, server_default="{}"))
    with op.batch_alter_table("consent_events") as batch:
        for column in _consent_columns():
            batch.add_column(column)
    _backfill_consent_sources()
    _backfill_person_statuses()


def downgrade() -> None:
    # Before this revision a person was active or blocked; blocked people were never mailed.
    op.execute("UPDATE subscribers SET status = 'blocked' WHERE status <> 'active'")
    op.execute("UPDATE subscriptions SET status = 'unsubscribed' WHERE status = 'pending'")
    with op.batch_alter_table("consent_events") as batch:
        for column in _consent_columns():
            batch.drop_column(column.name)
    # Not in batch mode: rebuilding `subscribers` on SQLite would cascade-delete its children.
    # SQLite (3.35+) drops a plain column in place. AUTOINCREMENT stays; it harms nothing.
    op.drop_column("subscribers", "attributes")


def _rebuild_subscribers_with_autoincrement() -> None:
    """Recreate `subscribers` as AUTOINCREMENT, keeping every row and every reference to it.

    SQLite cannot add AUTOINCREMENT in place, and dropping the old table while foreign keys
    are on (they are, and cannot be turned off inside the migration's transaction) would
    delete the rows that reference it. So the two child tables are parked in plain copies,
    dropped, and rebuilt after the parent.
    """
    for child in ("subscriptions", "consent_events"):
        op.execute(f"CREATE TABLE _parked_{child} AS SELECT * FROM {child}")
    op.drop_index("ix_consent_events_subscriber", table_name="consent_events")
    op.drop_table("consent_events")
    op.drop_table("subscriptions")
    with op.batch_alter_table(
        "subscribers", recreate="always", table_kwargs={"sqlite_autoincrement": True}
    ):
        pass
    op.create_table(
        "subscriptions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("list_id", sa.Integer(), nullable=False),
        sa.Column("topics", sa.JSON(), nullable=False),
        sa.Column("frequency", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("updated", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["list_id"], ["lists.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["subscriber_id"], ["subscribers.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("subscriber_id", "list_id", name="uq_subscriptions_subscriber_list"),
    )
    op.create_table(
        "consent_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("list_id", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["list_id"], ["lists.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["subscriber_id"], ["subscribers.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_consent_events_subscriber", "consent_events", ["subscriber_id"])
    op.execute(
        "INSERT INTO subscriptions (id, subscriber_id, list_id, topics, frequency, status,"
        " updated) SELECT id, subscriber_id, list_id, topics, frequency, status, updated"
        " FROM _parked_subscriptions"
    )
    op.execute(
        "INSERT INTO consent_events (id, subscriber_id, list_id, action, note, at)"
        " SELECT id, subscriber_id, list_id, action, note, at FROM _parked_consent_events"
    )
    op.drop_table("_parked_subscriptions")
    op.drop_table("_parked_consent_events")


def _backfill_consent_sources() -> None:
    """Older events kept only a note; name their channel as the code that wrote them did."""
    op.execute("UPDATE consent_events SET source = 'import' WHERE action = 'imported'")
    op.execute("UPDATE consent_events SET source = 'operator' WHERE action = 'subscribed'")
    # An unsubscribe's note was how it came in (one-click, link, mailto).
    op.execute("UPDATE consent_events SET source = note WHERE action = 'unsubscribed'")


def _backfill_person_statuses() -> None:
    """Give existing people the status the service now keeps for them."""
    op.execute("UPDATE subscribers SET status = 'unsubscribed' WHERE status = 'blocked'")
    # A suppressed address: bounced, complained, or withdrawn for another reason.
    for status, reasons in (("bounced", "'bounce'"), ("complained", "'spamreport', 'complaint'")):
        op.execute(
            f"UPDATE subscribers SET status = '{status}' WHERE EXISTS (SELECT 1 FROM suppressions"
            f" WHERE suppressions.email = subscribers.email AND suppressions.reason IN ({reasons}))"
        )
    op.execute(
        "UPDATE subscribers SET status = 'unsubscribed' WHERE status = 'active' AND EXISTS"
        " (SELECT 1 FROM suppressions WHERE suppressions.email = subscribers.email)"
    )
    # Someone who left every list they were on has unsubscribed as a person.
    op.execute(
        "UPDATE subscribers SET status = 'unsubscribed' WHERE status = 'active'"
        " AND EXISTS (SELECT 1 FROM subscriptions WHERE subscriber_id = subscribers.id)"
        " AND NOT EXISTS (SELECT 1 FROM subscriptions WHERE subscriber_id = subscribers.id"
        " AND status = 'active')"
    )
