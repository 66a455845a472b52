"""Tests for subscribers/csvimport.py and csvrows.py on real databases."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from subscribers import csvimport, importrows, service, tables
from subscribers.csvimport import ImportReport, import_csv
from subscribers.csvrows import parse_column_option
from subscribers.models import Consent
from subscribers.service import SubscriberError
from tests.subscribers.conftest import sqlite_engine

NOW = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)
TOPICS = ["Climate", "Tech", "Science"]
NOTE = "newsletter.csv, 2025-03"


@pytest.fixture
def lists(db: sa.Engine) -> sa.Engine:
    """SQLite and PostgreSQL with the lists `weekly` and `daily`."""
    with db.begin() as conn:
        service.ensure_list(conn, "weekly", title="Weekly News", now=NOW)
        service.ensure_list(conn, "daily", now=NOW)
    return db


def run_import(engine: sa.Engine, source: object, **options: object) -> ImportReport:
    options.setdefault("consent", "" if options.get("double_opt_in") else NOTE)
    with engine.begin() as conn:
        return import_csv(conn, source, list_name="weekly", now=NOW, **options)  # type: ignore[arg-type]


def audience_topics(engine: sa.Engine) -> dict[str, tuple[str, ...]]:
    with engine.connect() as conn:
        return {r.email: r.topics for r in service.audience(conn, "weekly")}


def statuses(engine: sa.Engine) -> dict[str, tuple[str, str]]:
    """address → (person status, subscription status on `weekly`)."""
    s, sub, lst = tables.subscribers, tables.subscriptions, tables.lists
    query = (
        sa.select(s.c.email, s.c.status, sub.c.status.label("on_list"))
        .join(sub, sub.c.subscriber_id == s.c.id)
        .join(lst, lst.c.id == sub.c.list_id)
        .where(lst.c.name == "weekly")
    )
    with engine.connect() as conn:
        return {row.email: (row.status, row.on_list) for row in conn.execute(query)}


def person_id(conn: sa.Connection, email: str) -> int | None:
    found = sa.select(tables.subscribers.c.id).where(tables.subscribers.c.email == email)
    return conn.execute(found).scalar()


def consent_log(engine: sa.Engine) -> list[tuple[str, str, str, str]]:
    """(email, action, note, source) for every consent event, oldest first."""
    s, events = tables.subscribers, tables.consent_events
    query = (
        sa.select(s.c.email, events.c.action, events.c.note, events.c.source)
        .join(s, s.c.id == events.c.subscriber_id)
        .order_by(events.c.id)
    )
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(query)]


def test_a_bad_row_in_the_middle_is_reported_and_the_others_imported(lists: sa.Engine) -> None:
    text = "email,name\nann@example.org,Ann\nnot-an-email,Nobody\nbob@example.org,Bob\n"

    report = run_import(lists, text)

    assert (report.imported, report.added, report.duplicates) == (2, 2, 0)
    [(line, reason)] = report.rejected
    assert line == 3
    assert reason.startswith("bad address: 'not-an-email'") and "\n" not in reason
    assert list(audience_topics(lists)) == ["ann@example.org", "bob@example.org"]
    assert report.to_json()["rejected"] == [{"line": 3, "reason": reason}]


def test_a_repeated_address_is_a_duplicate_whatever_its_case_and_batch(
    lists: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(csvimport, "BATCH_SIZE", 2)
    monkeypatch.setattr(csvimport, "COPY_BATCH_SIZE", 2)
    text = (
        "email\nann@example.org\nbob@example.org\ncy@example.org\nANN@Example.org\nbob@EXAMPLE.org"
    )

    report = run_import(lists, text)

    assert (report.imported, report.duplicates) == (3, 2)
    assert report.rejected == (
        (5, "duplicate: of line 2 (ann@example.org)"),
        (6, "duplicate: of line 3 (bob@example.org)"),
    )


def test_a_duplicate_of_a_rejected_or_suppressed_row_is_still_a_duplicate(
    lists: sa.Engine,
) -> None:
    with lists.begin() as conn:
        service.suppress(conn, "gone@example.org", reason="bounce", now=NOW)

    report = run_import(lists, "email\ngone@example.org\nGONE@example.org\n")

    assert (report.imported, report.suppressed, report.duplicates) == (0, 1, 1)
    assert [line for line, _ in report.rejected] == [3]


def test_topics_are_matched_to_known_names_and_unknown_ones_rejected(lists: sa.Engine) -> None:
    text = (
        "Email,Interests\n"
        'ann@example.org,"tech, climate"\n'
        "bob@example.org,Tech;Gardening\n"
        "cy@example.org,\n"
    )

    report = run_import(lists, text, topics_known=TOPICS)

    assert report.imported == 2
    [(line, reason)] = report.rejected
    assert line == 3 and reason.startswith("unknown topic: 'Gardening'") and "Climate" in reason
    assert audience_topics(lists) == {"ann@example.org": ("Tech", "Climate"), "cy@example.org": ()}


def test_cadence_column_is_recognised_and_an_unknown_cadence_rejected(lists: sa.Engine) -> None:
    text = "email,Frequency\nann@example.org,Daily\nbob@example.org,hourly\ncy@example.org,\n"

    report = run_import(lists, text)

    assert report.imported == 2
    assert report.rejected == (
        (3, "unknown cadence: 'hourly' (choose each, daily, weekly, paused)"),
    )
    with lists.connect() as conn:
        daily = [r.email for r in service.audience(conn, "weekly", cadence="daily")]
        weekly = [r.email for r in service.audience(conn, "weekly", cadence="weekly")]
    assert (daily, weekly) == (["ann@example.org"], ["cy@example.org"])


@pytest.mark.parametrize(
    ("cell", "reason"),
    [
        ('"Ann\r\nEvil: header"', "line break: CR/LF in column 'name'"),
        ('"Ann\nof Example"', "line break: CR/LF in column 'name'"),
        ("Ann\tTab", "control character: U+0009 in column 'name'"),
        ("Ann\x00", "control character: U+0000 in column 'name'"),
        ("Ann\u2028Bob", "control character: U+2028 in column 'name'"),
        ("Ann\udcff", "not UTF-8: undecodable bytes in column 'name'"),
    ],
)
def test_line_breaks_and_control_characters_in_a_field_reject_the_row(
    lists: sa.Engine, cell: str, reason: str
) -> None:
    report = run_import(lists, f"email,name\nann@example.org,{cell}\nbob@example.org,Bob\n")

    assert report.rejected == ((2, reason),)
    assert list(statuses(lists)) == ["bob@example.org"]


def test_a_status_column_saying_the_person_left_keeps_them_out(lists: sa.Engine) -> None:
    text = (
        "email,status\nann@example.org,active\nbob@example.org,Unsubscribed\n"
        "cy@example.org,bounced\ndi@example.org,cleaned\ned@example.org,\nfay@example.org,VIP\n"
    )

    report = run_import(lists, text, double_opt_in=True)

    assert (report.imported, report.unsubscribed, report.suppressed) == (3, 1, 2)
    assert [p.email for p in report.pending] == [
        "ann@example.org",
        "ed@example.org",
        "fay@example.org",
    ]


def test_a_line_break_in_a_column_the_import_ignores_is_harmless(lists: sa.Engine) -> None:
    report = run_import(lists, 'email,notes\nann@example.org,"two\nlines"\nbob@example.org,\n')

    assert (report.imported, report.rejected) == (2, ())


def test_common_header_spellings_are_recognised(lists: sa.Engine) -> None:
    text = "First Name,Last Name,E-mail Address,Tags\nAnn,Example,ann@example.org,Tech\n"

    report = run_import(lists, text)

    assert report.imported == 1
    with lists.connect() as conn:
        [row] = service.list_subscribers(conn, "weekly")
    assert (row.email, row.name, row.topics) == ("ann@example.org", "Ann Example", ("Tech",))


def test_explicit_columns_win_over_recognised_ones(lists: sa.Engine) -> None:
    text = "Work email,Email,Full name,Nick\nann@work.example,ann@home.example,Ann Example,annie\n"
    columns = dict(map(parse_column_option, ["email=work EMAIL", "name=Nick"]))

    report = run_import(lists, text, columns=columns)

    assert report.imported == 1
    with lists.connect() as conn:
        [row] = service.list_subscribers(conn, "weekly")
    assert (row.email, row.name) == ("ann@work.example", "annie")


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("email", "write FIELD=HEADER"),
        ("colour=Colour", r"unknown field \(choose email, name, topics, cadence, status\)"),
    ],
)
def test_a_bad_column_option_is_one_line(option: str, message: str) -> None:
    with pytest.raises(SubscriberError, match=message):
        parse_column_option(option)


def test_frequency_is_another_name_for_the_cadence_field() -> None:
    assert parse_column_option(" Frequency = How often ") == ("cadence", "How often")


@pytest.mark.parametrize(
    ("text", "columns", "message"),
    [
        ("", {}, "no header row"),
        ("name,topics\nAnn,Tech\n", {}, "no email column \\(found: 'name', 'topics'\\)"),
        ("Email,E-mail\na@example.org,b@example.org\n", {}, "two email columns"),
        ("email\na@example.org\n", {"name": "Full name"}, "--column name=Full name: no such"),
    ],
)
def test_a_file_without_a_usable_header_is_refused_whole(
    lists: sa.Engine, text: str, columns: dict[str, str], message: str
) -> None:
    with pytest.raises(SubscriberError, match=message):
        run_import(lists, text, columns=columns)
    assert statuses(lists) == {}


def test_each_imported_person_gets_a_consent_record(lists: sa.Engine) -> None:
    run_import(lists, "email\nann@example.org\nbob@example.org\n")

    assert consent_log(lists) == [
        ("ann@example.org", "imported", NOTE, "import"),
        ("bob@example.org", "imported", NOTE, "import"),
    ]


def test_reimport_updates_without_losing_known_details(lists: sa.Engine) -> None:
    run_import(lists, "email,name,topics,cadence\nann@example.org,Ann,Tech,daily\n")

    report = run_import(lists, "email,name\nANN@example.org,\nbob@example.org,Bob\n")

    assert (report.imported, report.added, report.rejected) == (2, 1, ())
    assert audience_topics(lists)["ann@example.org"] == ("Tech",)
    with lists.connect() as conn:
        rows = {r.email: r for r in service.list_subscribers(conn, "weekly")}
        daily = [r.email for r in service.audience(conn, "weekly", cadence="daily")]
    assert {email: row.name for email, row in rows.items()} == {
        "ann@example.org": "Ann",
        "bob@example.org": "Bob",
    }
    assert daily == ["ann@example.org"]


@pytest.mark.parametrize("double_opt_in", [False, True])
def test_an_import_never_reactivates_unsubscribed_or_suppressed_addresses(
    lists: sa.Engine, double_opt_in: bool
) -> None:
    with lists.begin() as conn:
        for address in ("left@example.org", "bounced@example.org"):
            person = service.add_subscriber(
                conn, address, list_name="weekly", consent="form", now=NOW
            )
        left = person_id(conn, "left@example.org")
        assert left is not None
        service.unsubscribe(conn, left, "weekly", via="one-click", now=NOW)
        service.suppress(conn, "bounced@example.org", reason="bounce", now=NOW)
        service.suppress(conn, "never@example.org", reason="spamreport", now=NOW)
        assert person.email == "bounced@example.org"
    before = statuses(lists)
    text = "email\nleft@example.org\nBounced@example.org\nnever@example.org\nnew@example.org\n"

    report = run_import(lists, text, double_opt_in=double_opt_in)

    assert (report.imported, report.suppressed, report.unsubscribed) == (1, 2, 1)
    assert report.rejected == ()
    assert {k: v for k, v in statuses(lists).items() if k != "new@example.org"} == before
    assert [p.email for p in report.pending] == (["new@example.org"] if double_opt_in else [])
    with lists.connect() as conn:
        assert not person_id(conn, "never@example.org")


def test_double_opt_in_leaves_new_people_pending_and_lists_who_to_confirm(
    lists: sa.Engine,
) -> None:
    with lists.begin() as conn:
        service.add_subscriber(conn, "old@example.org", list_name="weekly", consent="form", now=NOW)
        service.add_subscriber(conn, "other@example.org", list_name="daily", consent="x", now=NOW)
    text = "email,name,topics\nnew@example.org,New,Tech\nold@example.org,,\nother@example.org,,\n"

    report = run_import(lists, text, double_opt_in=True)

    assert (report.imported, report.added) == (3, 2)
    assert [(p.email, p.list_name, p.name, p.topics) for p in report.pending] == [
        ("new@example.org", "weekly", "New", ("Tech",)),
        ("other@example.org", "weekly", "", ()),
    ]
    assert statuses(lists) == {
        "new@example.org": ("pending", "pending"),
        "old@example.org": ("active", "active"),
        "other@example.org": ("active", "pending"),
    }
    assert list(audience_topics(lists)) == ["old@example.org"]
    requested = sorted((e, a, s) for e, a, _, s in consent_log(lists) if a == "requested")
    assert requested == [
        ("new@example.org", "requested", "import"),
        ("other@example.org", "requested", "import"),
    ]
    assert report.to_json()["pending"] == 2


def test_a_consent_note_activates_a_pending_subscription(lists: sa.Engine) -> None:
    run_import(lists, "email\nann@example.org\n", double_opt_in=True)

    report = run_import(lists, "email\nann@example.org\n")

    assert (report.imported, report.added, report.pending) == (1, 0, ())
    assert statuses(lists) == {"ann@example.org": ("active", "active")}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"consent": " "}, "consent note is required"),
        ({"consent": "form", "double_opt_in": True}, "not both"),
    ],
)
def test_an_import_needs_either_consent_or_double_opt_in(
    lists: sa.Engine, options: dict[str, object], message: str
) -> None:
    with pytest.raises(SubscriberError, match=message):
        run_import(lists, "email\nann@example.org\n", **options)


def refuse_to_log(conn: sa.Connection, email: str) -> None:
    """A trigger refusing the consent event of `email`, the last write an import makes for it."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql(
            "CREATE TRIGGER refuse BEFORE INSERT ON consent_events WHEN NEW.subscriber_id ="
            f" (SELECT id FROM subscribers WHERE email = '{email}')"
            " BEGIN SELECT RAISE(ABORT, 'bob may not be logged'); END"
        )
        return
    schema = conn.get_execution_options()["schema_translate_map"][None]
    conn.exec_driver_sql(
        f"CREATE FUNCTION {schema}.refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        f" IF NEW.subscriber_id = (SELECT id FROM {schema}.subscribers WHERE email = '{email}')"
        " THEN RAISE EXCEPTION 'bob may not be logged' USING ERRCODE = 'check_violation';"
        " END IF; RETURN NEW; END $$"
    )
    conn.exec_driver_sql(
        f"CREATE TRIGGER refuse BEFORE INSERT ON {schema}.consent_events"
        f" FOR EACH ROW EXECUTE FUNCTION {schema}.refuse()"
    )


def test_a_row_the_database_refuses_is_rejected_whole_and_the_batch_goes_on(
    db: sa.Engine,
) -> None:
    with db.begin() as conn:
        service.ensure_list(conn, "weekly", now=NOW)
        # The consent event is the row's last write: refusing it must undo the person too.
        refuse_to_log(conn, "bob@example.org")

    report = run_import(db, "email\nann@example.org\nbob@example.org\ncy@example.org\n")

    assert report.imported == 2
    assert report.rejected == ((3, "refused by the database: bob may not be logged"),)
    assert list(statuses(db)) == ["ann@example.org", "cy@example.org"]
    with db.connect() as conn:
        assert not person_id(conn, "bob@example.org")


def test_the_file_is_read_as_it_is_written_not_all_at_once(
    lists: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(csvimport, "BATCH_SIZE", 10)
    monkeypatch.setattr(csvimport, "COPY_BATCH_SIZE", 10)
    handed_out = 0

    def lines() -> Iterator[str]:
        nonlocal handed_out
        yield "email\r\n"
        for number in range(200):
            handed_out += 1
            yield f"person{number}@example.org\r\n"

    seen_at_batches: list[tuple[int, int]] = []
    report = run_import(
        lists, lines(), on_batch=lambda read: seen_at_batches.append((read, handed_out))
    )

    assert report.imported == 200
    # The reader runs ahead of the writes by at most two checked batches and the one it is
    # reading: when the first batch is written, at most 40 of the 200 lines have been read.
    assert seen_at_batches[0][0] == 10
    assert seen_at_batches[0][1] <= 40
    assert [read for read, _ in seen_at_batches] == [*range(10, 201, 10), 200]


def test_line_numbers_count_physical_lines_and_blank_rows_are_skipped(lists: sa.Engine) -> None:
    text = (
        '\ufeffName,EMAIL\n"Ann of",ann@example.org\n\n,\nBob,bob@example\n'
        'Cy,cy@example.org,surplus\n"Di\nDu",di@example.org\nEd,ed@example.org\n'
    )

    report = run_import(lists, text)

    assert (report.imported, [line for line, _ in report.rejected]) == (2, [5, 6, 7])
    assert report.rejected[1][1] == "too many fields: 3, but the header has 2"
    assert list(statuses(lists)) == ["ann@example.org", "ed@example.org"]


def test_cells_an_export_neutralised_import_as_they_were(lists: sa.Engine) -> None:
    report = run_import(lists, "email,name\n'-ann@example.org,'=Ann\n")

    assert report.imported == 1
    with lists.connect() as conn:
        [row] = service.list_subscribers(conn, "weekly")
    assert (row.email, row.name) == ("-ann@example.org", "=Ann")


def test_an_unknown_list_is_refused(lists: sa.Engine) -> None:
    with lists.begin() as conn, pytest.raises(service.UnknownList):
        import_csv(conn, "email\nann@example.org\n", list_name="monthly", consent="x", now=NOW)


def _start_as(conn: sa.Connection, state: str) -> None:
    """Put ann@example.org in a starting state before the same row is imported or enrolled."""
    service.ensure_list(conn, "weekly", now=NOW)
    service.ensure_list(conn, "daily", now=NOW)
    form = Consent(source="subscribe-form")
    if state == "active":
        service.add_subscriber(
            conn,
            "ann@example.org",
            list_name="weekly",
            name="Ann",
            topics=["Tech"],
            frequency="daily",
            consent="form",
            now=NOW,
        )
    elif state == "pending":
        service.subscribe(conn, "ann@example.org", list_name="weekly", consent=form, now=NOW)
    elif state == "on another list":
        service.add_subscriber(
            conn, "ann@example.org", list_name="daily", name="Ann", consent="form", now=NOW
        )
    elif state == "pending on another list":
        service.subscribe(conn, "ann@example.org", list_name="daily", consent=form, now=NOW)


def _snapshot(conn: sa.Connection) -> tuple[object, ...]:
    s, sub, lst = tables.subscribers, tables.subscriptions, tables.lists
    person = conn.execute(sa.select(s.c.name, s.c.status)).all()
    memberships = conn.execute(
        sa.select(lst.c.name, sub.c.status, sub.c.topics, sub.c.frequency)
        .join(lst, lst.c.id == sub.c.list_id)
        .order_by(lst.c.name)
    ).all()
    return tuple(map(tuple, person)), tuple(map(tuple, memberships))


@pytest.mark.parametrize("double_opt_in", [False, True], ids=["consent", "double-opt-in"])
@pytest.mark.parametrize(
    "state", ["new", "active", "pending", "on another list", "pending on another list"]
)
@pytest.mark.parametrize(
    ("cells", "name", "topics", "cadence"),
    [("Annie,Science,each", "Annie", ("Science",), "each"), (",,", "", (), None)],
    ids=["details", "no details"],
)
def test_an_imported_row_ends_as_service_enrol_would_leave_it(
    tmp_path: Path,
    state: str,
    double_opt_in: bool,
    cells: str,
    name: str,
    topics: tuple[str, ...],
    cadence: str | None,
) -> None:
    """The import writes in batches itself; the subscriber service's rules must still hold."""
    imported, enrolled = sqlite_engine(tmp_path / "a.db"), sqlite_engine(tmp_path / "b.db")
    for engine in (imported, enrolled):
        with engine.begin() as conn:
            _start_as(conn, state)
    status = "pending" if double_opt_in else "active"

    run_import(
        imported,
        f"email,name,topics,cadence\nann@example.org,{cells}\n",
        double_opt_in=double_opt_in,
    )
    with enrolled.begin() as conn:
        service.enrol(
            conn,
            "ann@example.org",
            list_id=service.require_list(conn, "weekly"),
            name=name,
            topics=topics,
            frequency=cadence,
            action="imported",
            note=NOTE,
            status=status,
            now=NOW,
        )

    with imported.connect() as left, enrolled.connect() as right:
        assert _snapshot(left) == _snapshot(right)
    imported.dispose()
    enrolled.dispose()


@pytest.mark.postgres
def test_on_postgresql_each_batch_is_copied_in_and_written_in_a_few_statements(
    postgres_db: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    with postgres_db.begin() as conn:
        service.ensure_list(conn, "weekly", now=NOW)
    monkeypatch.setattr(csvimport, "COPY_BATCH_SIZE", 100)
    copied: list[int] = []
    real_copy = importrows.copy_rows

    def copy_rows(conn: sa.Connection, table: str, columns: object, rows: object) -> None:
        listed = list(rows)  # type: ignore[call-overload]
        copied.append(len(listed))
        real_copy(conn, table, columns, listed)  # type: ignore[arg-type]

    monkeypatch.setattr(importrows, "copy_rows", copy_rows)
    statements: list[tuple[str, bool]] = []

    @sa.event.listens_for(postgres_db, "before_cursor_execute")
    def record(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        statements.append((statement, executemany))

    text = "email\n" + "".join(f"p{n}@example.org\n" for n in range(300)) + "p7@example.org\n"
    report = run_import(postgres_db, text)

    assert (report.imported, report.duplicates) == (300, 1)
    assert copied == [100, 100, 100, 1]  # every row went in by COPY, a batch at a time
    assert not [statement for statement, many in statements if many]  # no row-by-row inserts
    assert len(statements) < 4 * 15  # a few statements per batch, whatever its size
    assert len(statuses(postgres_db)) == 300


@pytest.mark.postgres
def test_on_postgresql_statistics_are_refreshed_as_the_import_grows(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = sa.create_engine(postgres_url)
    try:
        tables.metadata.create_all(engine)
        with engine.begin() as conn:
            service.ensure_list(conn, "weekly", now=NOW)
        monkeypatch.setattr(csvimport, "COPY_BATCH_SIZE", 2)
        monkeypatch.setattr(importrows, "_FIRST_ANALYSIS", 2)
        analysed: list[str] = []

        @sa.event.listens_for(engine, "before_cursor_execute")
        def record(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
            if statement.startswith("ANALYZE subscribers"):
                analysed.append(statement)

        text = "email\n" + "".join(f"p{n}@example.org\n" for n in range(9))
        report = run_import(engine, text)

        assert report.imported == 9
        assert len(analysed) == 3  # with 2, 4 and 8 rows written: each time they doubled
        with engine.connect() as conn:
            assert conn.scalar(sa.select(sa.func.count()).select_from(tables.subscriptions)) == 9
    finally:
        engine.dispose()


def test_read_ahead_raises_the_readers_error_after_the_items_before_it() -> None:
    def items() -> Iterator[int]:
        yield 1
        yield 2
        raise OSError("the disk went away")

    got = []
    with pytest.raises(OSError, match="the disk went away"):
        for item in csvimport.read_ahead(items()):
            got.append(item)
    assert got == [1, 2]


def test_read_ahead_stops_reading_when_the_caller_stops() -> None:
    produced = 0

    def items() -> Iterator[int]:
        nonlocal produced
        for number in range(1000):
            produced += 1
            yield number

    with closing(csvimport.read_ahead(items(), depth=2)) as ahead:
        assert next(ahead) == 0
    # Closed after one item: the reader made at most the queue's two and the one it offered.
    assert produced <= 4
    assert not any(thread.name == "import-reader" for thread in threading.enumerate())


def test_an_import_stopped_midway_leaves_no_reader_thread_behind(
    lists: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(csvimport, "BATCH_SIZE", 10)
    monkeypatch.setattr(csvimport, "COPY_BATCH_SIZE", 10)

    def interrupt(read: int) -> None:  # as Ctrl-C during the progress bar's update
        raise KeyboardInterrupt

    text = "email\n" + "".join(f"person{n}@example.org\n" for n in range(100))
    with pytest.raises(KeyboardInterrupt):
        run_import(lists, text, on_batch=interrupt)
    assert not any(thread.name == "import-reader" for thread in threading.enumerate())
