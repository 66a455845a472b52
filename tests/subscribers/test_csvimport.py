"""Tests for subscribers/csvimport.py on a real SQLite file."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from subscribers import service, tables
from subscribers.csvimport import import_csv
from subscribers.service import SubscriberError

NOW = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)
TOPICS = ["Climate", "Tech", "Science"]


def run_import(engine: sa.Engine, text: str, **options: object) -> object:
    with engine.begin() as conn:
        return import_csv(
            conn, text, list_name="weekly", consent="newsletter.csv, 2025-03", now=NOW, **options
        )


def audience_topics(engine: sa.Engine) -> dict[str, tuple[str, ...]]:
    with engine.connect() as conn:
        return {r.email: r.topics for r in service.audience(conn, "weekly")}


def test_a_bad_row_in_the_middle_is_reported_and_the_others_imported(weekly: sa.Engine) -> None:
    text = "email,name\nann@example.org,Ann\nnot-an-email,Nobody\nbob@example.org,Bob\n"

    report = run_import(weekly, text)

    assert (report.added, report.updated) == (2, 0)
    assert len(report.rejected) == 1
    line, reason = report.rejected[0]
    assert line == 3
    assert "not-an-email" in reason and "\n" not in reason
    assert list(audience_topics(weekly)) == ["ann@example.org", "bob@example.org"]


def test_a_repeated_address_is_rejected_whatever_its_case(weekly: sa.Engine) -> None:
    report = run_import(weekly, "email\nann@example.org\nbob@example.org\nANN@Example.org\n")

    assert report.added == 2
    assert report.rejected == ((4, "ann@example.org repeats line 2"),)


def test_topics_are_matched_to_known_names_and_unknown_ones_rejected(weekly: sa.Engine) -> None:
    text = (
        "Email,Topics\n"
        "ann@example.org,tech; climate\n"
        "bob@example.org,Tech;Gardening\n"
        "cy@example.org,\n"
    )

    report = run_import(weekly, text, topics_known=TOPICS)

    assert report.added == 2
    [(line, reason)] = report.rejected
    assert line == 3 and "Gardening" in reason and "Climate" in reason
    assert audience_topics(weekly) == {
        "ann@example.org": ("Tech", "Climate"),
        "cy@example.org": (),
    }


def test_each_imported_person_gets_a_consent_record(weekly: sa.Engine) -> None:
    run_import(weekly, "email\nann@example.org\nbob@example.org\n")

    with weekly.connect() as conn:
        events = conn.execute(
            sa.select(tables.consent_events.c.action, tables.consent_events.c.note)
        ).all()
    assert [tuple(e) for e in events] == [("imported", "newsletter.csv, 2025-03")] * 2


def test_reimport_updates_without_losing_known_details(weekly: sa.Engine) -> None:
    run_import(weekly, "email,name,topics\nann@example.org,Ann,Tech\n")

    report = run_import(weekly, "email,name\nANN@example.org,\nbob@example.org,Bob\n")

    assert (report.added, report.updated, report.rejected) == (1, 1, ())
    assert audience_topics(weekly)["ann@example.org"] == ("Tech",)
    with weekly.connect() as conn:
        names = {r.email: r.name for r in service.list_subscribers(conn, "weekly")}
    assert names == {"ann@example.org": "Ann", "bob@example.org": "Bob"}


def test_an_import_never_resubscribes_someone_who_unsubscribed(weekly: sa.Engine) -> None:
    with weekly.begin() as conn:
        ann = service.add_subscriber(
            conn, "ann@example.org", list_name="weekly", consent="form", now=NOW
        )
        service.unsubscribe(conn, ann.id, "weekly", via="one-click", now=NOW)

    report = run_import(weekly, "email\nann@example.org\n")

    assert report.added == report.updated == 0
    assert report.rejected[0][0] == 2 and "unsubscribed" in report.rejected[0][1]
    assert audience_topics(weekly) == {}


def test_line_numbers_count_physical_lines_and_blank_rows_are_skipped(weekly: sa.Engine) -> None:
    text = (
        '\ufeffName,EMAIL\n"Ann\nof Example",ann@example.org\n\n,\nBob,bob@example\n'
        "Cy,cy@example.org,surplus\n"
    )

    report = run_import(weekly, text)

    assert report.added == 1
    assert [line for line, _ in report.rejected] == [6, 7]
    assert "fields but the header has 2" in report.rejected[1][1]
    with weekly.connect() as conn:
        assert [r.name for r in service.list_subscribers(conn, "weekly")] == ["Ann of Example"]


@pytest.mark.parametrize("text", ["", "name,topics\nAnn,Tech\n"])
def test_a_file_without_an_email_column_is_refused_whole(weekly: sa.Engine, text: str) -> None:
    with pytest.raises(SubscriberError, match="email"):
        run_import(weekly, text)


def test_an_unknown_list_is_refused(weekly: sa.Engine) -> None:
    with weekly.begin() as conn, pytest.raises(service.UnknownList):
        import_csv(conn, "email\nann@example.org\n", list_name="monthly", consent="x", now=NOW)
