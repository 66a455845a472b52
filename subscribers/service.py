"""The subscriber service: who is on which list, with what consent, and who must not be mailed.

Every function takes a SQLAlchemy `Connection` whose transaction the caller owns, and an aware
`now` when it writes. Addresses are stored normalised (see `normalise_email`), so uniqueness is
case-insensitive. Errors the user can act on are `SubscriberError`s with a one-line message.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from email_validator import EmailNotValidError, validate_email
from sqlalchemy import Connection

from subscribers.models import Recipient, Subscriber, SubscriberRow, Subscription
from subscribers.tables import consent_events, lists, subscribers, subscriptions, suppressions

# Column widths from subscribers.tables; checked here so a long value is a clear error, not a
# database error that aborts the caller's whole transaction on PostgreSQL.
MAX_LIST_NAME = 100
MAX_NAME = 200
# How often someone wants a list's issues: every issue, only the daily or weekly digest, none.
FREQUENCIES = ("each", "daily", "weekly", "paused")


class SubscriberError(Exception):
    """A problem the user can act on; its message is one line."""


class InvalidEmail(SubscriberError):
    pass


class UnknownList(SubscriberError):
    pass


def normalise_email(raw: str) -> str:
    """The stored form of an address: syntax-checked, IDN domain decoded, lower-cased.

    No DNS lookups. 'Ann@Example.ORG' and 'ann@example.org' give the same result, and so do
    'x@bücher.example' and 'x@xn--bcher-kva.example'.
    """
    candidate = raw.strip()
    try:
        checked = validate_email(candidate, check_deliverability=False)
    except EmailNotValidError as error:
        raise InvalidEmail(f"{_one_line(candidate)!r}: {_one_line(str(error))}") from error
    return checked.normalized.lower()


def require_consent(consent: str) -> str:
    """The consent note, stripped; every subscription must say how the person agreed."""
    note = consent.strip()
    if not note:
        raise SubscriberError("a consent note is required: say how and when the person agreed")
    return _one_line(note)


def ensure_list(conn: Connection, name: str, *, title: str = "", now: datetime) -> int:
    """The id of the list `name`, created if missing; a non-empty `title` replaces the old one."""
    if not name or name != name.strip() or len(name) > MAX_LIST_NAME:
        raise SubscriberError(
            f"list name {name!r} must be 1-{MAX_LIST_NAME} characters without surrounding spaces"
        )
    row = conn.execute(sa.select(lists.c.id, lists.c.title).where(lists.c.name == name)).first()
    if row is None:
        inserted = conn.execute(sa.insert(lists).values(name=name, title=title, created=_utc(now)))
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


def add_subscriber(
    conn: Connection,
    email: str,
    *,
    list_name: str,
    name: str = "",
    topics: Sequence[str] = (),
    frequency: str | None = None,
    consent: str,
    now: datetime,
) -> Subscriber:
    """Subscribe someone to a list, creating or updating the person.

    An unsubscribed subscription becomes active again (this call is the person's new consent);
    `topics` replaces their topic choice (empty: every topic); a non-empty `name` replaces theirs;
    `frequency` (one of FREQUENCIES) replaces theirs, None keeps it ("weekly" for a new one).
    """
    address = normalise_email(email)
    note = require_consent(consent)
    target = require_list(conn, list_name)
    person, _ = enrol(
        conn,
        address,
        list_id=target,
        name=name,
        topics=clean_topics(topics),
        frequency=require_frequency(frequency) if frequency is not None else None,
        action="subscribed",
        note=note,
        now=now,
    )
    return person


def require_frequency(frequency: str) -> str:
    """A known frequency, or SubscriberError naming the choices."""
    if frequency not in FREQUENCIES:
        raise SubscriberError(
            f"unknown frequency {frequency!r}: choose one of {', '.join(FREQUENCIES)}"
        )
    return frequency


def enrol(
    conn: Connection,
    address: str,
    *,
    list_id: int,
    name: str,
    topics: tuple[str, ...] | None,
    action: str,
    note: str,
    now: datetime,
    frequency: str | None = None,
) -> tuple[Subscriber, bool]:
    """Put a normalised address on a list and log the consent; True when newly on the list.

    `topics` None keeps an existing choice. The building block of `add_subscriber` and the CSV
    import; callers validate the address and the note first.
    """
    at = _utc(now)
    person = _save_person(conn, address, name.strip(), at)
    current = conn.execute(
        sa.select(subscriptions.c.id).where(
            subscriptions.c.subscriber_id == person.id, subscriptions.c.list_id == list_id
        )
    ).scalar()
    if current is None:
        conn.execute(
            sa.insert(subscriptions).values(
                subscriber_id=person.id,
                list_id=list_id,
                topics=list(topics or ()),
                frequency=frequency or "weekly",
                status="active",
                updated=at,
            )
        )
    else:
        changes: dict[str, object] = {"status": "active", "updated": at}
        if topics is not None:
            changes["topics"] = list(topics)
        if frequency is not None:
            changes["frequency"] = frequency
        conn.execute(sa.update(subscriptions).where(subscriptions.c.id == current).values(changes))
    _record_consent(conn, person.id, list_id, action, note, at)
    return person, current is None


def subscription_status(conn: Connection, address: str, list_id: int) -> str | None:
    """The status of a normalised address's subscription to a list, or None if it has none."""
    return conn.execute(
        sa.select(subscriptions.c.status)
        .join(subscribers, subscribers.c.id == subscriptions.c.subscriber_id)
        .where(subscribers.c.email == address, subscriptions.c.list_id == list_id)
    ).scalar()


def remove_subscriber(conn: Connection, email: str, *, now: datetime) -> bool:
    """Erase a person and everything stored about them (GDPR erasure); True if they existed.

    A suppression of the address stays: it only records that the address must not be mailed.
    """
    address = normalise_email(email)
    person_id = conn.execute(
        sa.select(subscribers.c.id).where(subscribers.c.email == address)
    ).scalar()
    if person_id is None:
        return False
    # Explicit deletes rather than ON DELETE CASCADE: SQLite enforces foreign keys only when
    # the connection turned them on.
    conn.execute(sa.delete(consent_events).where(consent_events.c.subscriber_id == person_id))
    conn.execute(sa.delete(subscriptions).where(subscriptions.c.subscriber_id == person_id))
    conn.execute(sa.delete(subscribers).where(subscribers.c.id == person_id))
    return True


def list_subscribers(conn: Connection, list_name: str | None = None) -> list[SubscriberRow]:
    """Everyone, one row per subscription (people on no list once, with list ""), by list and email.

    With `list_name`, only that list's subscriptions, whatever their status.
    """
    is_suppressed = (
        sa.exists().where(suppressions.c.email == subscribers.c.email).label("is_suppressed")
    )
    query = (
        sa.select(
            subscribers.c.email,
            subscribers.c.name,
            subscribers.c.status.label("person_status"),
            lists.c.name.label("list_name"),
            subscriptions.c.topics,
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
    return [
        SubscriberRow(
            email=row.email,
            name=row.name,
            list=row.list_name or "",
            topics=tuple(row.topics or ()),
            status=_listing_status(
                row.person_status, bool(row.is_suppressed), row.subscription_status
            ),
        )
        for row in conn.execute(query)
    ]


def audience(conn: Connection, list_name: str, *, cadence: str = "all") -> list[Recipient]:
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
    row = conn.execute(
        sa.select(
            subscribers.c.email,
            lists.c.name,
            lists.c.title,
            subscriptions.c.topics,
            subscriptions.c.status,
        )
        .select_from(
            subscriptions.join(subscribers, subscribers.c.id == subscriptions.c.subscriber_id).join(
                lists, lists.c.id == subscriptions.c.list_id
            )
        )
        .where(subscriptions.c.subscriber_id == subscriber_id, lists.c.name == list_name)
    ).first()
    if row is None:
        return None
    return Subscription(
        subscriber_id=subscriber_id,
        email=row.email,
        list_name=row.name,
        list_title=row.title,
        topics=tuple(row.topics or ()),
        status=row.status,
    )


def unsubscribe(
    conn: Connection, subscriber_id: int, list_name: str, *, via: str, now: datetime
) -> bool:
    """End a subscription and log how (`via`: one-click, link, mailto, ...); True if it changed.

    Idempotent: an already unsubscribed, erased or unknown subscription changes nothing.
    """
    target = conn.execute(sa.select(lists.c.id).where(lists.c.name == list_name)).scalar()
    if target is None:
        return False
    at = _utc(now)
    # The status condition makes two racing requests (mail providers do retry) log only once.
    changed = conn.execute(
        sa.update(subscriptions)
        .where(
            subscriptions.c.subscriber_id == subscriber_id,
            subscriptions.c.list_id == target,
            subscriptions.c.status == "active",
        )
        .values(status="unsubscribed", updated=at)
    )
    if changed.rowcount == 0:
        return False
    _record_consent(conn, subscriber_id, target, "unsubscribed", via, at)
    return True


def suppress(conn: Connection, email: str, *, reason: str, now: datetime) -> None:
    """Never mail this address again (bounce, spamreport, manual); the latest reason is kept."""
    address = normalise_email(email)
    if not reason.strip():
        raise SubscriberError(f"{address}: a suppression needs a reason (bounce, spamreport, ...)")
    at = _utc(now)
    known = conn.execute(
        sa.select(suppressions.c.email).where(suppressions.c.email == address)
    ).scalar()
    if known is None:
        conn.execute(sa.insert(suppressions).values(email=address, reason=reason.strip(), at=at))
    else:
        conn.execute(
            sa.update(suppressions)
            .where(suppressions.c.email == address)
            .values(reason=reason.strip(), at=at)
        )


def is_suppressed(conn: Connection, email: str) -> bool:
    """Whether the address is on the do-not-mail list."""
    address = normalise_email(email)
    found = conn.execute(sa.select(suppressions.c.email).where(suppressions.c.email == address))
    return found.first() is not None


def clean_topics(topics: Sequence[str]) -> tuple[str, ...]:
    """Topic names stripped, blanks dropped, repeats removed, order kept."""
    if isinstance(topics, str):
        raise TypeError("topics must be a sequence of names, not one string")
    return tuple(dict.fromkeys(name.strip() for name in topics if name.strip()))


def _save_person(conn: Connection, address: str, name: str, at: datetime) -> Subscriber:
    if len(name) > MAX_NAME:
        raise SubscriberError(f"{address}: name is longer than {MAX_NAME} characters")
    row = conn.execute(sa.select(subscribers).where(subscribers.c.email == address)).first()
    if row is None:
        inserted = conn.execute(
            sa.insert(subscribers).values(email=address, name=name, status="active", created=at)
        )
        return Subscriber(
            id=int(inserted.inserted_primary_key[0]),
            email=address,
            name=name,
            status="active",
            created=at,
        )
    if name and name != row.name:
        conn.execute(sa.update(subscribers).where(subscribers.c.id == row.id).values(name=name))
    return Subscriber(
        id=row.id,
        email=row.email,
        name=name or row.name,
        status=row.status,
        created=_aware(row.created),
    )


def _record_consent(
    conn: Connection, subscriber_id: int, list_id: int | None, action: str, note: str, at: datetime
) -> None:
    conn.execute(
        sa.insert(consent_events).values(
            subscriber_id=subscriber_id, list_id=list_id, action=action, note=note, at=at
        )
    )


def _listing_status(person_status: str, suppressed: bool, subscription: str | None) -> str:
    if person_status != "active":
        return person_status
    if suppressed:
        return "suppressed"
    return subscription or "none"


def _utc(now: datetime) -> datetime:
    """`now` in UTC; SQLite keeps no offset, so everything is stored as UTC."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"now must be timezone-aware, got {now!r}")
    return now.astimezone(UTC)


def _aware(stored: datetime) -> datetime:
    """A stored timestamp as aware UTC (SQLite hands them back naive)."""
    return stored if stored.tzinfo is not None else stored.replace(tzinfo=UTC)


def _one_line(text: str) -> str:
    return " ".join(text.split())
