"""Tests for subscribers/csvexport.py on real databases."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from subscribers import service, tables
from subscribers.csvexport import neutralise, write_csv
from subscribers.csvimport import import_csv

NOW = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("cell", "shown"),
    [
        ("=1+1", "'=1+1"),
        ("+31 20 123", "'+31 20 123"),
        ("-x@example.org", "'-x@example.org"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tTab", "'\tTab"),
        ("\rCR", "'\rCR"),
        ("Ann = Bob", "Ann = Bob"),
        ("", ""),
    ],
)
def test_a_cell_a_spreadsheet_would_evaluate_gets_an_apostrophe(cell: str, shown: str) -> None:
    assert neutralise(cell) == shown


def exported(engine: sa.Engine, list_name: str | None = None) -> list[list[str]]:
    out = io.StringIO(newline="")
    with engine.connect() as conn:
        written = write_csv(conn, out, list_name=list_name)
    rows = list(csv.reader(io.StringIO(out.getvalue(), newline="")))
    assert written == len(rows) - 1
    return rows


def test_export_writes_each_subscription_with_its_status(db: sa.Engine) -> None:
    with db.begin() as conn:
        service.ensure_list(conn, "weekly", now=NOW)
        service.ensure_list(conn, "daily", now=NOW)
        ann = service.add_subscriber(
            conn,
            "ann@example.org",
            list_name="weekly",
            name="=cmd|' /C calc'!A0",
            topics=["Tech", "Climate"],
            frequency="daily",
            consent="form",
            now=NOW,
        )
        service.add_subscriber(conn, "ann@example.org", list_name="daily", consent="x", now=NOW)
        service.unsubscribe(conn, ann.id, "daily", via="link", now=NOW)
        service.add_subscriber(conn, "bob@example.org", list_name="weekly", consent="x", now=NOW)
        service.suppress(conn, "bob@example.org", reason="bounce", now=NOW)

    rows = exported(db)

    assert rows == [
        ["email", "name", "list", "topics", "cadence", "status"],
        ["ann@example.org", "'=cmd|' /C calc'!A0", "daily", "", "weekly", "unsubscribed"],
        ["ann@example.org", "'=cmd|' /C calc'!A0", "weekly", "Tech;Climate", "daily", "active"],
        ["bob@example.org", "", "weekly", "", "weekly", "bounced"],
    ]
    assert [row[2] for row in exported(db, "daily")[1:]] == ["daily"]


def test_an_export_imports_back_as_it_was_and_keeps_who_left_out(db: sa.Engine) -> None:
    with db.begin() as conn:
        service.ensure_list(conn, "weekly", now=NOW)
        import_csv(
            conn,
            "email,name,topics,cadence\n-ann@example.org,@Ann,Tech,each\n"
            "bob@example.org,+Bob,,\ncy@example.org,Cy,,paused\n",
            list_name="weekly",
            consent="form",
            now=NOW,
        )
        cy = service.find_person(conn, "cy@example.org")
        assert cy is not None
        service.unsubscribe(conn, cy.id, "weekly", via="link", now=NOW)
    text = "\r\n".join(",".join(row) for row in exported(db)) + "\r\n"
    with db.begin() as conn:
        for person in ("-ann@example.org", "bob@example.org", "cy@example.org"):
            service.forget_person(conn, person, now=NOW)
        conn.execute(sa.delete(tables.suppressions))
        report = import_csv(conn, text, list_name="weekly", consent="moved", now=NOW)

    assert (report.imported, report.unsubscribed) == (2, 1)
    assert [row[:5] for row in exported(db)[1:]] == [
        ["'-ann@example.org", "'@Ann", "weekly", "Tech", "each"],
        ["bob@example.org", "'+Bob", "weekly", "", "weekly"],
    ]
