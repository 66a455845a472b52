"""The subscriber service: who is on which list, with what consent, and who must not be mailed.

Every function takes a SQLAlchemy `Connection` whose transaction the caller owns, and an aware
`now` when it writes. Addresses are stored normalised (see `normalise_email`), so uniqueness is
case-insensitive. Errors the user can act on are `SubscriberError`s with a one-line message.

The rules that make consent provable and an unsubscribe stick:
- Only active people with an active subscription and an unsuppressed address are mailed.
- A public request (`subscribe`) only ever makes a subscription pending; the person's own
  `confirm` makes it active, and is also the one way back for a suppressed or unsubscribed
  address. An operator (`add_subscriber`, the CSV import) cannot bring such an address back
  unless they say the person consented again (`reactivate=True`).
- Every change is logged in `consent_events` with its source, wording, IP and user agent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from subscribers.checks import (
    FREQUENCIES,
    MAX_ATTRIBUTES_JSON,
    MAX_IP,
    MAX_LIST_NAME,
    MAX_NAME,
    MAX_SOURCE,
    MAX_USER_AGENT,
    aware,
    clean_attributes,
    clean_consent,
    clean_topics,
    normalise_email,
    one_line,
    require_consent,
    require_frequency,
    utc,
)
from subscribers.enrolment import WITHDRAWN, enrol, enrol_address
from subscribers.errors import (
    ConsentWithdrawn,
    InvalidEmail,
    InvalidToken,
    SubscriberError,
    UnknownList,
)
from subscribers.models import Consent, SubscribeOutcome, Subscriber, Subscription
from subscribers.records import (
    audience_for,
    consent_log,
    ensure_list,
    find_person,
    find_subscription,
    insert_if_absent,
    is_suppressed,
    iter_subscribers,
    lift_suppression,
    list_subscribers,
    mark_unsubscribed_if_on_no_list,
    record_consent,
    require_list,
    set_person_status,
    subscription_row,
    subscription_status,
    subscriptions_of,
)
from subscribers.tables import consent_events, lists, subscribers, subscriptions, suppressions

# What callers use from here; the checks and lookups live in subscribers.checks and .records.
__all__ = [
    "FREQUENCIES",
    "MAX_ATTRIBUTES_JSON",
    "MAX_IP",
    "MAX_LIST_NAME",
    "MAX_NAME",
    "MAX_SOURCE",
    "MAX_USER_AGENT",
    "WITHDRAWN",
    "ConsentWithdrawn",
    "InvalidEmail",
    "InvalidToken",
    "SubscriberError",
    "UnknownList",
    "add_subscriber",
    "audience",
    "audience_for",
    "clean_attributes",
    "clean_consent",
    "clean_topics",
    "confirm",
    "enrol",
    "ensure_list",
    "export_person",
    "find_person",
    "find_subscription",
    "forget_person",
    "is_suppressed",
    "iter_subscribers",
    "list_subscribers",
    "normalise_email",
    "remove_subscriber",
    "require_consent",
    "require_frequency",
    "require_list",
    "set_preferences",
    "subscribe",
    "subscription_status",
    "subscriptions_of",
    "suppress",
    "unsubscribe",
    "unsubscribe_all",
]

# What a suppression reason says about the person; other reasons (manual, erased) mean
# "unsubscribed". Only a bounce leaves subscriptions as they were: the person did not object.
_STATUS_FOR_REASON = {"bounce": "bounced", "spamreport": "complained", "complaint": "complained"}
# The name the pipeline has always used.
audience = audience_for


# --- joining ---------------------------------------------------------------------------------


def subscribe(
    conn: Connection,
    email: str,
    *,
    list_name: str,
    consent: Consent,
    now: datetime,
    name: str = "",
    topics: Sequence[str] = (),
    cadence: str | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> SubscribeOutcome:
    """A double opt-in request: the subscription waits, pending, for `confirm`.

    An already active, mailable subscription stays as it is (`confirm_needed` False). A request
    never changes what a confirmed person told us (name, attributes, an active subscription's
    topics): anyone can type anyone's address into a form. Logs "requested".
    """
    address = normalise_email(email)
    target = require_list(conn, list_name)
    result = enrol_address(
        conn,
        address,
        list_id=target,
        name=name,
        topics=clean_topics(topics),
        frequency=require_frequency(cadence) if cadence is not None else None,
        attributes=clean_attributes(attributes) if attributes is not None else None,
        status="pending",
        action="requested",
        consent=clean_consent(consent),
        note="",
        reactivate=False,
        now=now,
    )
    return SubscribeOutcome(
        subscriber_id=result.person.id,
        email=address,
        list_name=list_name,
        confirm_needed=result.confirm_needed,
    )


def confirm(
    conn: Connection,
    subscriber_id: int,
    list_name: str,
    *,
    email: str,
    consent: Consent,
    now: datetime,
) -> Subscription:
    """The person confirmed by the link in their mailbox: pending → active; logs "confirmed".

    Lifts a suppression of the address and makes the person active: they asked again.
    Idempotent for an active subscription. InvalidToken when `email` is no longer the person's
    address, or the subscription is gone or was cancelled after the link was sent.
    """
    record = clean_consent(consent)
    at = utc(now)
    person = conn.execute(
        sa.select(subscribers.c.email, subscribers.c.status).where(
            subscribers.c.id == subscriber_id
        )
    ).first()
    if person is None or person.email != _normalised_or_none(email):
        raise InvalidToken(
            "This confirmation link is not valid: its address is no longer subscribed."
        )
    current = subscription_row(conn, subscriber_id, list_name)
    if current is None:
        raise InvalidToken("This confirmation link is not valid: there is no such subscription.")
    if current.status == "unsubscribed":
        raise InvalidToken(
            "This confirmation link is used up: you unsubscribed since. Subscribe again to get "
            "a new one."
        )
    if current.status == "pending":
        # The status condition makes a double click (two racing requests) confirm once.
        changed = conn.execute(
            sa.update(subscriptions)
            .where(subscriptions.c.id == current.id, subscriptions.c.status == "pending")
            .values(status="active", updated=at)
        )
        if changed.rowcount:
            lifted = lift_suppression(conn, person.email)
            if person.status != "active":
                set_person_status(conn, subscriber_id, "active")
            note = f"suppression lifted (was: {lifted})" if lifted else ""
            record_consent(
                conn, subscriber_id, current.list_id, "confirmed", at, consent=record, note=note
            )
    found = find_subscription(conn, subscriber_id, list_name)
    assert found is not None  # the row was read above, in this transaction
    return found


def add_subscriber(
    conn: Connection,
    email: str,
    *,
    list_name: str,
    name: str = "",
    topics: Sequence[str] = (),
    frequency: str | None = None,
    consent: str | Consent,
    now: datetime,
    attributes: Mapping[str, Any] | None = None,
    reactivate: bool = False,
) -> Subscriber:
    """An operator subscribes someone who consented elsewhere: active at once; logs "subscribed".

    `consent` is a note saying how the person agreed (or a full Consent). `topics` replaces
    their topic choice (empty: every topic); a non-empty `name` replaces theirs; `frequency`
    (one of FREQUENCIES) replaces theirs, None keeps it ("weekly" for a new one). ConsentWithdrawn
    for an address that unsubscribed, bounced or complained, unless `reactivate` says the
    person consented again (that lifts the suppression).
    """
    address = normalise_email(email)
    if isinstance(consent, Consent):
        record, note = clean_consent(consent), ""
    else:
        record, note = Consent(source="operator"), require_consent(consent)
    target = require_list(conn, list_name)
    result = enrol_address(
        conn,
        address,
        list_id=target,
        name=name,
        topics=clean_topics(topics),
        frequency=require_frequency(frequency) if frequency is not None else None,
        attributes=clean_attributes(attributes) if attributes is not None else None,
        status="active",
        action="subscribed",
        consent=record,
        note=note,
        reactivate=reactivate,
        now=now,
    )
    return result.person


# --- changing and leaving --------------------------------------------------------------------


def set_preferences(
    conn: Connection,
    subscriber_id: int,
    list_name: str,
    *,
    topics: Sequence[str] | None,
    cadence: str | None,
    now: datetime,
    consent: Consent,
) -> Subscription:
    """Change a subscription's topics (empty: all) and cadence ("paused" pauses); None keeps.

    Logs "preferences" with the new choice when something changed. SubscriberError for an
    unknown or unsubscribed subscription: coming back needs a new confirmation.
    """
    record = clean_consent(consent)
    target = require_list(conn, list_name)
    current = find_subscription(conn, subscriber_id, list_name)
    if current is None:
        raise SubscriberError(f"subscriber {subscriber_id} is not on the list {list_name}")
    if current.status == "unsubscribed":
        raise SubscriberError(
            f"{current.email} is unsubscribed from {list_name}; subscribing again needs a new "
            "confirmation"
        )
    chosen_topics = clean_topics(topics) if topics is not None else current.topics
    chosen_cadence = require_frequency(cadence) if cadence is not None else current.cadence
    if (chosen_topics, chosen_cadence) == (current.topics, current.cadence):
        return current
    at = utc(now)
    conn.execute(
        sa.update(subscriptions)
        .where(subscriptions.c.subscriber_id == subscriber_id, subscriptions.c.list_id == target)
        .values(topics=list(chosen_topics), frequency=chosen_cadence, updated=at)
    )
    note = f"topics: {'; '.join(chosen_topics) or 'all'}; cadence: {chosen_cadence}"
    record_consent(conn, subscriber_id, target, "preferences", at, consent=record, note=note)
    return replace(current, topics=chosen_topics, cadence=chosen_cadence)


def unsubscribe(
    conn: Connection,
    subscriber_id: int,
    list_name: str,
    *,
    via: str,
    now: datetime,
    consent: Consent | None = None,
) -> bool:
    """End a subscription and log how (`via`: one-click, link, mailto, ...); True if it changed.

    A pending subscription ends too (its confirm links stop working). Someone left on no list
    becomes an unsubscribed person. Idempotent: an already unsubscribed, erased or unknown
    subscription changes nothing. `consent` adds the request's IP and user agent to the log.
    """
    target = conn.execute(sa.select(lists.c.id).where(lists.c.name == list_name)).scalar()
    if target is None:
        return False
    at = utc(now)
    # The status condition makes two racing requests (mail providers do retry) log only once.
    changed = conn.execute(
        sa.update(subscriptions)
        .where(
            subscriptions.c.subscriber_id == subscriber_id,
            subscriptions.c.list_id == target,
            subscriptions.c.status.in_(("active", "pending")),
        )
        .values(status="unsubscribed", updated=at)
    )
    if changed.rowcount == 0:
        return False
    record = clean_consent(consent) if consent is not None else Consent(source=via)
    record_consent(conn, subscriber_id, target, "unsubscribed", at, consent=record, note=via)
    mark_unsubscribed_if_on_no_list(conn, subscriber_id)
    return True


def unsubscribe_all(
    conn: Connection,
    subscriber_id: int,
    *,
    via: str,
    now: datetime,
    consent: Consent | None = None,
) -> int:
    """End every subscription of a person (one log entry each); how many lists they left.

    The person becomes unsubscribed even if they were on no list, so no operator re-adds them.
    """
    names = conn.execute(
        sa.select(lists.c.name)
        .join(subscriptions, subscriptions.c.list_id == lists.c.id)
        .where(
            subscriptions.c.subscriber_id == subscriber_id,
            subscriptions.c.status.in_(("active", "pending")),
        )
        .order_by(lists.c.name)
    ).scalars()
    left = sum(
        unsubscribe(conn, subscriber_id, name, via=via, now=now, consent=consent)
        for name in names.all()
    )
    conn.execute(
        sa.update(subscribers)
        .where(subscribers.c.id == subscriber_id, subscribers.c.status.in_(("active", "pending")))
        .values(status="unsubscribed")
    )
    return left


def suppress(conn: Connection, email: str, *, reason: str, now: datetime) -> None:
    """Never mail this address again (bounce, spamreport, manual); the latest reason is kept.

    The person becomes bounced, complained or (for any other reason) unsubscribed. Except after
    a bounce, their subscriptions end too: a complaint is an objection to every list.
    """
    address = normalise_email(email)
    why = one_line(reason)
    if not why:
        raise SubscriberError(f"{address}: a suppression needs a reason (bounce, spamreport, ...)")
    at = utc(now)
    if not insert_if_absent(conn, suppressions, {"email": address, "reason": why, "at": at}):
        conn.execute(
            sa.update(suppressions).where(suppressions.c.email == address).values(reason=why, at=at)
        )
    person_id = conn.execute(
        sa.select(subscribers.c.id).where(subscribers.c.email == address)
    ).scalar()
    if person_id is None:
        return
    status = _STATUS_FOR_REASON.get(why, "unsubscribed")
    if status != "bounced":
        unsubscribe_all(conn, person_id, via=why, now=now)
    set_person_status(conn, person_id, status)


# --- the person's rights (GDPR) --------------------------------------------------------------


def export_person(conn: Connection, email: str) -> dict[str, Any] | None:
    """Everything stored about an address, as JSON-ready data; None if nothing is.

    Keys: "person" (None once erased), "subscriptions", "consent_log", "suppression" (None if
    the address is not suppressed). Times are ISO 8601 in UTC.
    """
    address = normalise_email(email)
    person = find_person(conn, address)
    reason_at = conn.execute(
        sa.select(suppressions.c.reason, suppressions.c.at).where(suppressions.c.email == address)
    ).first()
    if person is None and reason_at is None:
        return None
    suppression = (
        None
        if reason_at is None
        else {"reason": reason_at.reason, "at": aware(reason_at.at).isoformat()}
    )
    if person is None:
        return {"person": None, "subscriptions": [], "consent_log": [], "suppression": suppression}
    return {
        "person": {
            "email": person.email,
            "name": person.name,
            "status": person.status,
            "created": person.created.isoformat(),
            "attributes": person.attributes,
        },
        "subscriptions": [
            {
                "list": s.list_name,
                "list_title": s.list_title,
                "status": s.status,
                "topics": list(s.topics),
                "cadence": s.cadence,
            }
            for s in subscriptions_of(conn, person.id)
        ],
        "consent_log": consent_log(conn, person.id),
        "suppression": suppression,
    }


def forget_person(conn: Connection, email: str, *, now: datetime) -> bool:
    """Erase a person and everything stored about them (GDPR erasure); True if they existed.

    The bare address stays on the suppression list (an existing reason is kept, else "erased"):
    it is the least that must be kept to honour the request, so no later import or operator
    mails them again. Only the person's own confirmation brings the address back.
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
    insert_if_absent(conn, suppressions, {"email": address, "reason": "erased", "at": utc(now)})
    return True


# The name the CLI has always used.
remove_subscriber = forget_person


def _normalised_or_none(email: str) -> str | None:
    try:
        return normalise_email(email)
    except InvalidEmail:
        return None
