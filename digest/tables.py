"""The digest's own tables (SQLAlchemy Core); Alembic migrations create them."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    Boolean,
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
from sqlalchemy.sql.expression import false
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC, returns aware UTC datetimes on every backend (SQLite forgets the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} reached the database")
        return value.astimezone(UTC).replace(tzinfo=None) if _is_sqlite(dialect) else value

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _is_sqlite(dialect: object) -> bool:
    return getattr(dialect, "name", "") == "sqlite"


metadata = MetaData()

sources = Table(
    "sources",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("location", Text, nullable=False),
    Column("etag", String(500), nullable=False, default=""),
    Column("last_modified", String(100), nullable=False, default=""),
    Column("last_attempt", UTCDateTime, nullable=True),
    Column("last_success", UTCDateTime, nullable=True),
    Column("failures", Integer, nullable=False, default=0),
    Column("last_error", Text, nullable=False, default=""),
    Column("defect", Text, nullable=False, default=""),
    Column("articles_seen", Integer, nullable=False, default=0),
)

articles = Table(
    "articles",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("source", String(200), nullable=False),
    Column("url", Text, nullable=False),
    Column("canonical_url", String(2000), nullable=False, unique=True),
    Column("guid", String(2000), nullable=False, default=""),
    Column("title", Text, nullable=False),
    Column("summary", Text, nullable=False, default=""),
    Column("text", Text, nullable=False, default=""),
    Column("html", Text, nullable=False, default=""),
    Column("author", String(500), nullable=False, default=""),
    Column("language", String(20), nullable=False, default=""),
    Column("image", Text, nullable=False, default=""),
    Column("categories", JSON, nullable=False, default=list),
    Column("also_in", JSON, nullable=False, default=list),
    Column("origin", String(200), nullable=False, default=""),
    Column("published", UTCDateTime, nullable=True),
    Column("fetched", UTCDateTime, nullable=False),
    Index("ix_articles_published", "published"),
)

# How many distinct articles of a source carried each paragraph; recurring ones are boilerplate.
source_paragraphs = Table(
    "source_paragraphs",
    metadata,
    Column("source", String(200), primary_key=True),
    Column("fingerprint", String(32), primary_key=True),
    Column("articles", Integer, nullable=False),
    Column("last_seen", UTCDateTime, nullable=False),
)

issues = Table(
    "issues",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("digest", String(100), nullable=False),
    Column("period_key", String(40), nullable=False),
    Column("title", Text, nullable=False),
    Column("intro", Text, nullable=False, default=""),
    # 1, 2, 3, … per digest, in the order issues are built; shown in the email header.
    Column("number", Integer, nullable=False, server_default="0"),
    # The editor's subject line; empty means the template's own (the issue's title).
    Column("subject", Text, nullable=False, server_default=""),
    # An approved issue is sent at this time, or at once when it is NULL.
    Column("send_after", UTCDateTime, nullable=True),
    # When it was last approved; lateness of an issue approved to go at once counts from it.
    Column("approved_at", UTCDateTime, nullable=True),
    # An editor saved, approved or cancelled it: scheduled runs leave its draft alone.
    Column("editor_took_over", Boolean, nullable=False, server_default=false()),
    # draft → approved → sending → sent | cancelled
    Column("status", String(20), nullable=False, default="draft"),
    Column("created", UTCDateTime, nullable=False),
    Column("updated", UTCDateTime, nullable=False),
    # Two schedulers (or a cron run beside `digest serve`) cannot build the same period twice.
    UniqueConstraint("digest", "period_key", name="uq_issues_digest_period"),
)

issue_items = Table(
    "issue_items",
    metadata,
    Column("issue_id", ForeignKey("issues.id", ondelete="CASCADE"), primary_key=True),
    Column("article_id", ForeignKey("articles.id"), primary_key=True),
    Column("position", Integer, nullable=False),
    Column("section", String(200), nullable=False),
    # Pinned items stay first in their section whatever the ranking does.
    Column("pinned", Boolean, nullable=False, server_default=false()),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("issue_id", ForeignKey("issues.id", ondelete="CASCADE"), nullable=False),
    Column("subscriber_id", Integer, nullable=False),
    Column("email", String(320), nullable=False),
    Column("topics", JSON, nullable=False, default=list),
    # queued → sending → sent | failed | unknown
    Column("state", String(20), nullable=False, default="queued"),
    Column("attempts", Integer, nullable=False, default=0),
    Column("message_id", String(300), nullable=False, default=""),
    Column("provider_id", String(300), nullable=False, default=""),
    Column("last_error", Text, nullable=False, default=""),
    Column("updated", UTCDateTime, nullable=False),
    UniqueConstraint("issue_id", "subscriber_id", name="uq_outbox_issue_subscriber"),
    Index("ix_outbox_issue_state_id", "issue_id", "state", "id"),
)

# What the mail provider reported about each message (the SendGrid event webhook). Providers
# deliver events more than once: the unique event id makes a retried delivery change nothing.
# No foreign keys: an event may name an issue or subscriber this database never had.
provider_events = Table(
    "provider_events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("sg_event_id", String(100), nullable=False),
    # delivered | open | click | deferred | bounce | dropped | spamreport | unsubscribe | …
    Column("event", String(40), nullable=False),
    Column("issue_id", Integer, nullable=True),
    Column("subscriber_id", Integer, nullable=True),
    Column("email", String(320), nullable=False, default=""),
    Column("at", UTCDateTime, nullable=False),
    # The event as received, cut short: for an operator to read, not for code to parse.
    Column("raw", Text, nullable=False, default=""),
    UniqueConstraint("sg_event_id", name="uq_provider_events_sg_event_id"),
    Index("ix_provider_events_issue_event", "issue_id", "event"),
)

# Who is logged in to the editor pages: one row per session, keyed by the SHA-256 of the random
# id the browser's cookie holds (a copy of this table lets nobody in). Logging out deletes it.
editor_sessions = Table(
    "editor_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("created", UTCDateTime, nullable=False),
    Column("expires", UTCDateTime, nullable=False),
)
