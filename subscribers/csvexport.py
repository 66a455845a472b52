"""CSV export: every subscription as a row a spreadsheet opens safely and the import reads back.

A cell that a spreadsheet would run as a formula (it starts with = + - @, a tab or a carriage
return) gets a leading apostrophe; `subscribers.csvrows` drops it again on import.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from typing import TextIO

from sqlalchemy import Connection

from subscribers import service
from subscribers.csvrows import TOPIC_SEPARATOR

HEADER = ("email", "name", "list", "topics", "cadence", "status")
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


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
    for row in service.iter_subscribers(conn, list_name):
        yield (
            row.email,
            row.name,
            row.list,
            TOPIC_SEPARATOR.join(row.topics),
            row.cadence,
            row.status,
        )
