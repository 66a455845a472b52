"""CSV import: stream a file of people onto one list, reporting every row it leaves out.

Columns and row checks are in `subscribers.csvrows`, the batched writes in
`subscribers.importbatch`. A row is checked whole before anything is written, and its writes
are atomic. An import never re-activates an address that is
suppressed or unsubscribed: those rows are counted, not imported. Imported rows become active
with the operator's consent note logged, or, with double opt-in, pending until the person
confirms. Without a topics, name or cadence column an existing subscriber keeps theirs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from queue import Full, Queue
from typing import TypeVar

from sqlalchemy import Connection

from subscribers import service
from subscribers.bulk import on_postgres
from subscribers.checks import utc
from subscribers.csvrows import (
    ColumnMap,
    ImportRow,
    Record,
    RowRejected,
    map_columns,
    numbered_records,
    read_row,
)
from subscribers.importbatch import ImportPlan, Outcome, PendingConfirmation, write_rows
from subscribers.importrows import RowsRead
from subscribers.service import SubscriberError

__all__ = ["BATCH_SIZE", "COPY_BATCH_SIZE", "ImportReport", "PendingConfirmation", "import_csv"]

# Rows are checked one by one and written in batches: one savepoint and a few statements per
# batch instead of per row. 1000 keeps each IN (...) list well under every driver's limit.
BATCH_SIZE = 1000
# PostgreSQL's batches are COPYed and matched with one array parameter, with no such limit:
# bigger batches mean fewer round trips to the server.
COPY_BATCH_SIZE = 10_000

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What an import did, row by row.

    `imported` counts rows whose person is now on the list (active, or pending with double
    opt-in), `added` those of them who were not on it before. `duplicates` counts rows that
    repeat an earlier address (each is also in `rejected`, as (line, reason)); `suppressed`
    and `unsubscribed` count rows left alone because the address must not be mailed or has
    left. `pending` lists whom a confirmation email is owed.
    """

    imported: int
    added: int
    duplicates: int
    suppressed: int
    unsubscribed: int
    rejected: tuple[tuple[int, str], ...]
    pending: tuple[PendingConfirmation, ...]

    def to_json(self) -> dict[str, object]:
        return {
            "imported": self.imported,
            "duplicates": self.duplicates,
            "rejected": [{"line": line, "reason": reason} for line, reason in self.rejected],
            "added": self.added,
            "pending": len(self.pending),
            "suppressed": self.suppressed,
            "unsubscribed": self.unsubscribed,
        }


def import_csv(
    conn: Connection,
    source: str | Iterable[str],
    *,
    list_name: str,
    consent: str = "",
    double_opt_in: bool = False,
    columns: Mapping[str, str] | None = None,
    topics_known: Sequence[str] | None = None,
    now: datetime,
    on_batch: Callable[[int], None] | None = None,
) -> ImportReport:
    """Put everyone in `source` on `list_name`; a bad row is reported, never fatal.

    `source` is the file's text, or its lines (a file opened with newline=""), read once.
    `consent` is how these people agreed (logged for each); `double_opt_in` instead leaves
    them pending. `columns` maps fields to headers; with `topics_known`, an unknown topic
    rejects the row. Raises SubscriberError only for the whole file: no email column, an
    unknown list or column, no consent and no double opt-in. `on_batch` gets the number of
    records read each time a batch is written.
    """
    if double_opt_in and consent.strip():
        raise SubscriberError("choose a consent note or double opt-in, not both")
    plan = ImportPlan(
        list_id=service.require_list(conn, list_name),
        list_name=list_name,
        double_opt_in=double_opt_in,
        note="" if double_opt_in else service.require_consent(consent),
        at=utc(now),
    )
    known = None if topics_known is None else {t.strip().lower(): t.strip() for t in topics_known}
    records = numbered_records(source)
    header = next(records, None)
    if header is None or not isinstance(header[1], list):
        raise SubscriberError("the CSV has no header row (it needs at least an email column)")
    mapping = map_columns(header[1], columns or {})
    totals = Outcome()
    rejected: list[tuple[int, str]] = []
    seen = RowsRead(conn)
    batch_size = COPY_BATCH_SIZE if on_postgres(conn) else BATCH_SIZE
    checked = _checked_batches(records, mapping, known, batch_size)
    # Rows are read and checked in a thread while the batch before is written: the checks are
    # Python's work, the writes mostly the database's, so on two cores they overlap.
    with closing(read_ahead(checked)) as batches:
        for batch in batches:
            rejected.extend(batch.rejected)
            fresh = seen.keep_first(batch.rows, rejected)
            totals.add(write_rows(conn, fresh, plan, seen.among))
            if on_batch is not None:
                on_batch(batch.read)
    seen.drop()
    return ImportReport(
        imported=totals.imported,
        added=totals.added,
        duplicates=seen.duplicates,
        suppressed=totals.suppressed,
        unsubscribed=totals.unsubscribed,
        rejected=tuple(sorted(rejected + totals.refused)),
        pending=tuple(totals.pending),
    )


@dataclass(frozen=True, slots=True)
class _CheckedBatch:
    """Up to a batch of checked rows, the records refused among them, and records read so far."""

    rows: list[ImportRow]
    rejected: list[tuple[int, str]]
    read: int


def _checked_batches(
    records: Iterator[Record], mapping: ColumnMap, known: Mapping[str, str] | None, size: int
) -> Iterator[_CheckedBatch]:
    """Every record checked, in batches of `size` rows; always ends with one (maybe empty)."""
    rows: list[ImportRow] = []
    rejected: list[tuple[int, str]] = []
    read = 0
    for record in records:
        read += 1
        try:
            row = read_row(record, mapping, known)
        except RowRejected as error:
            rejected.append((record[0], str(error)))
            continue
        if row is not None:
            rows.append(row)
        if len(rows) == size:
            yield _CheckedBatch(rows, rejected, read)
            rows, rejected = [], []
    yield _CheckedBatch(rows, rejected, read)


_END = object()


def read_ahead(items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """`items`, produced in a thread up to `depth` ahead of the caller.

    An exception in the thread is raised here, in order; if the caller stops early, the thread
    stops at its next item. Memory stays at `depth` items whatever the length.
    """
    queue: Queue[object] = Queue(maxsize=depth)
    stopped = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if not _offer(queue, item, stopped):
                    return
            _offer(queue, _END, stopped)
        except BaseException as error:  # noqa: BLE001 - handed to the reader, raised there
            _offer(queue, _Failed(error), stopped)

    thread = threading.Thread(target=produce, name="import-reader", daemon=True)
    thread.start()
    try:
        while (item := queue.get()) is not _END:
            if isinstance(item, _Failed):
                raise item.error
            yield item  # type: ignore[misc]
    finally:
        stopped.set()
        thread.join()


@dataclass(frozen=True, slots=True)
class _Failed:
    error: BaseException


def _offer(queue: Queue[object], item: object, stopped: threading.Event) -> bool:
    """Put `item` once there is room; False if the reader went away first."""
    while not stopped.is_set():
        try:
            queue.put(item, timeout=0.1)
            return True
        except Full:
            continue
    return False
