"""The subscriber tables (SQLAlchemy Core); the digest migrations create them."""

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

lists = Table(
    "lists",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("title", String(200), nullable=False, default=""),
    Column("created", DateTime(timezone=True), nullable=False),
)

subscribers = Table(
    "subscribers",
    metadata,
    Column("id", Integer, primary_key=True),
    # Stored lower-cased (after IDN normalisation) so uniqueness is case-insensitive.
    Column("email", String(320), nullable=False, unique=True),
    Column("name", String(200), nullable=False, default=""),
    # pending | active | unsubscribed | bounced | complained (subscribers.models.PERSON_STATUSES)
    Column("status", String(20), nullable=False, default="active"),
    Column("created", DateTime(timezone=True), nullable=False),
    # Free-form facts about the person (a JSON object), e.g. from extra import columns.
    Column("attributes", JSON, nullable=False, default=dict, server_default="{}"),
    # Without AUTOINCREMENT SQLite hands an erased person's id to the next newcomer, and with it
    # the erased person's unsubscribe links, which carry only the id.
    sqlite_autoincrement=True,
)

subscriptions = Table(
    "subscriptions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("subscriber_id", ForeignKey("subscribers.id", ondelete="CASCADE"), nullable=False),
    Column("list_id", ForeignKey("lists.id", ondelete="CASCADE"), nullable=False),
    # Topic names chosen by the subscriber; an empty list means every topic.
    Column("topics", JSON, nullable=False, default=list),
    Column("frequency", String(20), nullable=False, default="weekly"),
    Column("status", String(20), nullable=False, default="active"),  # pending|active|unsubscribed
    Column("updated", DateTime(timezone=True), nullable=False),
    UniqueConstraint("subscriber_id", "list_id", name="uq_subscriptions_subscriber_list"),
)

consent_events = Table(
    "consent_events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("subscriber_id", ForeignKey("subscribers.id", ondelete="CASCADE"), nullable=False),
    Column("list_id", ForeignKey("lists.id", ondelete="CASCADE"), nullable=True),
    # requested | confirmed | subscribed | imported | preferences | unsubscribed
    Column("action", String(40), nullable=False),
    Column("note", Text, nullable=False, default=""),  # free text: how, what changed
    Column("at", DateTime(timezone=True), nullable=False),
    # The request behind the event (subscribers.models.Consent): the form or channel, the
    # consent wording shown, and who sent it.
    Column("source", String(100), nullable=False, default="", server_default=""),
    Column("wording", Text, nullable=False, default="", server_default=""),
    Column("ip", String(64), nullable=False, default="", server_default=""),
    Column("user_agent", String(500), nullable=False, default="", server_default=""),
    Index("ix_consent_events_subscriber", "subscriber_id"),
)

suppressions = Table(
    "suppressions",
    metadata,
    Column("email", String(320), primary_key=True),
    Column("reason", String(40), nullable=False),  # bounce | spamreport | manual | erased
    Column("at", DateTime(timezone=True), nullable=False),
)
