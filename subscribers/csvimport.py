"""CSV import: each row becomes a subscriber of one list; a bad row is reported, never fatal.

The header row names the columns (any order, any case): `email` is required, `name` and
`topics` (names separated by ';') are optional; other columns are ignored. Without a `topics`
column an existing subscriber keeps their topic choice; an empty cell means every topic.
An import never re-subscribes someone who unsubscribed from the list: that row is rejected.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection

from subscribers import service
from subscribers.models import ImportReport
from subscribers.service import SubscriberError

_TOPIC_SEP = ";"


@dataclass(frozen=True, slots=True)
class _Row:
    email: str
    name: str
    topics: tuple[str, ...] | None  # None: the file has no topics column


class _Rejected(SubscriberError):
    """A row left out; the message is the reason shown to the operator."""


def import_csv(
    conn: Connection,
    text: str,
    *,
    list_name: str,
    consent: str,
    topics_known: Sequence[str] | None = None,
    now: datetime,
) -> ImportReport:
    """Add or update everyone in `text` on `list_name`, logging `consent` for each one.

    With `topics_known`, topic names are matched case-insensitively against it and an unknown
    one rejects the row. Raises SubscriberError only for a problem with the whole file (no
    `email` column), an unknown list or an empty consent note.
    """
    note = service.require_consent(consent)
    target = service.require_list(conn, list_name)
    known = None if topics_known is None else {t.strip().lower(): t.strip() for t in topics_known}
    lines = _numbered_rows(text)
    columns = _read_header(lines)
    added = updated = 0
    rejected: list[tuple[int, str]] = []
    first_seen: dict[str, int] = {}
    for line, fields in lines:
        try:
            if isinstance(fields, csv.Error):
                raise _Rejected(f"unreadable CSV: {fields}")
            if not any(field.strip() for field in fields):
                continue
            row = _parse_row(fields, columns, known)
            if row.email in first_seen:
                raise _Rejected(f"{row.email} repeats line {first_seen[row.email]}")
            first_seen[row.email] = line
            if service.subscription_status(conn, row.email, target) == "unsubscribed":
                raise _Rejected(
                    f"{row.email} unsubscribed from {list_name}; an import does not re-subscribe"
                )
            _, is_new = service.enrol(
                conn,
                row.email,
                list_id=target,
                name=row.name,
                topics=row.topics,
                action="imported",
                note=note,
                now=now,
            )
        except SubscriberError as error:
            rejected.append((line, str(error)))
            continue
        if is_new:
            added += 1
        else:
            updated += 1
    return ImportReport(added=added, updated=updated, rejected=tuple(rejected))


def _numbered_rows(text: str) -> Iterator[tuple[int, list[str] | csv.Error]]:
    """(first line number, fields) per record; a quoted field may span several lines."""
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    while True:
        start = reader.line_num + 1
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            yield start, error
            continue
        yield start, fields


def _read_header(lines: Iterator[tuple[int, list[str] | csv.Error]]) -> dict[str, int]:
    """Column name (lower-case) → index; the first occurrence of a name wins."""
    first = next(lines, None)
    if first is None or isinstance(first[1], csv.Error):
        raise SubscriberError("the CSV has no header row (it needs at least an 'email' column)")
    columns: dict[str, int] = {}
    for index, title in enumerate(first[1]):
        columns.setdefault(title.strip().lower(), index)
    if "email" not in columns:
        found = ", ".join(repr(title) for title in first[1])
        raise SubscriberError(f"the CSV header has no 'email' column (found: {found})")
    return columns


def _parse_row(
    fields: list[str], columns: Mapping[str, int], known: Mapping[str, str] | None
) -> _Row:
    if len(fields) > len(columns) and any(field.strip() for field in fields[len(columns) :]):
        raise _Rejected(f"{len(fields)} fields but the header has {len(columns)}")

    def cell(column: str) -> str:
        index = columns.get(column)
        return fields[index].strip() if index is not None and index < len(fields) else ""

    if not cell("email"):
        raise _Rejected("the email cell is empty")
    email = service.normalise_email(cell("email"))
    topics = None
    if "topics" in columns:
        topics = service.clean_topics(cell("topics").split(_TOPIC_SEP))
        if known is not None:
            topics = tuple(_known_topic(name, known) for name in topics)
    return _Row(email=email, name=" ".join(cell("name").split()), topics=topics)


def _known_topic(name: str, known: Mapping[str, str]) -> str:
    canonical = known.get(name.lower())
    if canonical is None:
        choices = ", ".join(sorted(known.values())) or "none"
        raise _Rejected(f"unknown topic {name!r} (known: {choices})")
    return canonical
