"""CSV export: every subscription as a row a spreadsheet opens safely and the import reads back.

A cell that a spreadsheet would run as a formula (it starts with = + - @, a tab or a carriage
return) gets a leading apostrophe; `subscribers.csvrows` drops it again on import.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from typing import TextIO

import sqlalchemy as sa
from sqlalchemy import Connection

from subscribers import service
from subscribers.csvrows import TOPIC_SEPARATOR
from subscribers.tables import lists, subscribers, subscriptions, suppressions

HEADER = ("email", "name", "list", "topics", "cadence", "status")
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# Rows are fetched from the database this many at a time, so memory stays flat.
_FETCH_SIZE = 1000


def neutralise(cell: str) -> str:
    """The cell as text a spreadsheet shows but never evaluates (OWASP "CSV injection")."""
    return "'" + cell if cell.startswith(_FORMULA_STARTS) else cell


def write_csv(conn: Connection, out: TextIO, *, list_name: str | None = None) -> int:
    """Write the header and one row per subscription (or per person on no list); the row count.

    With `list_name`, only that list's subscriptions, whatever their status. `status` is the
    most telling state, as in `service.list_subscribers`.
    """
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(HEADER)
    written = 0
    for row in _rows(conn, list_name):
        writer.writerow([neutralise(cell) for cell in row])
        written += 1
    return written


def _rows(conn: Connection, list_name: str | None) -> Iterator[tuple[str, ...]]:
    is_suppressed = sa.exists().where(suppressions.c.email == subscribers.c.email)
    query = (
        sa.select(
            subscribers.c.email,
            subscribers.c.name,
            subscribers.c.status.label("person_status"),
            lists.c.name.label("list_name"),
            subscriptions.c.topics,
            subscriptions.c.frequency,
            subscriptions.c.status.label("subscription_status"),
            is_suppressed.label("is_suppressed"),
        )
        .select_from(
            subscribers.outerjoin(
                subscriptions, subscriptions.c.subscriber_id == subscribers.c.id
            ).outerjoin(lists, lists.c.id == subscriptions.c.list_id)
        )
        .order_by(sa.func.coalesce(lists.c.name, ""), subscribers.c.email)
    )
    if list_name is not None:
        query = query.where(subscriptions.c.list_id == service.require_list(conn, list_name))
    for row in conn.execute(query.execution_options(yield_per=_FETCH_SIZE)):
        yield (
            row.email,
            row.name,
            row.list_name or "",
            TOPIC_SEPARATOR.join(row.topics or ()),
            row.frequency or "",
            _status(row.person_status, bool(row.is_suppressed), row.subscription_status),
        )


def _status(person: str, suppressed: bool, subscription: str | None) -> str:
    """The person's own status unless active, then "suppressed", then the subscription's."""
    if person != "active":
        return person
    if suppressed:
        return "suppressed"
    return subscription or "none"
