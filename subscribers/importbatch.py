"""Writing checked import rows: a batch at a time, by the subscriber service's rules.

Each batch is a savepoint and a handful of statements, whatever its size: the rows go into a
temporary table once (`subscribers.importrows`), and people, subscriptions and consent events
are inserted from it with INSERT ... SELECT. The rules are those of `service.enrol` (tests
hold the two together); the service writes one person at a time, too slow for a million rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from subscribers import service
from subscribers.bulk import IN_LISTS, Among
from subscribers.csvrows import ImportRow
from subscribers.tables import consent_events, subscribers, subscriptions, suppressions

# The consent log's `source` for rows an import wrote.
CONSENT_SOURCE = "import"


@dataclass(frozen=True, slots=True)
class PendingConfirmation:
    """Someone an import left pending, who is owed a confirmation email."""

    subscriber_id: int
    email: str
    list_name: str
    name: str
    topics: tuple[str, ...]
    cadence: str


@dataclass(frozen=True, slots=True)
class ImportPlan:
    """What every row of one import shares; `at` is aware UTC."""

    list_id: int
    list_name: str
    double_opt_in: bool
    note: str
    at: datetime


@dataclass(slots=True)
class Outcome:
    """What some rows did; a batch's is added to the totals only once it is written."""

    imported: int = 0
    added: int = 0
    suppressed: int = 0
    unsubscribed: int = 0
    refused: list[tuple[int, str]] = field(default_factory=list)
    pending: list[PendingConfirmation] = field(default_factory=list)

    def add(self, other: Outcome) -> None:
        self.imported += other.imported
        self.added += other.added
        self.suppressed += other.suppressed
        self.unsubscribed += other.unsubscribed
        self.refused.extend(other.refused)
        self.pending.extend(other.pending)


def write_rows(
    conn: Connection, rows: list[ImportRow], plan: ImportPlan, among: Among = IN_LISTS
) -> Outcome:
    """Write rows (already in the temporary table) in one savepoint.

    If the database refuses the batch, each row is retried in its own savepoint, so only the
    refused row is left out (in `Outcome.refused`) and no row is ever half written.
    """
    if not rows:
        return Outcome()
    try:
        with conn.begin_nested():
            return _write_batch(conn, rows, plan, among)
    except (sa.exc.IntegrityError, sa.exc.DataError) as error:
        if len(rows) == 1:
            detail = str(error.orig).strip().splitlines() or [type(error.orig).__name__]
            return Outcome(refused=[(rows[0].line, f"refused by the database: {detail[0]}")])
    outcome = Outcome()
    for row in rows:
        outcome.add(write_rows(conn, [row], plan, among))
    return outcome


@dataclass(frozen=True, slots=True)
class _Stored:
    """What the database holds about a batch's addresses, on the import's list."""

    suppressed: frozenset[str]
    people: dict[str, Any]  # address → row (id, email, name, status)
    memberships: dict[int, Any]  # subscriber id → row (id, status, topics, frequency)


@dataclass(slots=True)
class _Changes:
    """Per-row updates of people and subscriptions already stored, and who gets which log."""

    subscriptions: list[dict[str, object]] = field(default_factory=list)
    people: list[dict[str, object]] = field(default_factory=list)
    logged: dict[str, list[str]] = field(default_factory=dict)  # action → addresses

    def log(self, action: str, email: str) -> None:
        self.logged.setdefault(action, []).append(email)


def _write_batch(
    conn: Connection, rows: list[ImportRow], plan: ImportPlan, among: Among
) -> Outcome:
    """Valid rows with distinct addresses: skip, join or update each, a few statements in all."""
    stored = _look_up(conn, [row.email for row in rows], plan.list_id, among)
    outcome = Outcome()
    changes = _Changes()
    joining: list[ImportRow] = []
    for row in rows:
        skip = row.withdrawn or _why_skipped(row.email, stored)
        if skip == "suppressed":
            outcome.suppressed += 1
        elif skip == "unsubscribed":
            outcome.unsubscribed += 1
        elif stored.people.get(row.email) is None or _membership(row, stored) is None:
            joining.append(row)
        else:
            _update(row, stored, plan, changes, outcome)
    _join(conn, joining, stored, plan, changes, outcome, among)
    if changes.subscriptions:
        conn.execute(_UPDATE_SUBSCRIPTION, changes.subscriptions)
    if changes.people:
        conn.execute(_UPDATE_PERSON, changes.people)
    for action, emails in changes.logged.items():
        conn.execute(_log_consent(among, emails, action, plan))
    return outcome


def _look_up(conn: Connection, emails: list[str], list_id: int, among: Among) -> _Stored:
    suppressed = conn.execute(
        sa.select(suppressions.c.email).where(among.where(suppressions.c.email, emails))
    ).scalars()
    people = {
        person.email: person
        for person in conn.execute(
            sa.select(
                subscribers.c.id, subscribers.c.email, subscribers.c.name, subscribers.c.status
            ).where(among.where(subscribers.c.email, emails))
        )
    }
    memberships = {}
    if people:
        memberships = {
            row.subscriber_id: row
            for row in conn.execute(
                sa.select(
                    subscriptions.c.id,
                    subscriptions.c.subscriber_id,
                    subscriptions.c.status,
                    subscriptions.c.topics,
                    subscriptions.c.frequency,
                ).where(
                    subscriptions.c.list_id == list_id,
                    _people_ids(people, among),
                )
            )
        }
    return _Stored(frozenset(suppressed), people, memberships)


def _people_ids(people: dict[str, Any], among: Among) -> sa.ColumnElement[bool]:
    """Subscriptions of these people: by id, or (PostgreSQL) by their staged addresses."""
    if among.staged is None:
        return subscriptions.c.subscriber_id.in_([person.id for person in people.values()])
    ids = sa.select(subscribers.c.id).where(among.where(subscribers.c.email, people))
    return subscriptions.c.subscriber_id.in_(ids)


def _membership(row: ImportRow, stored: _Stored) -> Any:
    person = stored.people.get(row.email)
    return None if person is None else stored.memberships.get(person.id)


def _why_skipped(email: str, stored: _Stored) -> str | None:
    """'suppressed' or 'unsubscribed' for an address an import must leave alone, else None.

    The same addresses `service.enrol` refuses to make active (ConsentWithdrawn). An import
    does not send them a confirmation either: mailing them is what they asked us not to do.
    """
    if email in stored.suppressed:
        return "suppressed"
    person = stored.people.get(email)
    if person is None:
        return None
    membership = stored.memberships.get(person.id)
    if person.status == "unsubscribed" or (membership and membership.status == "unsubscribed"):
        return "unsubscribed"
    return "suppressed" if person.status in service.WITHDRAWN else None


def _join(
    conn: Connection,
    rows: list[ImportRow],
    stored: _Stored,
    plan: ImportPlan,
    changes: _Changes,
    outcome: Outcome,
    among: Among,
) -> None:
    """Put people on the list who are not on it: new people first, then their subscriptions."""
    if not rows:
        return
    status = "pending" if plan.double_opt_in else "active"
    newcomers = [row.email for row in rows if row.email not in stored.people]
    if newcomers:
        conn.execute(_insert_people(among, newcomers, status, plan))
    conn.execute(_insert_subscriptions(among, [row.email for row in rows], status, plan))
    names = {}
    for row in rows:
        person = stored.people.get(row.email)
        names[row.email] = row.name or ""
        if person is not None:
            names[row.email] = _change_person(row, person, plan, changes)
        changes.log("requested" if plan.double_opt_in else "imported", row.email)
    outcome.imported += len(rows)
    outcome.added += len(rows)
    if plan.double_opt_in:
        ids = dict(
            conn.execute(
                sa.select(subscribers.c.email, subscribers.c.id).where(
                    among.where(subscribers.c.email, names)
                )
            ).all()
        )
        outcome.pending.extend(
            PendingConfirmation(
                ids[row.email],
                row.email,
                plan.list_name,
                names[row.email],
                row.topics or (),
                row.cadence or "weekly",
            )
            for row in rows
        )


def _update(
    row: ImportRow, stored: _Stored, plan: ImportPlan, changes: _Changes, outcome: Outcome
) -> None:
    """Refresh a subscription already on the list (a consent note activates a pending one).

    With double opt-in an active subscription stays exactly as it is.
    """
    person = stored.people[row.email]
    membership = stored.memberships[person.id]
    outcome.imported += 1
    if plan.double_opt_in and membership.status == "active":
        return
    status = "pending" if plan.double_opt_in else "active"
    topics = row.topics if row.topics is not None else tuple(membership.topics or ())
    cadence = row.cadence or membership.frequency
    changes.subscriptions.append(
        {
            "b_id": membership.id,
            "b_topics": list(topics),
            "b_frequency": cadence,
            "b_status": status,
            "b_updated": plan.at,
        }
    )
    name = _change_person(row, person, plan, changes)
    if status == "pending":
        outcome.pending.append(
            PendingConfirmation(person.id, row.email, plan.list_name, name, topics, cadence)
        )
    changes.log("requested" if status == "pending" else "imported", row.email)


def _change_person(row: ImportRow, person: Any, plan: ImportPlan, changes: _Changes) -> str:
    """Update a stored person as the row says, if it may; the name they now have.

    A consent note vouches for the row; with double opt-in only an unconfirmed person's
    details change, since anyone's address can be in a file.
    """
    if plan.double_opt_in and person.status != "pending":
        return str(person.name)
    name = row.name or person.name
    status = "pending" if plan.double_opt_in else "active"
    if (name, status) != (person.name, person.status):
        changes.people.append({"b_id": person.id, "b_name": name, "b_status": status})
    return str(name)


def _insert_people(among: Among, emails: Sequence[str], status: str, plan: ImportPlan) -> sa.Insert:
    source = among.rows
    rows = sa.select(
        source.c.email,
        source.c.name,
        sa.literal(status, subscribers.c.status.type),
        sa.literal(plan.at, subscribers.c.created.type),
    ).where(among.where(source.c.email, emails))
    return sa.insert(subscribers).from_select(["email", "name", "status", "created"], rows)


def _insert_subscriptions(
    among: Among, emails: Sequence[str], status: str, plan: ImportPlan
) -> sa.Insert:
    source = among.rows
    rows = (
        sa.select(
            subscribers.c.id,
            sa.literal(plan.list_id, subscriptions.c.list_id.type),
            source.c.topics,
            source.c.cadence,
            sa.literal(status, subscriptions.c.status.type),
            sa.literal(plan.at, subscriptions.c.updated.type),
        )
        .select_from(source.join(subscribers, subscribers.c.email == source.c.email))
        .where(among.where(source.c.email, emails))
    )
    columns = ["subscriber_id", "list_id", "topics", "frequency", "status", "updated"]
    return sa.insert(subscriptions).from_select(columns, rows)


def _log_consent(among: Among, emails: Sequence[str], action: str, plan: ImportPlan) -> sa.Insert:
    rows = (
        sa.select(
            subscribers.c.id,
            sa.literal(plan.list_id, consent_events.c.list_id.type),
            sa.literal(action, consent_events.c.action.type),
            sa.literal(plan.note, consent_events.c.note.type),
            sa.literal(plan.at, consent_events.c.at.type),
            sa.literal(CONSENT_SOURCE, consent_events.c.source.type),
        )
        .where(among.where(subscribers.c.email, emails))
        .order_by(subscribers.c.id)
    )
    columns = ["subscriber_id", "list_id", "action", "note", "at", "source"]
    return sa.insert(consent_events).from_select(columns, rows)


_UPDATE_SUBSCRIPTION = (
    sa.update(subscriptions)
    .where(subscriptions.c.id == sa.bindparam("b_id"))
    .values(
        topics=sa.bindparam("b_topics", type_=subscriptions.c.topics.type),
        frequency=sa.bindparam("b_frequency"),
        status=sa.bindparam("b_status"),
        updated=sa.bindparam("b_updated", type_=subscriptions.c.updated.type),
    )
)
_UPDATE_PERSON = (
    sa.update(subscribers)
    .where(subscribers.c.id == sa.bindparam("b_id"))
    .values(name=sa.bindparam("b_name"), status=sa.bindparam("b_status"))
)
