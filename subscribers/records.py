"""Subscriber rows: the lookups and small writes the service's rules are built from.

Rows become the frozen dataclasses of subscribers.models here; the callers own the transaction.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql, sqlite

from subscribers.checks import FREQUENCIES, MAX_LIST_NAME, aware, normalise_email, utc
from subscribers.errors import SubscriberError, UnknownList
from subscribers.models import Consent, Recipient, Subscriber, SubscriberRow, Subscription
from subscribers.tables import consent_events, lists, subscribers, subscriptions, suppressions

# The natural key of each table rows are inserted into "if absent".
_UNIQUE_KEYS = {
    "subscribers": ["email"],
    "subscriptions": ["subscriber_id", "list_id"],
    "suppressions": ["email"],
}


def ensure_list(conn: Connection, name: str, *, title: str = "", now: datetime) -> int:
    """The id of the list `name`, created if missing; a non-empty `title` replaces the old one."""
    if not name or name != name.strip() or len(name) > MAX_LIST_NAME:
        raise SubscriberError(
            f"list name {name!r} must be 1-{MAX_LIST_NAME} characters without surrounding spaces"
        )
    row = conn.execute(sa.select(lists.c.id, lists.c.title).where(lists.c.name == name)).first()
    if row is None:
        inserted = conn.execute(sa.insert(lists).values(name=name, title=title, created=utc(now)))
        return int(inserted.inserted_primary_key[0])
    if title and title != row.title:
        conn.execute(sa.update(lists).where(lists.c.id == row.id).values(title=title))
    return int(row.id)


def require_list(conn: Connection, list_name: str) -> int:
    """The id of an existing list; UnknownList names the lists there are."""
    found = conn.execute(sa.select(lists.c.id).where(lists.c.name == list_name)).scalar()
    if found is None:
        names = conn.execute(sa.select(lists.c.name).order_by(lists.c.name)).scalars().all()
        known = ", ".join(names) if names else "there are no lists yet"
        raise UnknownList(f"no list named {list_name!r} (known: {known})")
    return int(found)


def audience_for(conn: Connection, list_name: str, *, cadence: str = "all") -> list[Recipient]:
    """Who gets the list's next issue: active people, actively subscribed, not suppressed.

    `cadence` is the issuing digest's: "all" reaches every frequency but "paused"; "daily" or
    "weekly" reaches those who chose it and those who want each issue. Ordered by subscriber
    id, so a resumed send walks the same order.
    """
    target = require_list(conn, list_name)
    wanted = (
        ("each", cadence) if cadence != "all" else tuple(f for f in FREQUENCIES if f != "paused")
    )
    query = (
        sa.select(subscribers.c.id, subscribers.c.email, subscribers.c.name, subscriptions.c.topics)
        .join(subscriptions, subscriptions.c.subscriber_id == subscribers.c.id)
        .where(
            subscriptions.c.list_id == target,
            subscriptions.c.status == "active",
            subscriptions.c.frequency.in_(wanted),
            subscribers.c.status == "active",
            ~sa.exists().where(suppressions.c.email == subscribers.c.email),
        )
        .order_by(subscribers.c.id)
    )
    return [
        Recipient(
            subscriber_id=row.id, email=row.email, name=row.name, topics=tuple(row.topics or ())
        )
        for row in conn.execute(query)
    ]


def find_subscription(conn: Connection, subscriber_id: int, list_name: str) -> Subscription | None:
    """One person's subscription to a list, whatever its status; None if there is none."""
    found = _subscriptions_query().where(
        subscriptions.c.subscriber_id == subscriber_id, lists.c.name == list_name
    )
    row = conn.execute(found).first()
    return _subscription(row) if row is not None else None


def subscriptions_of(conn: Connection, subscriber_id: int) -> list[Subscription]:
    """Every subscription of one person, whatever its status, by list name."""
    query = (
        _subscriptions_query()
        .where(subscriptions.c.subscriber_id == subscriber_id)
        .order_by(lists.c.name)
    )
    return [_subscription(row) for row in conn.execute(query)]


def find_person(conn: Connection, email: str) -> Subscriber | None:
    """The person with this address (any spelling of it), or None."""
    row = conn.execute(
        sa.select(subscribers).where(subscribers.c.email == normalise_email(email))
    ).first()
    return _subscriber(row) if row is not None else None


def subscription_status(conn: Connection, address: str, list_id: int) -> str | None:
    """The status of a normalised address's subscription to a list, or None if it has none."""
    return conn.execute(
        sa.select(subscriptions.c.status)
        .join(subscribers, subscribers.c.id == subscriptions.c.subscriber_id)
        .where(subscribers.c.email == address, subscriptions.c.list_id == list_id)
    ).scalar()


def list_subscribers(conn: Connection, list_name: str | None = None) -> list[SubscriberRow]:
    """Everyone, one row per subscription (people on no list once, with list ""), by list and email.

    With `list_name`, only that list's subscriptions, whatever their status.
    """
    return list(iter_subscribers(conn, list_name))


def iter_subscribers(conn: Connection, list_name: str | None = None) -> Iterator[SubscriberRow]:
    """`list_subscribers` as a stream, fetched a thousand rows at a time (memory stays flat)."""
    is_suppressed = (
        sa.exists().where(suppressions.c.email == subscribers.c.email).label("is_suppressed")
    )
    query = (
        sa.select(
            subscribers.c.email,
            subscribers.c.name,
            subscribers.c.status.label("person_status"),
            subscribers.c.attributes,
            lists.c.name.label("list_name"),
            subscriptions.c.topics,
            subscriptions.c.frequency,
            subscriptions.c.status.label("subscription_status"),
            is_suppressed,
        )
        .select_from(
            subscribers.outerjoin(
                subscriptions, subscriptions.c.subscriber_id == subscribers.c.id
            ).outerjoin(lists, lists.c.id == subscriptions.c.list_id)
        )
        .order_by(sa.func.coalesce(lists.c.name, ""), subscribers.c.email)
    )
    if list_name is not None:
        query = query.where(subscriptions.c.list_id == require_list(conn, list_name))
    for row in conn.execute(query.execution_options(yield_per=1000)):
        yield SubscriberRow(
            email=row.email,
            name=row.name,
            list=row.list_name or "",
            topics=tuple(row.topics or ()),
            status=_listing_status(
                row.person_status, bool(row.is_suppressed), row.subscription_status
            ),
            cadence=row.frequency or "",
            attributes=dict(row.attributes or {}),
        )


def is_suppressed(conn: Connection, email: str) -> bool:
    """Whether the address is on the do-not-mail list."""
    return suppression_reason(conn, normalise_email(email)) is not None


@dataclass(frozen=True, slots=True)
class Standing:
    """A known person, their subscription to one list (if any) and their address's suppression."""

    person: Subscriber
    subscription_id: int | None
    subscription_status: str | None
    suppressed_for: str | None


def standing(conn: Connection, address: str, list_id: int) -> Standing | None:
    """Where a normalised address stands with one list, in one query; None for a stranger."""
    row = conn.execute(
        sa.select(
            subscribers,
            subscriptions.c.id.label("subscription_id"),
            subscriptions.c.status.label("subscription_status"),
            suppressions.c.reason.label("suppressed_for"),
        )
        .select_from(
            subscribers.outerjoin(
                subscriptions,
                sa.and_(
                    subscriptions.c.subscriber_id == subscribers.c.id,
                    subscriptions.c.list_id == list_id,
                ),
            ).outerjoin(suppressions, suppressions.c.email == subscribers.c.email)
        )
        .where(subscribers.c.email == address)
    ).first()
    if row is None:
        return None
    return Standing(
        person=_subscriber(row),
        subscription_id=row.subscription_id,
        subscription_status=row.subscription_status,
        suppressed_for=row.suppressed_for,
    )


def update_person(
    conn: Connection,
    person: Subscriber,
    name: str,
    attributes: dict[str, Any] | None,
    status: str,
) -> Subscriber:
    """A non-empty name replaces theirs, attributes are merged in, the status is set."""
    changed = replace(
        person,
        name=name or person.name,
        status=status,
        attributes={**person.attributes, **(attributes or {})},
    )
    if (changed.name, changed.status, changed.attributes) != (
        person.name,
        person.status,
        person.attributes,
    ):
        conn.execute(
            sa.update(subscribers)
            .where(subscribers.c.id == person.id)
            .values(name=changed.name, status=changed.status, attributes=changed.attributes)
        )
    return changed


def set_person_status(conn: Connection, subscriber_id: int, status: str) -> None:
    """Set a person's status (one of subscribers.models.PERSON_STATUSES)."""
    conn.execute(
        sa.update(subscribers).where(subscribers.c.id == subscriber_id).values(status=status)
    )


def mark_unsubscribed_if_on_no_list(conn: Connection, subscriber_id: int) -> None:
    """An active or pending person with no active or pending subscription left has unsubscribed."""
    still_on_a_list = (
        sa.exists()
        .where(
            subscriptions.c.subscriber_id == subscriber_id,
            subscriptions.c.status.in_(("active", "pending")),
        )
        .correlate(None)
    )
    conn.execute(
        sa.update(subscribers)
        .where(
            subscribers.c.id == subscriber_id,
            subscribers.c.status.in_(("active", "pending")),
            ~still_on_a_list,
        )
        .values(status="unsubscribed")
    )


def suppression_reason(conn: Connection, address: str) -> str | None:
    """Why a normalised address is on the do-not-mail list, or None if it is not."""
    return conn.execute(
        sa.select(suppressions.c.reason).where(suppressions.c.email == address)
    ).scalar()


def lift_suppression(conn: Connection, address: str) -> str | None:
    """Take the address off the do-not-mail list; the reason it was on it, or None."""
    reason = suppression_reason(conn, address)
    if reason is not None:
        conn.execute(sa.delete(suppressions).where(suppressions.c.email == address))
    return reason


def subscription_row(conn: Connection, subscriber_id: int, list_name: str) -> sa.Row | None:
    """(id, list_id, status) of one subscription, or None."""
    return conn.execute(
        sa.select(subscriptions.c.id, subscriptions.c.list_id, subscriptions.c.status)
        .join(lists, lists.c.id == subscriptions.c.list_id)
        .where(subscriptions.c.subscriber_id == subscriber_id, lists.c.name == list_name)
    ).first()


def record_consent(
    conn: Connection,
    subscriber_id: int,
    list_id: int | None,
    action: str,
    at: datetime,
    *,
    consent: Consent,
    note: str = "",
) -> None:
    """Add one event to the consent log."""
    conn.execute(
        sa.insert(consent_events).values(
            subscriber_id=subscriber_id,
            list_id=list_id,
            action=action,
            note=note,
            at=at,
            source=consent.source,
            wording=consent.wording,
            ip=consent.ip,
            user_agent=consent.user_agent,
        )
    )


def consent_log(conn: Connection, subscriber_id: int) -> list[dict[str, Any]]:
    """A person's consent events, oldest first, as JSON-ready data."""
    query = (
        sa.select(consent_events, lists.c.name.label("list_name"))
        .select_from(consent_events.outerjoin(lists, lists.c.id == consent_events.c.list_id))
        .where(consent_events.c.subscriber_id == subscriber_id)
        .order_by(consent_events.c.id)
    )
    return [
        {
            "at": aware(row.at).isoformat(),
            "action": row.action,
            "list": row.list_name or "",
            "source": row.source,
            "wording": row.wording,
            "ip": row.ip,
            "user_agent": row.user_agent,
            "note": row.note,
        }
        for row in conn.execute(query)
    ]


def insert_if_absent(conn: Connection, table: sa.Table, values: Mapping[str, Any]) -> bool:
    """Insert a row unless one with the same natural key exists; True if it was inserted."""
    keys = _UNIQUE_KEYS[table.name]
    insert = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}.get(conn.dialect.name)
    if insert is None:
        statement = sa.insert(table).values(values)
    else:
        statement = insert(table).values(values).on_conflict_do_nothing(index_elements=keys)
    return conn.execute(statement).rowcount == 1


def _subscriptions_query() -> sa.Select:
    return sa.select(
        subscriptions.c.subscriber_id,
        subscribers.c.email,
        subscribers.c.name.label("person_name"),
        lists.c.name,
        lists.c.title,
        subscriptions.c.topics,
        subscriptions.c.frequency,
        subscriptions.c.status,
    ).select_from(
        subscriptions.join(subscribers, subscribers.c.id == subscriptions.c.subscriber_id).join(
            lists, lists.c.id == subscriptions.c.list_id
        )
    )


def _subscription(row: sa.Row) -> Subscription:
    return Subscription(
        subscriber_id=row.subscriber_id,
        email=row.email,
        list_name=row.name,
        list_title=row.title,
        topics=tuple(row.topics or ()),
        status=row.status,
        cadence=row.frequency,
        name=row.person_name,
    )


def _subscriber(row: sa.Row) -> Subscriber:
    return Subscriber(
        id=row.id,
        email=row.email,
        name=row.name,
        status=row.status,
        created=aware(row.created),
        attributes=dict(row.attributes or {}),
    )


def _listing_status(person_status: str, suppressed: bool, subscription: str | None) -> str:
    if person_status != "active":
        return person_status
    if suppressed:
        return "suppressed"
    return subscription or "none"
