"""Tests for subscribers/service.py on real databases."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from subscribers import service, tables
from subscribers.service import InvalidEmail, SubscriberError, UnknownList

NOW = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)


def consent_log(conn: sa.Connection) -> list[tuple[str, str, str]]:
    """(email, action, note) for every consent event, oldest first."""
    query = (
        sa.select(tables.subscribers.c.email, tables.consent_events.c.action)
        .add_columns(tables.consent_events.c.note)
        .join(tables.subscribers, tables.subscribers.c.id == tables.consent_events.c.subscriber_id)
        .order_by(tables.consent_events.c.id)
    )
    return [tuple(row) for row in conn.execute(query)]


def subscription_statuses(conn: sa.Connection) -> dict[str, str]:
    return {row.email: row.status for row in service.list_subscribers(conn, "weekly")}


def test_normalise_email_lower_cases_and_decodes_idn_domains() -> None:
    assert service.normalise_email("  Ann@Example.ORG ") == "ann@example.org"
    assert service.normalise_email("X@xn--bcher-kva.example") == "x@bücher.example"
    assert service.normalise_email("x@BÜCHER.example") == "x@bücher.example"


@pytest.mark.parametrize("raw", ["no-at-sign", "a@@example.org", "ann@localhost", "ann\n@x.org"])
def test_normalise_email_rejects_bad_addresses_with_one_line_message(raw: str) -> None:
    with pytest.raises(InvalidEmail) as caught:
        service.normalise_email(raw)
    assert "\n" not in str(caught.value)
    assert raw.split("\n")[0] in str(caught.value)


def test_same_address_in_another_case_is_the_same_subscriber(db: sa.Engine) -> None:
    with db.begin() as conn:
        service.ensure_list(conn, "weekly", now=NOW)
        first = service.add_subscriber(
            conn, "Ann@Example.ORG", list_name="weekly", name="Ann", consent="form", now=NOW
        )
        again = service.add_subscriber(
            conn, "ann@example.org", list_name="weekly", consent="form again", now=NOW
        )
        assert again.id == first.id
        assert again.email == "ann@example.org"
        assert again.name == "Ann"  # an empty name does not erase the known one
        assert (
            conn.execute(sa.select(sa.func.count()).select_from(tables.subscribers)).scalar() == 1
        )
        assert [row.email for row in service.list_subscribers(conn)] == ["ann@example.org"]


def test_audience_excludes_unsubscribed_suppressed_and_blocked_people(db: sa.Engine) -> None:
    with db.begin() as conn:
        service.ensure_list(conn, "weekly", now=NOW)
        service.ensure_list(conn, "daily", now=NOW)
        people = {
            address: service.add_subscriber(
                conn, address, list_name="weekly", consent="form", now=NOW
            )
            for address in [
                "ann@example.org",
                "bob@example.org",
                "cy@example.org",
                "di@example.org",
            ]
        }
        service.add_subscriber(conn, "eve@example.org", list_name="daily", consent="form", now=NOW)
        service.unsubscribe(conn, people["bob@example.org"].id, "weekly", via="link", now=NOW)
        service.suppress(conn, "CY@example.org", reason="bounce", now=NOW)
        conn.execute(
            sa.update(tables.subscribers)
            .where(tables.subscribers.c.email == "di@example.org")
            .values(status="blocked")
        )

        recipients = service.audience(conn, "weekly")

    assert [r.email for r in recipients] == ["ann@example.org"]
    assert recipients[0].subscriber_id == people["ann@example.org"].id


def test_audience_is_ordered_by_subscriber_id_and_carries_topics(db: sa.Engine) -> None:
    with db.begin() as conn:
        service.ensure_list(conn, "weekly", now=NOW)
        zed = service.add_subscriber(
            conn,
            "zed@example.org",
            list_name="weekly",
            topics=["Tech", " Science ", "Tech", ""],
            consent="form",
            now=NOW,
        )
        amy = service.add_subscriber(
            conn, "amy@example.org", list_name="weekly", consent="form", now=NOW
        )
        recipients = service.audience(conn, "weekly")

    assert [(r.subscriber_id, r.topics) for r in recipients] == [
        (zed.id, ("Tech", "Science")),
        (amy.id, ()),
    ]


def test_unsubscribe_is_idempotent_and_logs_how_once(db: sa.Engine) -> None:
    with db.begin() as conn:
        service.ensure_list(conn, "weekly", now=NOW)
        ann = service.add_subscriber(
            conn, "ann@example.org", list_name="weekly", consent="signup form", now=NOW
        )
        assert service.unsubscribe(conn, ann.id, "weekly", via="one-click", now=NOW) is True
        assert service.unsubscribe(conn, ann.id, "weekly", via="one-click", now=NOW) is False
        assert subscription_statuses(conn) == {"ann@example.org": "unsubscribed"}
        assert consent_log(conn) == [
            ("ann@example.org", "subscribed", "signup form"),
            ("ann@example.org", "unsubscribed", "one-click"),
        ]


def test_unsubscribe_from_an_unknown_list_or_person_changes_nothing(weekly: sa.Engine) -> None:
    with weekly.begin() as conn:
        ann = service.add_subscriber(
            conn, "ann@example.org", list_name="weekly", consent="form", now=NOW
        )
        assert service.unsubscribe(conn, ann.id, "no-such-list", via="link", now=NOW) is False
        assert service.unsubscribe(conn, ann.id, "daily", via="link", now=NOW) is False
        assert service.unsubscribe(conn, ann.id + 1, "weekly", via="link", now=NOW) is False
        assert subscription_statuses(conn) == {"ann@example.org": "active"}


def test_add_subscriber_reactivates_and_replaces_topics(weekly: sa.Engine) -> None:
    with weekly.begin() as conn:
        ann = service.add_subscriber(
            conn, "ann@example.org", list_name="weekly", topics=["Tech"], consent="form", now=NOW
        )
        service.unsubscribe(conn, ann.id, "weekly", via="link", now=NOW)
        service.add_subscriber(
            conn, "ann@example.org", list_name="weekly", consent="resubscribed by email", now=NOW
        )
        assert [(r.email, r.topics) for r in service.audience(conn, "weekly")] == [
            ("ann@example.org", ())
        ]
        assert [action for _, action, _ in consent_log(conn)] == [
            "subscribed",
            "unsubscribed",
            "subscribed",
        ]


def test_add_subscriber_to_an_unknown_list_names_the_known_ones(weekly: sa.Engine) -> None:
    with weekly.begin() as conn, pytest.raises(UnknownList, match="weekly"):
        service.add_subscriber(conn, "ann@example.org", list_name="weekyl", consent="x", now=NOW)


def test_add_subscriber_requires_a_consent_note(weekly: sa.Engine) -> None:
    with weekly.begin() as conn, pytest.raises(SubscriberError, match="consent"):
        service.add_subscriber(conn, "ann@example.org", list_name="weekly", consent=" ", now=NOW)


def test_remove_subscriber_erases_the_person_and_their_history(weekly: sa.Engine) -> None:
    with weekly.begin() as conn:
        ann = service.add_subscriber(
            conn, "ann@example.org", list_name="weekly", consent="form", now=NOW
        )
        service.add_subscriber(conn, "ann@example.org", list_name="daily", consent="form", now=NOW)
        service.unsubscribe(conn, ann.id, "daily", via="link", now=NOW)
        service.add_subscriber(conn, "bob@example.org", list_name="weekly", consent="form", now=NOW)
        service.suppress(conn, "ann@example.org", reason="spamreport", now=NOW)

        assert service.remove_subscriber(conn, "ANN@example.org", now=NOW) is True
        assert service.remove_subscriber(conn, "ann@example.org", now=NOW) is False

        for table in (tables.subscriptions, tables.consent_events):
            left = conn.execute(sa.select(table).where(table.c.subscriber_id == ann.id)).all()
            assert left == []
        assert [row.email for row in service.list_subscribers(conn)] == ["bob@example.org"]
        # The do-not-mail record outlives the person.
        assert service.is_suppressed(conn, "ann@example.org")


def test_list_subscribers_shows_the_telling_status_per_list(weekly: sa.Engine) -> None:
    with weekly.begin() as conn:
        ann = service.add_subscriber(
            conn, "ann@example.org", list_name="weekly", name="Ann", consent="form", now=NOW
        )
        service.add_subscriber(conn, "ann@example.org", list_name="daily", consent="form", now=NOW)
        service.add_subscriber(conn, "bob@example.org", list_name="weekly", consent="form", now=NOW)
        service.unsubscribe(conn, ann.id, "weekly", via="link", now=NOW)
        service.suppress(conn, "bob@example.org", reason="bounce", now=NOW)

        everyone = [(r.list, r.email, r.status) for r in service.list_subscribers(conn)]
        weekly_only = [(r.email, r.name) for r in service.list_subscribers(conn, "weekly")]

    assert everyone == [
        ("daily", "ann@example.org", "active"),
        ("weekly", "ann@example.org", "unsubscribed"),
        ("weekly", "bob@example.org", "suppressed"),
    ]
    assert weekly_only == [("ann@example.org", "Ann"), ("bob@example.org", "")]


def test_suppress_keeps_one_row_with_the_latest_reason(weekly: sa.Engine) -> None:
    later = NOW + timedelta(days=1)
    with weekly.begin() as conn:
        service.suppress(conn, "ann@example.org", reason="bounce", now=NOW)
        service.suppress(conn, "Ann@Example.org", reason="spamreport", now=later)
        rows = conn.execute(sa.select(tables.suppressions)).all()
    assert [(row.email, row.reason) for row in rows] == [("ann@example.org", "spamreport")]


def test_ensure_list_is_idempotent_and_keeps_the_title_current(sqlite_db: sa.Engine) -> None:
    with sqlite_db.begin() as conn:
        first = service.ensure_list(conn, "weekly", title="Weekly", now=NOW)
        assert service.ensure_list(conn, "weekly", now=NOW) == first
        assert service.ensure_list(conn, "weekly", title="The Weekly", now=NOW) == first
        titles = conn.execute(sa.select(tables.lists.c.title)).scalars().all()
    assert titles == ["The Weekly"]


def test_times_come_back_aware_in_utc(weekly: sa.Engine) -> None:
    paris_morning = NOW.astimezone(timezone(timedelta(hours=1)))
    with weekly.begin() as conn:
        service.add_subscriber(
            conn, "ann@example.org", list_name="weekly", consent="form", now=paris_morning
        )
        stored = service.add_subscriber(
            conn, "ann@example.org", list_name="weekly", consent="form", now=NOW + timedelta(days=9)
        )
    assert stored.created == NOW
    assert stored.created.utcoffset() == timedelta(0)


def test_a_naive_now_is_refused(weekly: sa.Engine) -> None:
    with weekly.begin() as conn, pytest.raises(ValueError, match="aware"):
        service.add_subscriber(
            conn, "ann@example.org", list_name="weekly", consent="x", now=NOW.replace(tzinfo=None)
        )


def test_subscribers_never_imports_digest() -> None:
    code = (
        "import sys, subscribers.service, subscribers.tokens, subscribers.csvimport;"
        "bad = sorted(m for m in sys.modules if m == 'digest' or m.startswith('digest.'));"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_audience_follows_the_digests_cadence_and_each_persons_frequency(db: sa.Engine) -> None:
    with db.begin() as conn:
        service.ensure_list(conn, "news", now=NOW)
        for address, frequency in [
            ("each@example.org", "each"),
            ("daily@example.org", "daily"),
            ("weekly@example.org", "weekly"),
            ("paused@example.org", "paused"),
            ("default@example.org", None),  # a new subscription is weekly
        ]:
            service.add_subscriber(
                conn, address, list_name="news", frequency=frequency, consent="form", now=NOW
            )

        def reached(cadence: str) -> list[str]:
            people = service.audience(conn, "news", cadence=cadence)
            return sorted(person.email.split("@")[0] for person in people)

        assert reached("daily") == ["daily", "each"]
        assert reached("weekly") == ["default", "each", "weekly"]
        assert reached("all") == ["daily", "default", "each", "weekly"]
        # Subscribing again without a frequency keeps the one chosen before.
        service.add_subscriber(conn, "daily@example.org", list_name="news", consent="x", now=NOW)
        assert "daily" in reached("daily")


def test_an_unknown_frequency_is_refused_with_the_choices(db: sa.Engine) -> None:
    with db.begin() as conn:
        service.ensure_list(conn, "news", now=NOW)
        with pytest.raises(SubscriberError, match=r"unknown frequency 'hourly': choose one of "):
            service.add_subscriber(
                conn, "a@example.org", list_name="news", frequency="hourly", consent="f", now=NOW
            )
