"""Tests for subscribers/service.py on real databases."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from subscribers import service, tables
from subscribers.checks import aware
from subscribers.models import Consent, SubscribeOutcome, Subscription
from subscribers.service import (
    ConsentWithdrawn,
    InvalidEmail,
    InvalidToken,
    SubscriberError,
    UnknownList,
)

NOW = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)
LATER = NOW + timedelta(hours=2)
FORM = Consent(
    source="subscribe-form",
    wording="Send me the Weekly News. I can unsubscribe at any time.",
    ip="203.0.113.7",
    user_agent="Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
)
CLICK = Consent(source="confirm-link", ip="198.51.100.2", user_agent="Mozilla/5.0 Mobile")


def consent_log(conn: sa.Connection) -> list[tuple[str, str, str, str]]:
    """(email, action, source, note) for every consent event, oldest first."""
    events, people = tables.consent_events, tables.subscribers
    query = (
        sa.select(people.c.email, events.c.action, events.c.source, events.c.note)
        .join(people, people.c.id == events.c.subscriber_id)
        .order_by(events.c.id)
    )
    return [tuple(row) for row in conn.execute(query)]


def row_counts(conn: sa.Connection) -> dict[str, int]:
    return {
        table.name: conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
        for table in tables.metadata.sorted_tables
    }


def subscription_statuses(conn: sa.Connection) -> dict[str, str]:
    return {row.email: row.status for row in service.list_subscribers(conn, "weekly")}


def person_status(conn: sa.Connection, email: str) -> str:
    person = service.find_person(conn, email)
    assert person is not None
    return person.status


def reached(conn: sa.Connection, list_name: str = "weekly") -> list[str]:
    return [recipient.email for recipient in service.audience_for(conn, list_name)]


def subscribe(conn: sa.Connection, email: str, **changes: object) -> SubscribeOutcome:
    values: dict[str, object] = {"list_name": "weekly", "consent": FORM, "now": NOW, **changes}
    return service.subscribe(conn, email, **values)  # type: ignore[arg-type]


def confirm(conn: sa.Connection, outcome: SubscribeOutcome, **changes: object):  # type: ignore[no-untyped-def]
    values: dict[str, object] = {"email": outcome.email, "consent": CLICK, "now": LATER, **changes}
    return service.confirm(conn, outcome.subscriber_id, outcome.list_name, **values)  # type: ignore[arg-type]


def add(conn: sa.Connection, email: str, list_name: str = "weekly", **changes: object):  # type: ignore[no-untyped-def]
    values: dict[str, object] = {"list_name": list_name, "consent": "form", "now": NOW, **changes}
    return service.add_subscriber(conn, email, **values)  # type: ignore[arg-type]


@pytest.fixture
def lists(db: sa.Engine) -> sa.Engine:
    """The lists `weekly` (titled) and `daily`, on SQLite and on PostgreSQL."""
    with db.begin() as conn:
        service.ensure_list(conn, "weekly", title="Weekly News", now=NOW)
        service.ensure_list(conn, "daily", now=NOW)
    return db


# --- addresses ---------------------------------------------------------------------------


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


def test_a_huge_bad_address_is_shown_cut_short() -> None:
    with pytest.raises(InvalidEmail) as caught:
        service.normalise_email("x" * 10_000)
    assert len(str(caught.value)) < 300


def test_same_address_in_another_case_is_the_same_subscriber(db: sa.Engine) -> None:
    with db.begin() as conn:
        service.ensure_list(conn, "weekly", now=NOW)
        first = add(conn, "Ann@Example.ORG", name="Ann")
        again = add(conn, "ann@example.org", consent="form again")
        assert again.id == first.id
        assert again.email == "ann@example.org"
        assert again.name == "Ann"  # an empty name does not erase the known one
        assert row_counts(conn)["subscribers"] == 1
        assert [row.email for row in service.list_subscribers(conn)] == ["ann@example.org"]


def test_an_idn_address_in_either_spelling_is_one_person(lists: sa.Engine) -> None:
    with lists.begin() as conn:
        first = subscribe(conn, "Kim@xn--bcher-kva.example")
        second = subscribe(conn, "kim@BÜCHER.example")
        assert second.subscriber_id == first.subscriber_id
        assert second.email == "kim@bücher.example"
        assert service.find_person(conn, "KIM@xn--bcher-kva.example") is not None


# --- double opt-in -----------------------------------------------------------------------


def test_subscribe_leaves_a_new_person_pending_until_they_confirm(lists: sa.Engine) -> None:
    with lists.begin() as conn:
        outcome = subscribe(conn, "Ann@Example.org", name="Ann", topics=["Tech"], cadence="daily")
        assert outcome == SubscribeOutcome(
            outcome.subscriber_id, "ann@example.org", "weekly", confirm_needed=True
        )
        assert person_status(conn, "ann@example.org") == "pending"
        assert subscription_statuses(conn) == {"ann@example.org": "pending"}
        assert service.audience_for(conn, "weekly", cadence="daily") == []

        confirmed = confirm(conn, outcome)

        assert (confirmed.status, confirmed.topics, confirmed.cadence) == (
            "active",
            ("Tech",),
            "daily",
        )
        assert (confirmed.name, confirmed.list_label) == ("Ann", "Weekly News")
        assert person_status(conn, "ann@example.org") == "active"
        assert [r.email for r in service.audience_for(conn, "weekly", cadence="daily")] == [
            "ann@example.org"
        ]
        assert consent_log(conn) == [
            ("ann@example.org", "requested", "subscribe-form", ""),
            ("ann@example.org", "confirmed", "confirm-link", ""),
        ]


def test_every_consent_event_keeps_when_where_what_and_who(lists: sa.Engine) -> None:
    with lists.begin() as conn:
        confirm(conn, subscribe(conn, "ann@example.org"))
        events = conn.execute(
            sa.select(tables.consent_events).order_by(tables.consent_events.c.id)
        ).all()
    requested, confirmed = events
    assert (requested.source, requested.wording, requested.ip, requested.user_agent) == (
        FORM.source,
        FORM.wording,
        FORM.ip,
        FORM.user_agent,
    )
    assert aware(requested.at) == NOW
    assert (confirmed.source, confirmed.ip, confirmed.user_agent) == (
        "confirm-link",
        "198.51.100.2",
        "Mozilla/5.0 Mobile",
    )
    assert aware(confirmed.at) == LATER


def test_consent_fields_are_cleaned_and_a_source_is_required(lists: sa.Engine) -> None:
    with lists.begin() as conn:
        with pytest.raises(SubscriberError, match="source"):
            subscribe(conn, "ann@example.org", consent=Consent(source="  "))
        assert row_counts(conn)["subscribers"] == 0
        noisy = Consent(source=" signup\nform ", ip="1" * 100, user_agent="UA\r\n" + "x" * 900)
        subscribe(conn, "ann@example.org", consent=noisy)
        event = conn.execute(sa.select(tables.consent_events)).one()
    assert event.source == "signup form"
    assert len(event.ip) == service.MAX_IP
    assert len(event.user_agent) == service.MAX_USER_AGENT and "\n" not in event.user_agent


def test_subscribing_when_already_active_changes_nothing(lists: sa.Engine) -> None:
    with lists.begin() as conn:
        ann = add(conn, "ann@example.org", name="Ann", topics=["Tech"], frequency="daily")
        outcome = subscribe(conn, "ANN@example.org", name="Mallory", topics=["Sport"])
        assert outcome.confirm_needed is False
        assert outcome.subscriber_id == ann.id
        found = service.find_subscription(conn, ann.id, "weekly")
        assert found is not None
        assert (found.status, found.topics, found.cadence, found.name) == (
            "active",
            ("Tech",),
            "daily",
            "Ann",
        )
        # The request is on record all the same.
        assert [action for _, action, _, _ in consent_log(conn)] == ["subscribed", "requested"]


def test_a_request_never_rewrites_a_confirmed_persons_details(lists: sa.Engine) -> None:
    """Anyone can type anyone's address into the form: only the person's own choices count."""
    with lists.begin() as conn:
        ann = add(conn, "ann@example.org", name="Ann", attributes={"city": "Lyon"})
        outcome = subscribe(
            conn, "ann@example.org", list_name="daily", name="Troll", attributes={"city": "X"}
        )
        assert outcome.confirm_needed is True  # a new list for her: she must confirm it
        person = service.find_person(conn, "ann@example.org")
        assert person is not None
        assert (person.name, person.attributes, person.status) == (
            "Ann",
            {"city": "Lyon"},
            "active",
        )
        assert service.find_subscription(conn, ann.id, "daily").status == "pending"  # type: ignore[union-attr]


def test_an_unconfirmed_persons_latest_request_says_who_they_are(lists: sa.Engine) -> None:
    with lists.begin() as conn:
        subscribe(conn, "ann@example.org", name="An", attributes={"team": "a"}, topics=["Tech"])
        outcome = subscribe(conn, "ann@example.org", name="Ann", attributes={"city": "Lyon"})
        assert outcome.confirm_needed is True
        person = service.find_person(conn, "ann@example.org")
        assert person is not None
        assert (person.name, person.attributes) == ("Ann", {"team": "a", "city": "Lyon"})
        found = confirm(conn, outcome)
    assert found.topics == ()  # the latest request chose every topic


def test_subscribe_refuses_bad_input_and_writes_nothing(lists: sa.Engine) -> None:
    with lists.begin() as conn:
        with pytest.raises(InvalidEmail):
            subscribe(conn, "not an address")
        with pytest.raises(UnknownList, match="daily, weekly"):
            subscribe(conn, "ann@example.org", list_name="montly")
        with pytest.raises(SubscriberError, match="unknown frequency"):
            subscribe(conn, "ann@example.org", cadence="hourly")
        with pytest.raises(SubscriberError, match="attributes"):
            subscribe(conn, "ann@example.org", attributes={"when": NOW})
        with pytest.raises(SubscriberError, match="name is longer"):
            subscribe(conn, "ann@example.org", name="A" * (service.MAX_NAME + 1))
        counts = row_counts(conn)
        assert (counts["subscribers"], counts["subscriptions"], counts["consent_events"]) == (
            0,
            0,
            0,
        )


def test_confirm_is_idempotent(lists: sa.Engine) -> None:
    with lists.begin() as conn:
        outcome = subscribe(conn, "ann@example.org")
        first = confirm(conn, outcome)
        again = confirm(conn, outcome, now=LATER + timedelta(minutes=1))
        assert first == again
        assert [action for _, action, _, _ in consent_log(conn)] == ["requested", "confirmed"]


def test_confirm_needs_the_persons_current_address(lists: sa.Engine) -> None:
    with lists.begin() as conn:
        ann = subscribe(conn, "ann@example.org")
        bob = subscribe(conn, "bob@example.org")
        with pytest.raises(InvalidToken, match="not valid"):
            confirm(conn, ann, email="bob@example.org")
        with pytest.raises(InvalidToken):
            confirm(conn, ann, email="not an address")
        with pytest.raises(InvalidToken):
            service.confirm(
                conn, ann.subscriber_id, "daily", email=ann.email, consent=CLICK, now=LATER
            )
        assert subscription_statuses(conn) == {
            "ann@example.org": "pending",
            "bob@example.org": "pending",
        }
        assert confirm(conn, bob).status == "active"


def test_an_erased_persons_confirm_link_never_reaches_a_newcomer(lists: sa.Engine) -> None:
    with lists.begin() as conn:
        old = subscribe(conn, "ann@example.org")
        service.forget_person(conn, "ann@example.org", now=NOW)
        newcomer = subscribe(conn, "bob@example.org")
        # Ids are never reused, so the erased id names nobody; and the address would not match.
        assert newcomer.subscriber_id != old.subscriber_id
        with pytest.raises(InvalidToken):
            confirm(conn, old)
        assert subscription_statuses(conn) == {"bob@example.org": "pending"}


def test_an_unsubscribe_sticks_against_an_old_confirm_link(lists: sa.Engine) -> None:
    with lists.begin() as conn:
        outcome = subscribe(conn, "ann@example.org")
        confirm(conn, outcome)
        service.unsubscribe(conn, outcome.subscriber_id, "weekly", via="one-click", now=LATER)
        with pytest.raises(InvalidToken, match="used up"):
            confirm(conn, outcome, now=LATER + timedelta(hours=1))
        assert reached(conn) == []
        # Asking again is the way back.
        again = subscribe(conn, "ann@example.org", now=LATER + timedelta(hours=2))
        assert again.confirm_needed is True
        confirm(conn, again, now=LATER + timedelta(hours=3))
        assert reached(conn) == ["ann@example.org"]


def test_a_pending_subscription_can_be_declined(lists: sa.Engine) -> None:
    """'I never asked for this': the unsubscribe link in a confirmation email works too."""
    with lists.begin() as conn:
        outcome = subscribe(conn, "ann@example.org")
        assert service.unsubscribe(conn, outcome.subscriber_id, "weekly", via="link", now=NOW)
        assert person_status(conn, "ann@example.org") == "unsubscribed"
        with pytest.raises(InvalidToken):
            confirm(conn, outcome)


# --- suppression -------------------------------------------------------------------------


def withdraw(conn: sa.Connection, how: str) -> None:
    """Make ann@example.org, an active subscriber of `weekly`, withdraw in one of the ways."""
    ann = service.find_person(conn, "ann@example.org")
    assert ann is not None
    if how == "unsubscribed from the list":
        service.unsubscribe(conn, ann.id, "weekly", via="link", now=NOW)
    elif how == "unsubscribed from all":
        service.unsubscribe_all(conn, ann.id, via="preferences", now=NOW)
    elif how == "erased":
        service.forget_person(conn, "ann@example.org", now=NOW)
    else:
        service.suppress(conn, "ann@example.org", reason=how, now=NOW)


WITHDRAWALS = ["unsubscribed from the list", "unsubscribed from all", "bounce", "spamreport"]
WITHDRAWALS += ["manual", "erased"]


@pytest.mark.parametrize("how", WITHDRAWALS)
def test_an_operator_cannot_bring_back_a_withdrawn_address(lists: sa.Engine, how: str) -> None:
    with lists.begin() as conn:
        add(conn, "ann@example.org")
        withdraw(conn, how)
        before = row_counts(conn)
        with pytest.raises(ConsentWithdrawn, match="ann@example.org .*; they must confirm again"):
            add(conn, "ann@example.org", consent="she said yes on the phone")
        with pytest.raises(ConsentWithdrawn):
            service.enrol(
                conn,
                "ann@example.org",
                list_id=service.require_list(conn, "weekly"),
                name="",
                topics=None,
                action="imported",
                note="old export",
                now=NOW,
            )
        assert row_counts(conn) == before  # refused before anything was written
        assert reached(conn) == []


@pytest.mark.parametrize("how", WITHDRAWALS)
def test_the_persons_own_confirmation_brings_a_withdrawn_address_back(
    lists: sa.Engine, how: str
) -> None:
    with lists.begin() as conn:
        add(conn, "ann@example.org")
        withdraw(conn, how)
        outcome = subscribe(conn, "ann@example.org")
        assert outcome.confirm_needed is True
        assert reached(conn) == []
        confirm(conn, outcome)
        assert reached(conn) == ["ann@example.org"]
        assert not service.is_suppressed(conn, "ann@example.org")
        assert person_status(conn, "ann@example.org") == "active"


def test_confirming_lifts_a_suppression_and_says_so(lists: sa.Engine) -> None:
    with lists.begin() as conn:
        add(conn, "ann@example.org")
        service.suppress(conn, "ann@example.org", reason="bounce", now=NOW)
        confirm(conn, subscribe(conn, "ann@example.org"))
        assert consent_log(conn)[-1] == (
            "ann@example.org",
            "confirmed",
            "confirm-link",
            "suppression lifted (was: bounce)",
        )


def test_a_bounce_after_confirming_is_not_undone_by_the_old_link(lists: sa.Engine) -> None:
    with lists.begin() as conn:
        outcome = subscribe(conn, "ann@example.org")
        confirm(conn, outcome)
        service.suppress(conn, "ann@example.org", reason="bounce", now=LATER)
        confirm(conn, outcome, now=LATER + timedelta(hours=1))
        assert service.is_suppressed(conn, "ann@example.org")
        assert reached(conn) == []


def test_reactivate_is_the_operators_word_that_the_person_consented_again(
    lists: sa.Engine,
) -> None:
    with lists.begin() as conn:
        add(conn, "ann@example.org", topics=["Tech"])
        service.suppress(conn, "ann@example.org", reason="spamreport", now=NOW)
        add(conn, "ann@example.org", consent="asked us by letter", reactivate=True)
        assert [(r.email, r.topics) for r in service.audience_for(conn, "weekly")] == [
            ("ann@example.org", ())
        ]
        assert not service.is_suppressed(conn, "ann@example.org")
        assert consent_log(conn)[-1] == (
            "ann@example.org",
            "subscribed",
            "operator",
            "asked us by letter; suppression lifted (was: spamreport)",
        )


def test_a_double_opt_in_enrolment_waits_for_confirmation(lists: sa.Engine) -> None:
    with lists.begin() as conn:
        weekly = service.require_list(conn, "weekly")
        add(conn, "active@example.org")
        add(conn, "bounced@example.org")
        service.suppress(conn, "bounced@example.org", reason="bounce", now=NOW)
        for address in ("new@example.org", "active@example.org", "bounced@example.org"):
            service.enrol(
                conn,
                address,
                list_id=weekly,
                name="",
                topics=None,
                action="requested",
                note="",
                now=NOW,
                status="pending",
            )
        statuses = {
            a: service.subscription_status(conn, a, weekly)
            for a in ("new@example.org", "active@example.org", "bounced@example.org")
        }
    assert statuses == {
        "new@example.org": "pending",
        "active@example.org": "active",  # never demoted
        "bounced@example.org": "pending",  # confirming is how it comes back
    }


def test_a_complaint_ends_every_subscription_a_bounce_ends_none(lists: sa.Engine) -> None:
    with lists.begin() as conn:
        for address in ("ann@example.org", "bob@example.org"):
            add(conn, address)
            add(conn, address, "daily")
        service.suppress(conn, "ann@example.org", reason="spamreport", now=NOW)
        service.suppress(conn, "bob@example.org", reason="bounce", now=NOW)
        rows = {(r.email, r.list): r.status for r in service.list_subscribers(conn)}
        subscriptions = {
            (s.email, s.list_name): s.status
            for person in ("ann@example.org", "bob@example.org")
            for s in service.subscriptions_of(conn, service.find_person(conn, person).id)  # type: ignore[union-attr]
        }
        assert reached(conn) == [] and reached(conn, "daily") == []
    assert rows == {
        ("ann@example.org", "daily"): "complained",
        ("ann@example.org", "weekly"): "complained",
        ("bob@example.org", "daily"): "bounced",
        ("bob@example.org", "weekly"): "bounced",
    }
    assert subscriptions == {
        ("ann@example.org", "daily"): "unsubscribed",
        ("ann@example.org", "weekly"): "unsubscribed",
        ("bob@example.org", "daily"): "active",
        ("bob@example.org", "weekly"): "active",
    }


def test_suppress_keeps_one_row_with_the_latest_reason(lists: sa.Engine) -> None:
    with lists.begin() as conn:
        service.suppress(conn, "ann@example.org", reason="bounce", now=NOW)
        service.suppress(conn, "Ann@Example.org", reason="spamreport", now=LATER)
        rows = conn.execute(sa.select(tables.suppressions)).all()
    assert [(row.email, row.reason) for row in rows] == [("ann@example.org", "spamreport")]


def test_suppress_needs_a_reason(lists: sa.Engine) -> None:
    with lists.begin() as conn, pytest.raises(SubscriberError, match="needs a reason"):
        service.suppress(conn, "ann@example.org", reason=" ", now=NOW)


# --- audience ----------------------------------------------------------------------------


def test_audience_reaches_only_active_confirmed_unsuppressed_people(db: sa.Engine) -> None:
    with db.begin() as conn:
        service.ensure_list(conn, "weekly", now=NOW)
        service.ensure_list(conn, "daily", now=NOW)
        people = {
            address: add(conn, address)
            for address in ["ann@example.org", "bob@example.org", "cy@example.org"]
        }
        add(conn, "di@example.org")
        add(conn, "eve@example.org", "daily")
        subscribe(conn, "fay@example.org")
        service.unsubscribe(conn, people["bob@example.org"].id, "weekly", via="link", now=NOW)
        service.suppress(conn, "CY@example.org", reason="bounce", now=NOW)
        service.suppress(conn, "di@example.org", reason="spamreport", now=NOW)

        recipients = service.audience_for(conn, "weekly")

    assert [r.email for r in recipients] == ["ann@example.org"]
    assert recipients[0].subscriber_id == people["ann@example.org"].id


def test_a_suppression_alone_keeps_an_active_person_out(lists: sa.Engine) -> None:
    """The do-not-mail list is checked on its own, whatever the person's status says."""
    with lists.begin() as conn:
        add(conn, "ann@example.org")
        conn.execute(
            sa.insert(tables.suppressions).values(email="ann@example.org", reason="x", at=NOW)
        )
        assert person_status(conn, "ann@example.org") == "active"
        assert reached(conn) == []


def test_audience_is_ordered_by_subscriber_id_and_carries_topics(db: sa.Engine) -> None:
    with db.begin() as conn:
        service.ensure_list(conn, "weekly", now=NOW)
        zed = add(conn, "zed@example.org", topics=["Tech", " Science ", "Tech", ""])
        amy = add(conn, "amy@example.org")
        recipients = service.audience(conn, "weekly")
    assert service.audience is service.audience_for
    assert [(r.subscriber_id, r.topics) for r in recipients] == [
        (zed.id, ("Tech", "Science")),
        (amy.id, ()),
    ]


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
            add(conn, address, "news", frequency=frequency)

        def reached_at(cadence: str) -> list[str]:
            people = service.audience_for(conn, "news", cadence=cadence)
            return sorted(person.email.split("@")[0] for person in people)

        assert reached_at("daily") == ["daily", "each"]
        assert reached_at("weekly") == ["default", "each", "weekly"]
        assert reached_at("all") == ["daily", "default", "each", "weekly"]
        # Subscribing again without a frequency keeps the one chosen before.
        add(conn, "daily@example.org", "news", consent="x")
        assert "daily" in reached_at("daily")


def test_an_unknown_frequency_is_refused_with_the_choices(db: sa.Engine) -> None:
    with db.begin() as conn:
        service.ensure_list(conn, "news", now=NOW)
        with pytest.raises(SubscriberError, match=r"unknown frequency 'hourly': choose one of "):
            add(conn, "a@example.org", "news", frequency="hourly")


# --- preferences -------------------------------------------------------------------------


def test_set_preferences_changes_topics_and_cadence_and_logs_the_choice(
    lists: sa.Engine,
) -> None:
    page = Consent(source="preferences-page", ip="192.0.2.1")
    with lists.begin() as conn:
        ann = add(conn, "ann@example.org", topics=["Tech"])
        saved = service.set_preferences(
            conn,
            ann.id,
            "weekly",
            topics=["Sport", "Arts"],
            cadence="each",
            now=LATER,
            consent=page,
        )
        assert (saved.topics, saved.cadence) == (("Sport", "Arts"), "each")
        assert service.find_subscription(conn, ann.id, "weekly") == saved
        paused = service.set_preferences(
            conn, ann.id, "weekly", topics=(), cadence="paused", now=LATER, consent=page
        )
        assert (paused.topics, paused.is_paused) == ((), True)
        assert reached(conn) == []
        assert consent_log(conn)[1:] == [
            (
                "ann@example.org",
                "preferences",
                "preferences-page",
                "topics: Sport; Arts; cadence: each",
            ),
            ("ann@example.org", "preferences", "preferences-page", "topics: all; cadence: paused"),
        ]
        # Saving the same choice again logs nothing.
        service.set_preferences(
            conn, ann.id, "weekly", topics=(), cadence="paused", now=LATER, consent=page
        )
        assert len(consent_log(conn)) == 3


def test_set_preferences_refuses_what_it_cannot_do(lists: sa.Engine) -> None:
    page = Consent(source="preferences-page")
    with lists.begin() as conn:
        ann = add(conn, "ann@example.org")
        with pytest.raises(SubscriberError, match="unknown frequency"):
            service.set_preferences(
                conn, ann.id, "weekly", topics=(), cadence="hourly", now=NOW, consent=page
            )
        with pytest.raises(SubscriberError, match="not on the list daily"):
            service.set_preferences(
                conn, ann.id, "daily", topics=(), cadence="each", now=NOW, consent=page
            )
        with pytest.raises(UnknownList):
            service.set_preferences(
                conn, ann.id, "nope", topics=(), cadence="each", now=NOW, consent=page
            )
        service.unsubscribe(conn, ann.id, "weekly", via="link", now=NOW)
        with pytest.raises(SubscriberError, match="needs a new confirmation"):
            service.set_preferences(
                conn, ann.id, "weekly", topics=(), cadence="each", now=NOW, consent=page
            )
        assert subscription_statuses(conn) == {"ann@example.org": "unsubscribed"}


# --- leaving -----------------------------------------------------------------------------


def test_unsubscribe_is_idempotent_and_logs_how_once(db: sa.Engine) -> None:
    with db.begin() as conn:
        service.ensure_list(conn, "weekly", now=NOW)
        ann = add(conn, "ann@example.org", consent="signup form")
        assert service.unsubscribe(conn, ann.id, "weekly", via="one-click", now=NOW) is True
        assert service.unsubscribe(conn, ann.id, "weekly", via="one-click", now=NOW) is False
        assert subscription_statuses(conn) == {"ann@example.org": "unsubscribed"}
        assert consent_log(conn) == [
            ("ann@example.org", "subscribed", "operator", "signup form"),
            ("ann@example.org", "unsubscribed", "one-click", "one-click"),
        ]


def test_unsubscribe_logs_the_requests_ip_and_user_agent(lists: sa.Engine) -> None:
    page = Consent(source="unsubscribe-page", ip="192.0.2.9", user_agent="Thunderbird")
    with lists.begin() as conn:
        ann = add(conn, "ann@example.org")
        service.unsubscribe(conn, ann.id, "weekly", via="link", now=NOW, consent=page)
        event = conn.execute(
            sa.select(tables.consent_events).where(tables.consent_events.c.action == "unsubscribed")
        ).one()
    assert (event.source, event.note, event.ip, event.user_agent) == (
        "unsubscribe-page",
        "link",
        "192.0.2.9",
        "Thunderbird",
    )


def test_unsubscribe_from_an_unknown_list_or_person_changes_nothing(lists: sa.Engine) -> None:
    with lists.begin() as conn:
        ann = add(conn, "ann@example.org")
        assert service.unsubscribe(conn, ann.id, "no-such-list", via="link", now=NOW) is False
        assert service.unsubscribe(conn, ann.id, "daily", via="link", now=NOW) is False
        assert service.unsubscribe(conn, ann.id + 1, "weekly", via="link", now=NOW) is False
        assert subscription_statuses(conn) == {"ann@example.org": "active"}


def test_leaving_the_last_list_makes_an_unsubscribed_person(lists: sa.Engine) -> None:
    with lists.begin() as conn:
        ann = add(conn, "ann@example.org")
        add(conn, "ann@example.org", "daily")
        service.unsubscribe(conn, ann.id, "weekly", via="link", now=NOW)
        assert person_status(conn, "ann@example.org") == "active"
        service.unsubscribe(conn, ann.id, "daily", via="link", now=NOW)
        assert person_status(conn, "ann@example.org") == "unsubscribed"


def test_unsubscribe_all_leaves_every_list_and_logs_each(lists: sa.Engine) -> None:
    with lists.begin() as conn:
        ann = add(conn, "ann@example.org")
        add(conn, "ann@example.org", "daily")
        add(conn, "bob@example.org")
        assert service.unsubscribe_all(conn, ann.id, via="preferences", now=NOW) == 2
        assert service.unsubscribe_all(conn, ann.id, via="preferences", now=NOW) == 0
        assert person_status(conn, "ann@example.org") == "unsubscribed"
        assert reached(conn) == ["bob@example.org"]
        left = [(a, s) for email, a, s, _ in consent_log(conn) if email == "ann@example.org"]
    assert left[-2:] == [("unsubscribed", "preferences")] * 2


# --- listing and finding -----------------------------------------------------------------


def test_list_subscribers_shows_the_telling_status_per_list(lists: sa.Engine) -> None:
    with lists.begin() as conn:
        ann = add(conn, "ann@example.org", name="Ann")
        add(conn, "ann@example.org", "daily", frequency="daily", attributes={"city": "Lyon"})
        add(conn, "bob@example.org")
        subscribe(conn, "cy@example.org")
        add(conn, "di@example.org")
        service.unsubscribe(conn, ann.id, "weekly", via="link", now=NOW)
        service.suppress(conn, "bob@example.org", reason="bounce", now=NOW)
        conn.execute(
            sa.insert(tables.suppressions).values(email="di@example.org", reason="x", at=NOW)
        )

        everyone = [(r.list, r.email, r.status, r.cadence) for r in service.list_subscribers(conn)]
        weekly_only = [(r.email, r.name) for r in service.list_subscribers(conn, "weekly")]
        ann_daily = service.list_subscribers(conn, "daily")[0]

    assert everyone == [
        ("daily", "ann@example.org", "active", "daily"),
        ("weekly", "ann@example.org", "unsubscribed", "weekly"),
        ("weekly", "bob@example.org", "bounced", "weekly"),
        ("weekly", "cy@example.org", "pending", "weekly"),
        ("weekly", "di@example.org", "suppressed", "weekly"),
    ]
    assert weekly_only == [
        ("ann@example.org", "Ann"),
        ("bob@example.org", ""),
        ("cy@example.org", ""),
        ("di@example.org", ""),
    ]
    assert ann_daily.attributes == {"city": "Lyon"}


def test_find_subscription_and_subscriptions_of_show_every_status(lists: sa.Engine) -> None:
    with lists.begin() as conn:
        ann = add(conn, "ann@example.org", name="Ann", topics=["Tech"], frequency="each")
        subscribe(conn, "ann@example.org", list_name="daily")
        weekly = service.find_subscription(conn, ann.id, "weekly")
        assert service.find_subscription(conn, ann.id, "nope") is None
        assert service.find_subscription(conn, ann.id + 1, "weekly") is None
        assert [(s.list_name, s.status) for s in service.subscriptions_of(conn, ann.id)] == [
            ("daily", "pending"),
            ("weekly", "active"),
        ]
    assert weekly == Subscription(
        subscriber_id=ann.id,
        email="ann@example.org",
        list_name="weekly",
        list_title="Weekly News",
        topics=("Tech",),
        status="active",
        cadence="each",
        name="Ann",
    )


def test_attributes_are_merged_and_must_be_json(lists: sa.Engine) -> None:
    with lists.begin() as conn:
        add(conn, "ann@example.org", attributes={"city": "Lyon", "plan": "free"})
        add(conn, "ann@example.org", attributes={"plan": "paid", "tags": ["a", 1, None]})
        person = service.find_person(conn, "ann@example.org")
        assert person is not None
        assert person.attributes == {"city": "Lyon", "plan": "paid", "tags": ["a", 1, None]}
        for bad in ({"x": float("nan")}, {1: "a"}, ["not", "a", "mapping"], {"x": "y" * 20_000}):
            with pytest.raises(SubscriberError, match="attributes"):
                add(conn, "ann@example.org", attributes=bad)


# --- operator adds -----------------------------------------------------------------------


def test_add_subscriber_to_an_unknown_list_names_the_known_ones(lists: sa.Engine) -> None:
    with lists.begin() as conn, pytest.raises(UnknownList, match="weekly"):
        add(conn, "ann@example.org", "weekyl", consent="x")


def test_add_subscriber_requires_a_consent_note(lists: sa.Engine) -> None:
    with lists.begin() as conn, pytest.raises(SubscriberError, match="consent"):
        add(conn, "ann@example.org", consent=" ")


def test_add_subscriber_activates_a_pending_person_and_takes_a_full_consent(
    lists: sa.Engine,
) -> None:
    with lists.begin() as conn:
        subscribe(conn, "ann@example.org")
        add(conn, "ann@example.org", consent=Consent(source="event-signup-sheet", wording="Yes"))
        assert reached(conn) == ["ann@example.org"]
        assert person_status(conn, "ann@example.org") == "active"
        assert consent_log(conn)[-1] == ("ann@example.org", "subscribed", "event-signup-sheet", "")


def test_times_come_back_aware_in_utc(lists: sa.Engine) -> None:
    paris_morning = NOW.astimezone(timezone(timedelta(hours=1)))
    with lists.begin() as conn:
        add(conn, "ann@example.org", now=paris_morning)
        stored = add(conn, "ann@example.org", now=NOW + timedelta(days=9))
    assert stored.created == NOW
    assert stored.created.utcoffset() == timedelta(0)


def test_a_naive_now_is_refused(lists: sa.Engine) -> None:
    with lists.begin() as conn, pytest.raises(ValueError, match="aware"):
        add(conn, "ann@example.org", now=NOW.replace(tzinfo=None))


def test_ensure_list_is_idempotent_and_keeps_the_title_current(sqlite_db: sa.Engine) -> None:
    with sqlite_db.begin() as conn:
        first = service.ensure_list(conn, "weekly", title="Weekly", now=NOW)
        assert service.ensure_list(conn, "weekly", now=NOW) == first
        assert service.ensure_list(conn, "weekly", title="The Weekly", now=NOW) == first
        titles = conn.execute(sa.select(tables.lists.c.title)).scalars().all()
    assert titles == ["The Weekly"]


# --- the person's rights -----------------------------------------------------------------


def test_export_person_holds_everything_stored_and_is_json(lists: sa.Engine) -> None:
    with lists.begin() as conn:
        outcome = subscribe(conn, "Ann@example.org", name="Ann", attributes={"city": "Lyon"})
        confirm(conn, outcome)
        service.set_preferences(
            conn,
            outcome.subscriber_id,
            "weekly",
            topics=["Tech"],
            cadence="daily",
            now=LATER,
            consent=Consent(source="preferences-page"),
        )
        subscribe(conn, "ann@example.org", list_name="daily")
        add(conn, "bob@example.org")
        data = service.export_person(conn, "ANN@example.org")

    assert data is not None
    assert json.loads(json.dumps(data)) == data
    assert data["person"] == {
        "email": "ann@example.org",
        "name": "Ann",
        "status": "active",
        "created": "2025-03-03T08:00:00+00:00",
        "attributes": {"city": "Lyon"},
    }
    assert data["subscriptions"] == [
        {"list": "daily", "list_title": "", "status": "pending", "topics": [], "cadence": "weekly"},
        {
            "list": "weekly",
            "list_title": "Weekly News",
            "status": "active",
            "topics": ["Tech"],
            "cadence": "daily",
        },
    ]
    assert [(e["action"], e["list"], e["source"]) for e in data["consent_log"]] == [
        ("requested", "weekly", "subscribe-form"),
        ("confirmed", "weekly", "confirm-link"),
        ("preferences", "weekly", "preferences-page"),
        ("requested", "daily", "subscribe-form"),
    ]
    assert data["consent_log"][0] == {
        "at": "2025-03-03T08:00:00+00:00",
        "action": "requested",
        "list": "weekly",
        "source": FORM.source,
        "wording": FORM.wording,
        "ip": FORM.ip,
        "user_agent": FORM.user_agent,
        "note": "",
    }
    assert data["suppression"] is None


def test_export_person_of_an_unknown_or_erased_address(lists: sa.Engine) -> None:
    with lists.begin() as conn:
        assert service.export_person(conn, "nobody@example.org") is None
        add(conn, "ann@example.org")
        service.suppress(conn, "ann@example.org", reason="bounce", now=NOW)
        service.forget_person(conn, "ann@example.org", now=LATER)
        data = service.export_person(conn, "ann@example.org")
    assert data == {
        "person": None,
        "subscriptions": [],
        "consent_log": [],
        "suppression": {"reason": "bounce", "at": "2025-03-03T08:00:00+00:00"},
    }


def test_forget_person_erases_the_person_and_their_history(lists: sa.Engine) -> None:
    with lists.begin() as conn:
        ann = add(conn, "ann@example.org")
        add(conn, "ann@example.org", "daily")
        service.unsubscribe(conn, ann.id, "daily", via="link", now=NOW)
        add(conn, "bob@example.org")
        service.suppress(conn, "bob@example.org", reason="spamreport", now=NOW)

        assert service.forget_person(conn, "ANN@example.org", now=LATER) is True
        assert service.forget_person(conn, "ann@example.org", now=LATER) is False
        assert service.remove_subscriber(conn, "bob@example.org", now=LATER) is True
        assert service.remove_subscriber is service.forget_person

        for table in (tables.subscriptions, tables.consent_events, tables.subscribers):
            assert conn.execute(sa.select(table)).all() == []
        # Only the bare addresses stay, so no import mails them again; a reason is kept.
        suppressed = conn.execute(
            sa.select(tables.suppressions.c.email, tables.suppressions.c.reason).order_by(
                tables.suppressions.c.email
            )
        ).all()
    assert [tuple(row) for row in suppressed] == [
        ("ann@example.org", "erased"),
        ("bob@example.org", "spamreport"),
    ]


# --- concurrency -------------------------------------------------------------------------


def wait_until_a_query_waits_for_a_lock(conn: sa.Connection) -> None:
    """Block until another session of this database is waiting for a row lock."""
    waiting = sa.text(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
        " AND datname = current_database()"
    )
    for _ in range(5000):
        if conn.execute(waiting).scalar_one():
            return
        threading.Event().wait(0.01)
    raise AssertionError("the second request never reached the address")


@pytest.mark.postgres
def test_two_requests_for_a_new_address_at_once_make_one_person(postgres_db: sa.Engine) -> None:
    with postgres_db.begin() as conn:
        service.ensure_list(conn, "weekly", now=NOW)
    with postgres_db.connect() as first:
        first.begin()
        ours = subscribe(first, "ann@example.org")  # written, not yet committed
        started = threading.Event()

        def second_request() -> SubscribeOutcome:
            with postgres_db.begin() as conn:
                started.set()
                return subscribe(conn, "Ann@example.org")  # waits on the unique address

        with ThreadPoolExecutor(1) as pool:
            theirs = pool.submit(second_request)
            started.wait()
            wait_until_a_query_waits_for_a_lock(first)
            first.commit()
            assert theirs.result(timeout=15).subscriber_id == ours.subscriber_id
    with postgres_db.connect() as conn:
        assert row_counts(conn)["subscribers"] == 1
        assert [a for _, a, _, _ in consent_log(conn)] == ["requested", "requested"]


def test_subscribers_never_imports_digest() -> None:
    code = (
        "import sys, subscribers.service, subscribers.tokens, subscribers.csvimport;"
        "bad = sorted(m for m in sys.modules if m == 'digest' or m.startswith('digest.'));"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# --- the migration to double opt-in (0005) -----------------------------------------------


def migrate(engine: sa.Engine, revision: str, *, down: bool = False) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", "digest:migrations")
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        (command.downgrade if down else command.upgrade)(config, revision)


@pytest.fixture
def before_double_opt_in(database_url: str) -> Iterator[sa.Engine]:
    """A database at revision 0004 (as the store opens it: SQLite enforces foreign keys)."""
    from digest.store import create_engine

    engine = create_engine(database_url)
    migrate(engine, "0004")
    yield engine
    engine.dispose()


def fill_the_old_schema(engine: sa.Engine) -> None:
    """People in every state the old schema could express, with their history."""
    old = sa.MetaData()
    old.reflect(engine, only=["lists", "subscribers", "subscriptions", "consent_events"])
    lists_, people, memberships, events = (
        old.tables[name] for name in ("lists", "subscribers", "subscriptions", "consent_events")
    )
    everyone = ["ann", "bob", "cy", "di", "eve", "fay", "gus"]
    with engine.begin() as conn:
        conn.execute(
            sa.insert(lists_),
            [
                {"name": "weekly", "title": "Weekly", "created": NOW},
                {"name": "daily", "title": "", "created": NOW},
            ],
        )
        conn.execute(
            sa.insert(people),
            [
                {
                    "email": f"{who}@example.org",
                    "name": who.title(),
                    "status": "blocked" if who == "eve" else "active",
                    "created": NOW,
                }
                for who in everyone
            ],
        )
        ids = dict(conn.execute(sa.select(people.c.email, people.c.id)).all())
        assert sorted(ids.values()) == list(range(1, len(everyone) + 1))
        assert dict(conn.execute(sa.select(lists_.c.name, lists_.c.id)).all()) == {
            "weekly": 1,
            "daily": 2,
        }
        conn.execute(
            sa.insert(memberships),
            [
                {"subscriber_id": person, "list_id": list_id, "topics": topics, "status": status}
                | {"frequency": "weekly", "updated": NOW}
                for person, list_id, topics, status in [
                    (1, 1, ["Tech"], "active"),  # ann: weekly, left daily
                    (1, 2, [], "unsubscribed"),
                    (2, 1, [], "unsubscribed"),  # bob left his only list
                    (3, 1, [], "active"),  # cy bounced
                    (4, 1, [], "active"),  # di complained
                    (5, 1, [], "active"),  # eve was blocked
                    (6, 1, [], "active"),  # fay was suppressed by hand
                ]
            ],
        )
        conn.execute(
            sa.insert(events),
            [
                {"subscriber_id": s, "list_id": li, "action": a, "note": n, "at": NOW}
                for s, li, a, n in [
                    (1, 1, "subscribed", "form"),
                    (1, 2, "imported", "fair 2024"),
                    (1, 2, "unsubscribed", "link"),
                    (2, 1, "unsubscribed", "one-click"),
                ]
            ],
        )
        conn.execute(
            sa.insert(tables.suppressions),
            [
                {"email": "cy@example.org", "reason": "bounce", "at": NOW},
                {"email": "di@example.org", "reason": "spamreport", "at": NOW},
                {"email": "fay@example.org", "reason": "manual", "at": NOW},
            ],
        )


def children(conn: sa.Connection) -> tuple[list[tuple], list[tuple]]:
    """The rows that point at subscribers, as the old schema had them."""
    s, e = tables.subscriptions, tables.consent_events
    memberships = conn.execute(
        sa.select(s.c.id, s.c.subscriber_id, s.c.list_id, s.c.topics, s.c.status).order_by(s.c.id)
    ).all()
    events = conn.execute(
        sa.select(e.c.id, e.c.subscriber_id, e.c.list_id, e.c.action, e.c.note).order_by(e.c.id)
    ).all()
    return [tuple(r) for r in memberships], [tuple(r) for r in events]


def test_the_migration_keeps_everyone_and_gives_them_their_status(
    before_double_opt_in: sa.Engine,
) -> None:
    engine = before_double_opt_in
    fill_the_old_schema(engine)
    with engine.connect() as conn:
        old_children = children(conn)

    migrate(engine, "head")

    with engine.begin() as conn:
        assert children(conn) == old_children  # nothing cascaded away with the rebuild
        statuses = dict(
            conn.execute(sa.select(tables.subscribers.c.email, tables.subscribers.c.status)).all()
        )
        assert statuses == {
            "ann@example.org": "active",
            "bob@example.org": "unsubscribed",
            "cy@example.org": "bounced",
            "di@example.org": "complained",
            "eve@example.org": "unsubscribed",
            "fay@example.org": "unsubscribed",
            "gus@example.org": "active",  # on no list, but never left one
        }
        sources = conn.execute(
            sa.select(tables.consent_events.c.action, tables.consent_events.c.source).order_by(
                tables.consent_events.c.id
            )
        ).all()
        assert [tuple(row) for row in sources] == [
            ("subscribed", "operator"),
            ("imported", "import"),
            ("unsubscribed", "link"),
            ("unsubscribed", "one-click"),
        ]
        assert service.find_person(conn, "ann@example.org").attributes == {}  # type: ignore[union-attr]
        # The service works on the migrated data.
        assert reached(conn) == ["ann@example.org"]
        with pytest.raises(ConsentWithdrawn):
            add(conn, "bob@example.org")
        outcome = subscribe(conn, "bob@example.org")
        confirm(conn, outcome)
        assert reached(conn) == ["ann@example.org", "bob@example.org"]
        assert service.export_person(conn, "ann@example.org")["consent_log"][0]["note"] == "form"  # type: ignore[index]


def test_after_the_migration_ids_are_never_reused_and_keys_still_hold(
    before_double_opt_in: sa.Engine,
) -> None:
    engine = before_double_opt_in
    fill_the_old_schema(engine)
    migrate(engine, "head")
    with engine.begin() as conn:
        newest = add(conn, "zoe@example.org")
        service.forget_person(conn, "zoe@example.org", now=NOW)
        assert add(conn, "zed@example.org").id > newest.id
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(
            sa.insert(tables.subscriptions).values(
                subscriber_id=9999,
                list_id=1,
                topics=[],
                frequency="weekly",
                status="active",
                updated=NOW,
            )
        )


def diff_table(diff: tuple | list) -> str:
    """The table an autogenerate difference is about (column changes come as a list)."""
    first = diff[0] if isinstance(diff, list) else diff
    if first[0] in ("add_table", "remove_table"):
        return first[1].name
    if first[0] in ("add_index", "remove_index", "add_constraint", "remove_constraint"):
        return first[1].table.name
    if first[0] in ("add_fk", "remove_fk"):
        return first[1].parent.name
    return first[2]  # add_column/remove_column/modify_*: (op, schema, table, ...)


def test_the_migrated_schema_is_the_one_subscribers_tables_describes(
    before_double_opt_in: sa.Engine,
) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    migrate(before_double_opt_in, "head")
    with before_double_opt_in.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        differences = [
            diff
            for diff in compare_metadata(context, tables.metadata)
            if diff_table(diff) in tables.metadata.tables
        ]
    assert differences == []


def test_the_migration_goes_down_and_up_again_without_losing_anyone(
    before_double_opt_in: sa.Engine,
) -> None:
    engine = before_double_opt_in
    fill_the_old_schema(engine)
    migrate(engine, "head")
    with engine.begin() as conn:
        subscribe(conn, "new@example.org")
    migrate(engine, "0004", down=True)
    with engine.connect() as conn:
        old_people = conn.execute(sa.text("SELECT email, status FROM subscribers")).all()
    assert dict(old_people)["new@example.org"] == "blocked"  # never mailed by the old code
    assert dict(old_people)["ann@example.org"] == "active"
    migrate(engine, "head")
    with engine.connect() as conn:
        assert reached(conn) == ["ann@example.org"]
        assert row_counts(conn)["consent_events"] == 5
