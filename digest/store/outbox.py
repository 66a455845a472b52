"""The outbox and the provider's events: who is owed which issue, what each send attempt
did, and what the mail provider reported about each message afterwards."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from digest.models import SendResult
from digest.store.base import StoreBase, among, dialect_insert, id_chunks
from digest.tables import outbox, provider_events

# Provider events `digest status` always shows, even at zero; others appear once they occur.
SHOWN_EVENTS = ("delivered", "open", "click", "deferred", "bounce", "dropped", "spamreport")


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    issue_id: int
    subscriber_id: int
    email: str
    topics: tuple[str, ...]
    state: str
    attempts: int


@dataclass(frozen=True, slots=True)
class QueuedRecipient:
    subscriber_id: int
    email: str
    topics: tuple[str, ...]
    message_id: str = ""  # the Message-ID every attempt at this copy carries


@dataclass(frozen=True, slots=True)
class ProviderEvent:
    """One event the mail provider reported about a message; `sg_event_id` is its unique key."""

    sg_event_id: str
    event: str
    issue_id: int | None
    subscriber_id: int | None
    email: str
    at: datetime
    raw: str
    delivery_id: int | None = None  # the outbox row, from our custom_args
    reason: str = ""  # why SendGrid dropped or bounced it, in its words


class OutboxStore(StoreBase):
    """The outbox's and the provider events' queries (digest.store.Store has them all)."""

    # --- outbox --------------------------------------------------------------------------

    def queue_recipients(
        self, issue_id: int, recipients: Sequence[QueuedRecipient], *, now: datetime
    ) -> int:
        """One outbox row per (issue, subscriber), written before anything is sent.

        Recipients that already have a row (a resumed send) are left as they are.
        """
        with self.transaction() as connection:
            present = set(
                connection.execute(
                    sa.select(outbox.c.subscriber_id).where(outbox.c.issue_id == issue_id)
                ).scalars()
            )
            rows = [
                {
                    "issue_id": issue_id,
                    "subscriber_id": r.subscriber_id,
                    "email": r.email,
                    "topics": list(r.topics),
                    "state": "queued",
                    "message_id": r.message_id,
                    "updated": now,
                }
                # Readers with the same topic choice get neighbouring ids, so the batches a
                # send takes in id order mostly share one body (SendGrid: one request each).
                for r in sorted(recipients, key=lambda r: r.topics)
                if r.subscriber_id not in present
            ]
            if rows:
                # Two schedulers sending the same issue may queue the same readers at once:
                # the unique (issue, subscriber) keeps one row, and the other insert skips it.
                insert = dialect_insert(connection)(outbox).on_conflict_do_nothing(
                    index_elements=["issue_id", "subscriber_id"]
                )
                connection.execute(insert, rows)
        return len(rows)

    def claim_queued(self, issue_id: int, limit: int, *, now: datetime) -> list[OutboxRow]:
        """Move up to `limit` queued rows to `sending` and return them.

        A row is `sending` before its message leaves; a crash leaves it there, and it is not
        sent again blindly (the operator settles it, see DESIGN §6).
        """
        # One statement claims and reports exactly the rows it moved: a concurrent sender
        # either waits for our commit and finds them `sending`, or (PostgreSQL) skips the
        # rows we have locked. A select-then-update would hand both senders the same rows.
        # The batch is a materialised CTE: as a plain IN (subquery) PostgreSQL may rescan
        # it per row and claim more than `limit` rows.
        batch = (
            sa.select(outbox.c.id)
            .where(outbox.c.issue_id == issue_id, outbox.c.state == "queued")
            .order_by(outbox.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
            .cte("batch")
            .prefix_with("MATERIALIZED", dialect="postgresql")
        )
        with self.transaction() as connection:
            rows = connection.execute(
                sa.update(outbox)
                .where(outbox.c.id.in_(sa.select(batch.c.id)), outbox.c.state == "queued")
                .values(state="sending", attempts=outbox.c.attempts + 1, updated=now)
                .returning(
                    outbox.c.id,
                    outbox.c.subscriber_id,
                    outbox.c.email,
                    sa.cast(outbox.c.topics, sa.Text),  # decoded once per distinct list
                    outbox.c.attempts,
                )
            ).all()
        return _outbox_rows(issue_id, sorted(rows), state="sending")

    def peek_queued(self, issue_id: int, limit: int, *, after: int = 0) -> list[OutboxRow]:
        """Up to `limit` queued rows with ids above `after`, in id order, left as they are:
        a sender builds their messages, then claims them with `claim_rows` as it sends."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(
                    outbox.c.id,
                    outbox.c.subscriber_id,
                    outbox.c.email,
                    sa.cast(outbox.c.topics, sa.Text),
                    outbox.c.attempts,
                )
                .where(outbox.c.issue_id == issue_id, outbox.c.state == "queued")
                .where(outbox.c.id > after)
                .order_by(outbox.c.id)
                .limit(limit)
            ).all()
        return _outbox_rows(issue_id, rows, state="queued")

    def queued_ids(self, issue_id: int) -> list[int]:
        """The ids of the issue's queued rows, in order (a fan-out send splits them in batches)."""
        with self.engine.connect() as connection:
            return list(
                connection.execute(
                    sa.select(outbox.c.id)
                    .where(outbox.c.issue_id == issue_id, outbox.c.state == "queued")
                    .order_by(outbox.c.id)
                ).scalars()
            )

    def claim_rows(self, row_ids: Sequence[int], *, now: datetime) -> set[int]:
        """Move those of `row_ids` still queued to `sending`; returns the ids it moved.

        A row another sender claimed (or settled) meanwhile is not among them.
        """
        claimed: set[int] = set()
        with self.transaction() as connection:
            for chunk in id_chunks(connection, row_ids):
                claimed.update(
                    connection.execute(
                        sa.update(outbox)
                        .where(among(connection, outbox.c.id, chunk), outbox.c.state == "queued")
                        .values(state="sending", attempts=outbox.c.attempts + 1, updated=now)
                        .returning(outbox.c.id)
                    ).scalars()
                )
        return claimed

    def record_results(self, results: Sequence[SendResult], *, now: datetime) -> None:
        """Settle `sending` rows with the backend's answer (delivery_id is the row id).

        Rows with the same outcome (state, provider id, error; e.g. a SendGrid request's
        readers) settle in one UPDATE; the rest in one executemany. A statement per row cost
        more than sending did. A row a provider event already settled stays as it is.
        """
        outcomes: dict[tuple[str, str, str], list[int]] = {}
        for result in results:
            key = (result.state, result.provider_id, result.error)
            outcomes.setdefault(key, []).append(int(result.delivery_id))
        singles = [
            {"row_id": ids[0], "new_state": state, "new_provider_id": provider, "new_error": error}
            for (state, provider, error), ids in outcomes.items()
            if len(ids) == 1
        ]
        with self.transaction() as connection:
            for (state, provider, error), ids in outcomes.items():
                for chunk in id_chunks(connection, ids) if len(ids) > 1 else ():
                    connection.execute(
                        sa.update(outbox)
                        .where(among(connection, outbox.c.id, chunk), outbox.c.state == "sending")
                        .values(state=state, provider_id=provider, last_error=error, updated=now)
                    )
            if singles:
                connection.execute(
                    sa.update(outbox)
                    .where(outbox.c.id == sa.bindparam("row_id"), outbox.c.state == "sending")
                    .values(
                        state=sa.bindparam("new_state"),
                        provider_id=sa.bindparam("new_provider_id"),
                        last_error=sa.bindparam("new_error"),
                        updated=now,
                    ),
                    singles,
                )

    def release(self, row_ids: Sequence[int], *, now: datetime) -> None:
        """Give claimed rows back (sending → queued) when nothing was handed to the backend."""
        with self.transaction() as connection:
            connection.execute(
                sa.update(outbox)
                .where(outbox.c.id.in_(row_ids), outbox.c.state == "sending")
                .values(state="queued", attempts=outbox.c.attempts - 1, updated=now)
            )

    def requeue(self, issue_id: int, states: Sequence[str], *, now: datetime) -> int:
        with self.transaction() as connection:
            return connection.execute(
                sa.update(outbox)
                .where(outbox.c.issue_id == issue_id, outbox.c.state.in_(states))
                .values(state="queued", updated=now)
            ).rowcount

    def has_outbox_rows(self, issue_id: int) -> bool:
        with self.engine.connect() as connection:
            found = connection.execute(
                sa.select(outbox.c.id).where(outbox.c.issue_id == issue_id).limit(1)
            ).first()
        return found is not None

    def outbox_counts(self, issue_id: int) -> dict[str, int]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(outbox.c.state, sa.func.count())
                .where(outbox.c.issue_id == issue_id)
                .group_by(outbox.c.state)
            ).all()
        counts = {"queued": 0, "sending": 0, "sent": 0, "failed": 0, "unknown": 0}
        counts.update({state: count for state, count in rows})
        return counts

    # --- provider events -----------------------------------------------------------------

    def record_provider_events(
        self, events: Sequence[ProviderEvent], *, connection: Connection | None = None
    ) -> list[ProviderEvent]:
        """Store the events not stored before (by `sg_event_id`); return those that were new.

        Given a `connection`, the caller acts on the new events in the same transaction: a
        failure then keeps neither, and the provider's retry brings both back.
        """
        if connection is None:
            with self.transaction() as own:
                return self.record_provider_events(events, connection=own)
        insert = (
            dialect_insert(connection)(provider_events)
            .on_conflict_do_nothing(index_elements=["sg_event_id"])
            .returning(provider_events.c.id)
        )
        new = []
        for event in events:
            # One row per statement: a returned id tells a new event from a repeat on every
            # backend (row counts do not), and a repeat within the same delivery is caught too.
            if connection.execute(insert, _provider_event_row(event)).first() is not None:
                new.append(event)
        return new

    def settle_taken(
        self,
        row_id: int,
        issue_id: int,
        subscriber_id: int,
        *,
        now: datetime,
        connection: Connection | None = None,
    ) -> bool:
        """The provider took this row's message: `unknown` or `sending` becomes `sent`.

        The row must be the issue's copy for the subscriber; True if it changed.
        """
        if connection is None:
            with self.transaction() as own:
                return self.settle_taken(row_id, issue_id, subscriber_id, now=now, connection=own)
        changed = connection.execute(
            sa.update(outbox)
            .where(
                outbox.c.id == row_id,
                outbox.c.issue_id == issue_id,
                outbox.c.subscriber_id == subscriber_id,
                outbox.c.state.in_(("unknown", "sending")),
            )
            .values(state="sent", last_error="", updated=now)
        )
        return changed.rowcount == 1

    def issue_event_counts(self, issue_id: int) -> dict[str, int]:
        """How many of each provider event the issue's messages drew, each event counted once."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(provider_events.c.event, sa.func.count())
                .where(provider_events.c.issue_id == issue_id)
                .group_by(provider_events.c.event)
            ).all()
        counts = dict.fromkeys(SHOWN_EVENTS, 0)
        counts.update({event: count for event, count in sorted(rows)})
        return counts


def _outbox_rows(issue_id: int, rows: Sequence[Any], *, state: str) -> list[OutboxRow]:
    """OutboxRows from (id, subscriber_id, email, topics JSON text, attempts) tuples."""
    # A send's rows share a few topic lists: each distinct one is decoded once.
    topic_lists: dict[str, tuple[str, ...]] = {}
    found = []
    for row_id, subscriber_id, email, topics_json, attempts in rows:
        topics = topic_lists.get(topics_json)
        if topics is None:
            topics = topic_lists[topics_json] = tuple(json.loads(topics_json or "[]"))
        found.append(OutboxRow(row_id, issue_id, subscriber_id, email, topics, state, attempts))
    return found


def _provider_event_row(event: ProviderEvent) -> dict[str, Any]:
    return {
        "sg_event_id": event.sg_event_id,
        "event": event.event,
        "issue_id": event.issue_id,
        "subscriber_id": event.subscriber_id,
        "email": event.email,
        "at": event.at,
        "raw": event.raw,
    }
