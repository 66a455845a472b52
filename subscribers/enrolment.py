"""Enrolment: putting an address on a list, active or pending, under the suppression rules.

An operator's enrolment (status "active") never brings back an address that unsubscribed,
bounced or complained, unless they say the person consented again; a request (status
"pending") always may, since only the person's own confirmation makes it active.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from subscribers.checks import MAX_NAME, clean_attributes, clean_consent, one_line, utc
from subscribers.errors import ConsentWithdrawn, SubscriberError
from subscribers.models import Consent, Subscriber
from subscribers.records import (
    insert_if_absent,
    lift_suppression,
    record_consent,
    standing,
    suppression_reason,
    update_person,
)
from subscribers.tables import subscribers, subscriptions

# A person in one of these states has withdrawn (or lost) consent: they must confirm again.
WITHDRAWN = ("unsubscribed", "bounced", "complained")


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
    status: str = "active",
    consent: Consent | None = None,
    attributes: Mapping[str, Any] | None = None,
    reactivate: bool = False,
) -> tuple[Subscriber, bool]:
    """Put a normalised address on a list and log the consent; True when newly on the list.

    The building block of `add_subscriber` and the CSV import; callers validate the address,
    note, topics and frequency first (`consent` defaults to source "import"). `topics` None
    keeps an existing choice. With `status` "active", ConsentWithdrawn for an address that
    unsubscribed (from this list or all), bounced or complained, unless `reactivate`. With
    "pending" (double opt-in) the subscription waits for `confirm`, as after `subscribe`;
    `subscription_status(...) == "pending"` afterwards says a confirmation should be sent.
    """
    result = enrol_address(
        conn,
        address,
        list_id=list_id,
        name=name,
        topics=topics,
        frequency=frequency,
        attributes=clean_attributes(attributes) if attributes is not None else None,
        status=status,
        action=action,
        consent=clean_consent(consent) if consent is not None else Consent(source="import"),
        note=note,
        reactivate=reactivate,
        now=now,
    )
    return result.person, result.is_new


@dataclass(frozen=True, slots=True)
class Enrolment:
    """What an enrolment did; `confirm_needed` when the subscription waits for the person."""

    person: Subscriber
    is_new: bool  # newly on the list
    confirm_needed: bool


def enrol_address(
    conn: Connection,
    address: str,
    *,
    list_id: int,
    name: str,
    topics: tuple[str, ...] | None,
    frequency: str | None,
    attributes: dict[str, Any] | None,
    status: str,
    action: str,
    consent: Consent,
    note: str,
    reactivate: bool,
    now: datetime,
) -> Enrolment:
    """`enrol` with checked inputs, also saying whether a confirmation is owed."""
    if status not in ("active", "pending"):
        raise ValueError(f"an enrolment is active or pending, not {status!r}")
    at = utc(now)
    name = one_line(name)
    if len(name) > MAX_NAME:
        raise SubscriberError(f"{address}: name is longer than {MAX_NAME} characters")
    known = standing(conn, address, list_id)
    if known is None:
        # Refused before anything is written: the caller goes on with its next row.
        _refuse_if_withdrawn(
            address, status, reactivate, _withdrawal("", suppression_reason(conn, address), None)
        )
        person_values = {
            "email": address,
            "name": name,
            "status": status,
            "attributes": attributes or {},
            "created": at,
        }
        # Two requests for a new address at once: the second waits for the first's row, then
        # starts again as a request for a known person (so does a racing subscription below).
        insert_if_absent(conn, subscribers, person_values)
        known = standing(conn, address, list_id)
        assert known is not None
    suppressed_for = known.suppressed_for
    withdrawal = _withdrawal(known.person.status, suppressed_for, known.subscription_status)
    _refuse_if_withdrawn(address, status, reactivate, withdrawal)
    person = known.person
    if status == "active":
        # The operator vouches for this person: their details are taken as given.
        new_status = "active"
        if withdrawal and suppressed_for is not None:
            lift_suppression(conn, address)
            note = _join_notes(note, f"suppression lifted (was: {suppressed_for})")
    else:
        mailable = (
            known.subscription_status == "active" and not withdrawal and person.status == "active"
        )
        new_status = "active" if mailable else "pending"
    if known.subscription_id is None:
        placed = insert_if_absent(
            conn,
            subscriptions,
            {
                "subscriber_id": person.id,
                "list_id": list_id,
                "topics": list(topics or ()),
                "frequency": frequency or "weekly",
                "status": new_status,
                "updated": at,
            },
        )
        if not placed:
            return enrol_address(
                conn,
                address,
                list_id=list_id,
                name=name,
                topics=topics,
                frequency=frequency,
                attributes=attributes,
                status=status,
                action=action,
                consent=consent,
                note=note,
                reactivate=reactivate,
                now=now,
            )
    elif status == "active" or new_status == "pending":
        changes: dict[str, object] = {"status": new_status, "updated": at}
        if topics is not None:
            changes["topics"] = list(topics)
        if frequency is not None:
            changes["frequency"] = frequency
        conn.execute(
            sa.update(subscriptions)
            .where(subscriptions.c.id == known.subscription_id)
            .values(changes)
        )
    if status == "active":
        person = update_person(conn, person, name, attributes, "active")
    elif person.status == "pending":
        # Nobody has confirmed this address yet: the latest request says who they are.
        person = update_person(conn, person, name, attributes, "pending")
    record_consent(conn, person.id, list_id, action, at, consent=consent, note=note)
    return Enrolment(
        person=person,
        is_new=known.subscription_id is None,
        confirm_needed=new_status == "pending",
    )


def _refuse_if_withdrawn(address: str, status: str, reactivate: bool, withdrawal: str) -> None:
    """Only the person can bring back an address that withdrew; an operator must say they did."""
    if status == "active" and withdrawal and not reactivate:
        raise ConsentWithdrawn(f"{address} {withdrawal}; they must confirm again")


def _withdrawal(person_status: str, suppressed_for: str | None, subscription: str | None) -> str:
    """Why this address must not be re-activated by an operator, or "" if it may."""
    if suppressed_for is not None:
        return f"is suppressed ({suppressed_for})"
    if person_status in WITHDRAWN:
        return f"is {person_status}"
    if subscription == "unsubscribed":
        return "unsubscribed from this list"
    return ""


def _join_notes(*notes: str) -> str:
    return "; ".join(note for note in notes if note)
