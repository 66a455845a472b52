"""Tests for digest/web/signup.py: the subscribe form and the confirmation page, end to end
through the app, a migrated SQLite file and the real notice mailer."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from digest.store import Store
from digest.web.app import create_app
from digest.web.csrf import CsrfGuard
from digest.web.ratelimit import RateLimit
from subscribers import service
from subscribers.tokens import make_confirm_token
from tests.web.public_site import (
    CHROME,
    SECRET,
    START,
    TOPICS,
    Clock,
    Site,
    add_active,
    build_app,
    build_settings,
    consent_log,
    csrf_token,
    is_stored,
    link_path,
    plain_text,
    post_subscribe,
    shown_text,
    subscription_of,
    take_mail,
)


def subscribe(
    client: TestClient, address: str, path: str = "/subscribe/weekly", **fields: object
) -> str:
    """Fill in and send the form as a browser would; the answer's status and HTML."""
    response = post_subscribe(client, address, path, **fields)
    return f"{response.status_code}\n{response.text}"


def confirm_link(site: Site, address: str) -> str:
    (mail,) = take_mail(site.outbox)
    assert mail["To"] == address
    return link_path(mail, "confirm")


# --- the form ----------------------------------------------------------------------------------


def test_the_form_asks_for_address_name_topics_and_cadence(site: Site) -> None:
    response = site.client.get("/subscribe/weekly")

    page = response.text
    assert response.status_code == 200
    assert "<h1>Subscribe to The Weekly</h1>" in page
    assert 'type="email" id="email" name="email"' in page and '<label for="email">' in page
    assert 'id="name" name="name"' in page
    for topic in ("Science", "Culture &amp; Arts", "Sport"):
        assert f'value="{topic}" checked>' in page
    assert [v for v in ("each", "daily", "weekly", "paused") if f'value="{v}"' in page] == [
        "each",
        "daily",
        "weekly",
    ]
    assert 'value="weekly" checked>' in page
    assert '<div class="hp" aria-hidden="true">' in page and 'tabindex="-1"' in page
    assert "<script" not in page


def test_the_form_sets_a_lax_http_only_csrf_cookie_matching_its_field(site: Site) -> None:
    response = site.client.get("/subscribe/weekly")

    cookie = response.headers["set-cookie"]
    assert cookie.startswith("digest_csrf=")
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
    nonce = cookie.split(";")[0].split("=", 1)[1]
    assert csrf_token(response.text).startswith(nonce + ".")


def test_subscribe_without_a_list_name_offers_the_first_list(site: Site) -> None:
    response = site.client.get("/subscribe")

    assert response.status_code == 200
    assert "<h1>Subscribe to The Weekly</h1>" in response.text


def test_a_list_whose_digests_share_one_cadence_asks_no_cadence(site: Site) -> None:
    response = site.client.get("/subscribe/alerts")

    assert "<h1>Subscribe to Alerts</h1>" in response.text
    assert 'name="cadence"' not in response.text and 'name="topic"' not in response.text


def test_an_unknown_list_is_a_404_page(site: Site) -> None:
    for method in ("GET", "POST"):
        response = site.client.request(method, "/subscribe/nope")
        assert response.status_code == 404
        assert "There is no list called “nope”" in response.text


# --- subscribing -----------------------------------------------------------------------------


def test_subscribing_records_a_pending_request_and_mails_a_confirmation(site: Site) -> None:
    form = site.client.get("/subscribe/weekly").text

    answer = subscribe(site.client, "Ann@Example.org", name="Ann", topic=["Science", "Sport"])

    assert answer.startswith("200\n") and "Check your inbox" in answer
    assert subscription_of(site, "ann@example.org") == ("pending", "weekly", ("Science", "Sport"))
    (requested,) = consent_log(site, "ann@example.org")
    assert requested["action"] == "requested"
    assert requested["source"] == "form:/subscribe/weekly"
    assert requested["wording"] == shown_text(form, "consent")
    assert requested["wording"].startswith("I agree to receive The Weekly by email")
    assert requested["ip"] == "testclient"
    assert requested["user_agent"] == CHROME
    (mail,) = take_mail(site.outbox)
    assert mail["To"] == "ann@example.org"
    assert link_path(mail, "confirm").startswith("/confirm/")


def test_ticking_every_topic_stores_all_topics_including_later_ones(site: Site) -> None:
    subscribe(site.client, "ann@example.org", topic=list(TOPICS), cadence="daily")

    assert subscription_of(site, "ann@example.org") == ("pending", "daily", ())


def test_topics_not_on_the_list_are_ignored(site: Site) -> None:
    subscribe(site.client, "ann@example.org", topic=["Science", "Gossip"])

    assert subscription_of(site, "ann@example.org")[2] == ("Science",)


@pytest.mark.parametrize(
    ("fields", "message", "anchor"),
    [
        ({"email": ""}, "Enter your email address.", "#email"),
        ({"email": "ann@@example"}, "Enter an email address like name@example.org.", "#email"),
        ({"topic": []}, "Choose at least one topic.", "#topic-1"),
        ({"cadence": "hourly"}, "Choose how often you want to hear from us.", "#cadence-1"),
        ({"name": "x" * 201}, "A name has at most 200 characters.", "#name"),
    ],
)
def test_a_wrong_field_shows_the_form_again_with_the_error_linked(
    site: Site, fields: dict[str, object], message: str, anchor: str
) -> None:
    fields = dict(fields)
    answer = subscribe(site.client, str(fields.pop("email", "ann@example.org")), **fields)

    assert answer.startswith("400\n")
    assert f'<a href="{anchor}">{message}</a>' in answer
    assert 'role="alert"' in answer
    assert "<title>Error: Subscribe to The Weekly" in answer
    assert not is_stored(site, "ann@example.org")
    assert take_mail(site.outbox) == []


def test_a_bad_address_is_marked_invalid_and_kept_in_the_field(site: Site) -> None:
    answer = subscribe(site.client, "ann at example.org")

    assert 'value="ann at example.org"' in answer
    assert 'aria-invalid="true" aria-describedby="email-error"' in answer


def test_a_list_without_choices_subscribes_with_the_default_cadence(site: Site) -> None:
    answer = subscribe(
        site.client, "ann@example.org", path="/subscribe/alerts", topic=[], cadence=""
    )

    assert answer.startswith("200\n")
    assert subscription_of(site, "ann@example.org", "alerts") == ("pending", "weekly", ())


# --- telling nobody who is subscribed ---------------------------------------------------------


def test_the_answer_is_the_same_for_new_active_unsubscribed_and_suppressed_addresses(
    site: Site,
) -> None:
    add_active(site, "active@example.org")
    left = add_active(site, "left@example.org")
    with site.engine.begin() as conn:
        service.unsubscribe(conn, left, "weekly", via="link", now=START)
        service.suppress(conn, "bounced@example.org", reason="bounce", now=START)

    answers = {
        address: subscribe(site.client, address).replace(address, "ADDRESS")
        for address in (
            "new@example.org",
            "active@example.org",
            "left@example.org",
            "bounced@example.org",
        )
    }

    assert len(set(answers.values())) == 1, answers
    assert next(iter(answers.values())).startswith("200\n")
    # Only the active subscriber is left alone; the others must confirm to be mailed again.
    assert sorted(m["To"] for m in take_mail(site.outbox)) == [
        "bounced@example.org",
        "left@example.org",
        "new@example.org",
    ]
    assert subscription_of(site, "active@example.org")[0] == "active"


def test_a_filled_honeypot_gets_the_same_answer_and_nothing_happens(site: Site) -> None:
    genuine = subscribe(site.client, "ann@example.org").replace("ann@example.org", "ADDRESS")
    take_mail(site.outbox)

    bot = subscribe(site.client, "bot@example.org", website="https://spam.example")

    assert bot.replace("bot@example.org", "ADDRESS") == genuine
    assert not is_stored(site, "bot@example.org")
    assert take_mail(site.outbox) == []


# --- CSRF ------------------------------------------------------------------------------------


def test_a_post_without_the_csrf_field_is_refused(site: Site) -> None:
    site.client.get("/subscribe/weekly")  # the browser has the cookie

    response = site.client.post("/subscribe/weekly", data={"email": "ann@example.org"})

    assert response.status_code == 403
    assert "nothing was changed" in response.text
    assert not is_stored(site, "ann@example.org")
    assert take_mail(site.outbox) == []


def test_a_csrf_field_without_its_cookie_is_refused(site: Site) -> None:
    field = csrf_token(site.client.get("/subscribe/weekly").text)
    stranger = site.new_client()  # another browser, as on another site's page

    response = stranger.post("/subscribe/weekly", data={"csrf_token": field, "email": "a@b.org"})

    assert response.status_code == 403
    assert not is_stored(site, "a@b.org")


def test_a_csrf_field_for_another_cookie_is_refused(site: Site) -> None:
    field = csrf_token(site.client.get("/subscribe/weekly").text)
    other = site.new_client()
    other.get("/subscribe/weekly")  # holds a cookie of its own

    response = other.post("/subscribe/weekly", data={"csrf_token": field, "email": "a@b.org"})

    assert response.status_code == 403


def test_a_csrf_field_signed_with_another_key_is_refused(site: Site) -> None:
    site.client.cookies.set("digest_csrf", "A" * 22)
    forged = CsrfGuard("not-our-secret").pair_for("A" * 22).field_value

    response = site.client.post(
        "/subscribe/weekly", data={"csrf_token": forged, "email": "a@b.org"}
    )

    assert response.status_code == 403


# --- rate limit ------------------------------------------------------------------------------


def test_too_many_requests_from_one_address_get_a_429_with_retry_after(tmp_path: Path) -> None:
    settings = build_settings(tmp_path)
    store = Store.open(settings.database_url)
    with store.engine.begin() as conn:
        service.ensure_list(conn, "weekly", title="The Weekly", now=START)
    clock = Clock()
    app = build_app(settings, store.engine, clock, RateLimit(burst=2, refill_seconds=60))
    client = TestClient(app, client=("203.0.113.9", 1234))
    neighbour = TestClient(app, client=("203.0.113.10", 1234))

    first = subscribe(client, "a1@example.org")
    second = subscribe(client, "a2@example.org")
    third = client.post("/subscribe/weekly", data={"email": "a3@example.org"})

    assert first.startswith("200\n") and second.startswith("200\n")
    assert third.status_code == 429
    assert third.headers["retry-after"] == "60"
    assert "Too many attempts" in third.text
    assert subscribe(neighbour, "b1@example.org").startswith("200\n")
    clock.advance(seconds=60)
    assert subscribe(client, "a3@example.org").startswith("200\n")
    store.engine.dispose()


# --- confirming ------------------------------------------------------------------------------


def test_opening_the_confirmation_link_only_shows_a_button(site: Site) -> None:
    subscribe(site.client, "ann@example.org")
    link = confirm_link(site, "ann@example.org")

    page = site.new_client().get(link)  # a link scanner: no cookie, follows the link

    assert page.status_code == 200
    assert "Confirm your subscription to The Weekly" in page.text
    assert '<form method="post">' in page.text and ">Confirm</button>" in page.text
    assert subscription_of(site, "ann@example.org")[0] == "pending"
    assert take_mail(site.outbox) == []


def test_pressing_confirm_activates_logs_consent_and_sends_the_welcome(site: Site) -> None:
    subscribe(site.client, "ann@example.org", name="Ann")
    link = confirm_link(site, "ann@example.org")
    site.clock.advance(hours=2)
    page = site.client.get(link).text

    response = site.client.post(
        link, data={"csrf_token": csrf_token(page)}, headers={"user-agent": CHROME}
    )

    assert response.status_code == 200
    assert "You are subscribed" in response.text
    assert 'href="../p/' in response.text
    assert subscription_of(site, "ann@example.org")[0] == "active"
    confirmed = consent_log(site, "ann@example.org")[-1]
    assert confirmed["action"] == "confirmed"
    assert (confirmed["source"], confirmed["ip"], confirmed["user_agent"]) == (
        "form:/confirm",
        "testclient",
        CHROME,
    )
    assert confirmed["wording"] == shown_text(page, "consent")
    (welcome,) = take_mail(site.outbox)
    assert welcome["To"] == "ann@example.org"
    assert link_path(welcome, "p").startswith("/p/")
    assert "Ann" in plain_text(welcome)


def test_confirming_twice_welcomes_once(site: Site) -> None:
    subscribe(site.client, "ann@example.org")
    link = confirm_link(site, "ann@example.org")
    token = csrf_token(site.client.get(link).text)

    site.client.post(link, data={"csrf_token": token})
    again = site.client.post(link, data={"csrf_token": token})

    assert again.status_code == 200 and "You are subscribed" in again.text
    assert len(take_mail(site.outbox)) == 1
    assert [e["action"] for e in consent_log(site, "ann@example.org")] == [
        "requested",
        "confirmed",
    ]
    assert "You are subscribed" in site.client.get(link).text


def test_confirm_without_the_csrf_field_changes_nothing(site: Site) -> None:
    subscribe(site.client, "ann@example.org")
    link = confirm_link(site, "ann@example.org")

    response = site.new_client().post(link)

    assert response.status_code == 403
    assert subscription_of(site, "ann@example.org")[0] == "pending"


def test_an_expired_confirmation_link_is_a_clear_400_page(site: Site) -> None:
    subscribe(site.client, "ann@example.org")
    link = confirm_link(site, "ann@example.org")
    site.clock.advance(hours=49)

    page = site.client.get(link)
    token = csrf_token(site.client.get("/subscribe/weekly").text)
    pressed = site.client.post(link, data={"csrf_token": token})

    for response in (page, pressed):
        assert response.status_code == 400
        assert "This confirmation link has expired" in response.text
    assert subscription_of(site, "ann@example.org")[0] == "pending"


def test_an_altered_confirmation_link_is_a_400_page(site: Site) -> None:
    subscribe(site.client, "ann@example.org")
    link = confirm_link(site, "ann@example.org")

    response = site.client.get(link[:-3] + ("xyz" if not link.endswith("xyz") else "abc"))

    assert response.status_code == 400
    assert "This confirmation link is not valid" in response.text
    assert "Traceback" not in response.text


def test_a_confirmation_token_for_another_address_confirms_nobody(site: Site) -> None:
    subscribe(site.client, "ann@example.org")
    take_mail(site.outbox)
    with site.engine.connect() as conn:
        ann = service.find_person(conn, "ann@example.org")
    assert ann is not None
    # Signed by us, for Ann's id, but for Mallory's address.
    token = make_confirm_token(SECRET, ann.id, "weekly", "mallory@example.org", now=START)
    field = csrf_token(site.client.get("/subscribe/weekly").text)

    shown = site.client.get(f"/confirm/{token}")
    pressed = site.client.post(f"/confirm/{token}", data={"csrf_token": field})

    assert shown.status_code == pressed.status_code == 400
    assert subscription_of(site, "ann@example.org")[0] == "pending"
    assert take_mail(site.outbox) == []


# --- when mail cannot go out -----------------------------------------------------------------


def test_a_confirmation_the_backend_refuses_is_logged_and_the_answer_stays_the_same(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    site.outbox.parent.joinpath("outbox").write_text("a file where the folder should be")
    caplog.set_level(logging.WARNING, logger="digest.web.site")

    answer = subscribe(site.client, "ann@example.org")

    assert answer.startswith("200\n") and "Check your inbox" in answer
    assert subscription_of(site, "ann@example.org")[0] == "pending"
    (record,) = [r for r in caplog.records if "confirm notice not sent" in r.getMessage()]
    assert "list=weekly" in record.getMessage()


def test_without_a_mailer_there_are_no_subscriber_pages(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'plain.db'}")
    app = create_app(engine=store.engine, secret_key=SECRET, publication="Example News")
    client = TestClient(app)

    for path in ("/subscribe", "/subscribe/weekly", "/confirm/x", "/p/x"):
        assert client.get(path).status_code == 404
    store.engine.dispose()
