"""Subscriber CSV import (subscribers/csvrows.py, csvimport.py) on hostile files.

Any text, in any encoding, with NULs, stray quotes, BOMs, huge fields and formula cells: each
row is imported clean or rejected with a one-line reason, only a file without a usable header
is refused whole, nothing unsafe reaches the database, and a never-closed quote cannot make
the import hold the rest of the file in memory.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from subscribers import service, tables
from subscribers.csvexport import write_csv
from subscribers.csvimport import import_csv
from subscribers.csvrows import ImportRow, RowRejected, map_columns, numbered_records, read_row
from subscribers.service import MAX_NAME, SubscriberError
from tests.fuzz.hostile import FUZZ, assert_one_line, peak_memory
from tests.subscribers.conftest import db, postgres_db, sqlite_db

__all__ = ["db", "postgres_db", "sqlite_db"]  # the subscriber tests' databases, both passes

NOW = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)
# Tests with no database: the PostgreSQL pass skips them.
NO_DATABASE = pytest.mark.nodb
NOTE = "hostile.csv, 2025-03"
UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
HEADERS = ["email", "E-mail Address", "Name", "First Name", "Surname", "Topics", "Frequency",
           "Status", "\ufeffemail", "", "email "]  # fmt: skip
CELLS = st.sampled_from(
    [
        "ann@example.org",
        "ANN@Example.ORG",
        "x@bücher.example",
        '=HYPERLINK("http://evil.example","click")',
        "'=1+1",
        "+1",
        "-1",
        "@SUM(A1)",
        "\tname",
        "a\x00b@example.org",
        "bob@example.org\r\nBcc: eve@example.org",
        "\udcff@example.org",
        "daily",
        "weekly",
        "unsubscribed",
        "cleaned",
        "Science;Sport",
        "\u2028",
        "\ufeff",
        '"',
        "",
    ]
)
cells = CELLS | st.text(max_size=30)


@st.composite
def csv_texts(draw: st.DrawFn) -> str:
    """A CSV file as text: a plausible header, then rows of hostile cells, written properly or
    broken by hand (stray quotes, missing or extra fields, mixed line ends)."""
    header = draw(st.lists(st.sampled_from(HEADERS) | st.text(max_size=12), min_size=1, max_size=6))
    rows = draw(st.lists(st.lists(cells, max_size=len(header) + 2), max_size=8))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=draw(st.sampled_from(["\r\n", "\n", "\r"])))
    writer.writerow(header)
    writer.writerows(rows)
    text = out.getvalue()
    if draw(st.booleans()):  # damage it: a quote, a NUL or a line break somewhere
        at = draw(st.integers(0, len(text)))
        text = (
            text[:at] + draw(st.sampled_from(['"', "\x00", "\n", '""', ",", "\ufeff"])) + text[at:]
        )
    return text


def check_row(row: ImportRow | None) -> None:
    if row is None:
        return
    assert row.email == row.email.lower() and "@" in row.email
    assert not UNSAFE.search(row.email)
    if row.name is not None:
        assert not UNSAFE.search(row.name) and len(row.name) <= MAX_NAME
    for topic in row.topics or ():
        assert not UNSAFE.search(topic)
    assert row.cadence in (None, *service.FREQUENCIES)
    assert row.withdrawn in (None, "unsubscribed", "suppressed")


@NO_DATABASE
@settings(FUZZ, max_examples=100)
@given(text=csv_texts() | st.text(max_size=300), topics=st.none() | st.just(["Science", "Sport"]))
def test_every_row_is_clean_or_rejected_with_one_line(text: str, topics: list[str] | None) -> None:
    records = numbered_records(text)
    header = next(records, None)
    if header is None or not isinstance(header[1], list):
        return  # import_csv refuses this file whole (tested below)
    try:
        columns = map_columns(header[1], {})
    except SubscriberError as error:
        assert_one_line(str(error), naming="column")
        return
    known = None if topics is None else {t.lower(): t for t in topics}
    for record in records:
        try:
            row = read_row(record, columns, known)
        except RowRejected as error:
            assert_one_line(str(error), naming=":")  # "kind: detail"
            continue
        check_row(row)


@settings(FUZZ, max_examples=40)
@given(
    text=csv_texts(),
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "cp1252", "latin-1", "utf-16", "shift_jis"]),
)
def test_any_file_imports_row_by_row_and_stores_only_clean_values(
    db: sa.Engine, tmp_path: Path, text: str, encoding: str
) -> None:
    """The file as `digest subscribers import` opens it (UTF-8, undecodable bytes kept apart),
    written in another encoding than it is read in; then into a real database."""
    path = tmp_path / "people.csv"
    path.write_bytes(text.encode(encoding, errors="replace"))
    with db.begin() as conn:
        service.ensure_list(conn, "weekly", now=NOW)
    with path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as handle:
        try:
            with db.begin() as conn:
                report = import_csv(conn, handle, list_name="weekly", consent=NOTE, now=NOW)
        except SubscriberError as error:
            assert_one_line(str(error), naming=" ")
            return
    for line, reason in report.rejected:
        assert line >= 2
        assert_one_line(reason, naming=":")
    with db.connect() as conn:
        stored = conn.execute(sa.select(tables.subscribers.c.email, tables.subscribers.c.name))
        for email, name in stored:
            assert not UNSAFE.search(email) and not UNSAFE.search(name or "")


@settings(FUZZ, max_examples=20)
@given(
    name=CELLS
    | st.text(
        alphabet=st.characters(codec="utf-8", exclude_categories=["Cc", "Cs", "Zl", "Zp"]),
        max_size=30,
    )
)
def test_formula_cells_are_neutralised_on_export_and_read_back_as_written(
    db: sa.Engine, name: str
) -> None:
    """A name that a spreadsheet would run gets an apostrophe in the export; importing the
    export gives the name back as the person wrote it."""
    with db.begin() as conn:
        service.ensure_list(conn, "weekly", now=NOW)
        source = io.StringIO()
        csv.writer(source).writerows([["email", "name"], ["ann@example.org", name]])
        first = import_csv(conn, source.getvalue(), list_name="weekly", consent=NOTE, now=NOW)
        if first.rejected or not name.split():
            return  # no name (too long, or blank: theirs is kept), nothing new to export
        exported = io.StringIO()
        write_csv(conn, exported, list_name="weekly")
    rows = list(csv.reader(io.StringIO(exported.getvalue())))
    written = rows[1][rows[0].index("name")]
    assert not written.startswith(("=", "+", "-", "@", "\t", "\r"))
    with db.begin() as conn:
        again = import_csv(conn, exported.getvalue(), list_name="weekly", consent=NOTE, now=NOW)
        assert again.rejected == ()
        person = service.find_person(conn, "ann@example.org")
    assert person is not None and person.name == " ".join(name.split())


def test_a_file_without_a_header_is_refused_whole(sqlite_db: sa.Engine) -> None:
    with sqlite_db.begin() as conn:
        service.ensure_list(conn, "weekly", now=NOW)
        for text in ("", '"never closed\n' + "x" * 200_000, "name,topics\nann,Science\n"):
            with pytest.raises(SubscriberError) as caught:
                import_csv(conn, text, list_name="weekly", consent=NOTE, now=NOW)
            assert_one_line(str(caught.value), naming=" ")


@NO_DATABASE
def test_a_never_closed_quote_is_read_in_bounded_memory() -> None:
    """20 MB after an unclosed quote, streamed as a file's lines: the field stops at the CSV
    field limit, the reader goes on, and memory stays far below the file's size."""

    def lines() -> object:
        yield "email,name\n"
        yield '"ann@example.org","' + "\n"
        for _ in range(20_000):
            yield "x" * 1_000 + "\n"

    def read_all() -> tuple[int, int]:
        errors = rows = 0
        for _line, fields in numbered_records(lines()):  # type: ignore[arg-type]
            errors += isinstance(fields, csv.Error)
            rows += isinstance(fields, list)
        return errors, rows

    (errors, rows), peak = peak_memory(read_all)
    assert errors >= 1 and rows >= 2
    assert peak < 4_000_000, peak


@NO_DATABASE
def test_a_line_without_end_is_read_in_bounded_memory(tmp_path: Path) -> None:
    """20 MB on one line, read from a file as the import command opens it: that line is one
    rejected record, the rows after it still come, and memory stays far below its size."""
    path = tmp_path / "people.csv"
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("email,name\r\n")
        out.write("ann@example.org," + "x" * 20_000_000 + "\r\n")
        out.write("bob@example.org,Bob\r\n")

    def read_all() -> list[tuple[int, object]]:
        with path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as handle:
            return list(numbered_records(handle))

    records, peak = peak_memory(read_all)
    header, long_line, bob = records
    assert header == (1, ["email", "name"])
    assert long_line[0] == 2 and isinstance(long_line[1], csv.Error)
    with pytest.raises(RowRejected) as rejected:
        read_row(long_line, map_columns(header[1], {}), None)
    assert str(rejected.value) == "unreadable CSV: line longer than 1000000 characters"
    assert bob == (3, ["bob@example.org", "Bob"])
    assert peak < 8_000_000, peak
