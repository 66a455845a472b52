"""Tests for digest/web/preferences.py: choosing topics and cadence, pausing, leaving,
downloading and erasing one's data, through the app and a migrated SQLite file."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from subscribers import service
from subscribers.tokens import make_preferences_token, make_unsubscribe_token
from tests.web.public_site import (
    CHROME,
    SECRET,
    Site,
    add_active,
    consent_log,
    csrf_token,
    is_stored,
    link_path,
    plain_text,
    shown_text,
    subscription_of,
    take_mail,
)


def preferences_url(subscriber_id: int, address: str, list_name: str = "weekly") -> str:
    return f"/p/{make_preferences_token(SECRET, subscriber_id, list_name, address)}"


def post_action(client: TestClient, url: str, action: str, **fields: object):  # type: ignore[no-untyped-def]
    """Open the page, then send one of its forms as the browser would."""
    page = client.get(url)
    assert page.status_code == 200, page.text
    data: dict[str, object] = {"csrf_token": csrf_token(page.text), "action": action, **fields}
    return client.post(url, data=data, headers={"user-agent": CHROME})


def audience(site: Site) -> list[str]:
    with site.engine.connect() as conn:
        return [r.email for r in service.audience_for(conn, "weekly")]


def test_the_page_shows_the_current_choices_and_every_action(site: Site) -> None:
    ann = add_active(site, "ann@example.org", topics=["Sport"], frequency="daily")

    response = site.client.get(preferences_url(ann, "ann@example.org"))

    page = response.text
    assert response.status_code == 200
    assert "<h1>Your subscription to The Weekly</h1>" in page
    assert 'value="Sport" checked>' in page
    assert 'value="Science">' in page and 'value="Culture &amp; Arts">' in page
    assert 'value="daily" checked>' in page
    assert 'value="paused"' in page
    for action in ("save", "unsubscribe", "export", "delete"):
        assert f'name="action" value="{action}"' in page
    assert page.count('name="csrf_token"') == 4
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["referrer-policy"] == "no-referrer"


def test_a_list_with_one_cadence_offers_receiving_or_pausing(site: Site) -> None:
    with site.engine.begin() as conn:
        ann = service.add_subscriber(
            conn, "ann@example.org", list_name="alerts", consent="fair", now=site.clock()
        )
    url = preferences_url(ann.id, "ann@example.org", "alerts")

    page = site.client.get(url).text
    post_action(site.client, url, "save", cadence="paused")

    assert 'name="topic"' not in page
    assert [v for v in ("each", "daily", "weekly", "paused") if f'value="{v}"' in page] == [
        "each",
        "paused",
    ]
    assert 'value="each" checked>' in page  # stored "weekly": every issue of this list
    assert subscription_of(site, "ann@example.org", "alerts") == ("active", "paused", ())


def test_saving_changes_topics_and_cadence_and_mails_a_note(site: Site) -> None:
    ann = add_active(site, "ann@example.org", name="Ann")
    url = preferences_url(ann, "ann@example.org")
    page = site.client.get(url).text

    response = post_action(site.client, url, "save", topic=["Science", "Sport"], cadence="each")

    assert response.status_code == 200
    assert "Saved." in response.text
    assert subscription_of(site, "ann@example.org") == ("active", "each", ("Science", "Sport"))
    changed = consent_log(site, "ann@example.org")[-1]
    assert changed["action"] == "preferences"
    assert (changed["source"], changed["ip"], changed["user_agent"]) == (
        "form:/p",
        "testclient",
        CHROME,
    )
    assert changed["wording"] == shown_text(page, "choices-intro")
    (note,) = take_mail(site.outbox)
    assert note["To"] == "ann@example.org"
    assert "Science" in plain_text(note)
    assert link_path(note, "u").startswith("/u/")


def test_ticking_every_topic_stores_all_topics(site: Site) -> None:
    ann = add_active(site, "ann@example.org", topics=["Sport"])
    url = preferences_url(ann, "ann@example.org")

    post_action(
        site.client, url, "save", topic=["Science", "Culture & Arts", "Sport"], cadence="weekly"
    )

    assert subscription_of(site, "ann@example.org") == ("active", "weekly", ())


def test_pausing_stops_issues_without_unsubscribing(site: Site) -> None:
    ann = add_active(site, "ann@example.org")
    add_active(site, "bob@example.org")

    post_action(
        site.client,
        preferences_url(ann, "ann@example.org"),
        "save",
        topic=["Sport"],
        cadence="paused",
    )

    assert subscription_of(site, "ann@example.org") == ("active", "paused", ("Sport",))
    assert audience(site) == ["bob@example.org"]


def test_choosing_no_topic_is_refused_with_a_pointer_to_unsubscribe(site: Site) -> None:
    ann = add_active(site, "ann@example.org", topics=["Sport"])

    response = post_action(
        site.client, preferences_url(ann, "ann@example.org"), "save", cadence="each"
    )

    assert response.status_code == 400
    assert (
        '<a href="#topic-1">Choose at least one topic, or unsubscribe below.</a>' in response.text
    )
    assert subscription_of(site, "ann@example.org") == ("active", "weekly", ("Sport",))
    assert take_mail(site.outbox) == []


def test_saving_without_the_csrf_field_changes_nothing(site: Site) -> None:
    ann = add_active(site, "ann@example.org")
    url = preferences_url(ann, "ann@example.org")
    site.client.get(url)

    response = site.client.post(url, data={"action": "save", "topic": "Sport", "cadence": "each"})

    assert response.status_code == 403
    assert subscription_of(site, "ann@example.org") == ("active", "weekly", ())
    assert take_mail(site.outbox) == []


def test_unsubscribe_from_all_leaves_every_list(site: Site) -> None:
    ann = add_active(site, "ann@example.org")
    with site.engine.begin() as conn:
        service.add_subscriber(
            conn, "ann@example.org", list_name="alerts", consent="fair", now=site.clock()
        )

    response = post_action(site.client, preferences_url(ann, "ann@example.org"), "unsubscribe")

    assert response.status_code == 200
    assert "You are unsubscribed from everything" in response.text
    assert 'name="action" value="save"' not in response.text
    assert subscription_of(site, "ann@example.org")[0] == "unsubscribed"
    assert subscription_of(site, "ann@example.org", "alerts")[0] == "unsubscribed"
    assert audience(site) == []
    assert consent_log(site, "ann@example.org")[-1]["action"] == "unsubscribed"


def test_an_unsubscribed_reader_can_not_save_but_may_subscribe_again(site: Site) -> None:
    ann = add_active(site, "ann@example.org")
    url = preferences_url(ann, "ann@example.org")
    post_action(site.client, url, "unsubscribe")

    response = post_action(site.client, url, "save", topic=["Sport"], cadence="each")

    assert response.status_code == 409
    assert 'href="../subscribe/weekly"' in response.text
    assert subscription_of(site, "ann@example.org")[0] == "unsubscribed"


def test_download_my_data_is_a_json_attachment_of_everything_stored(site: Site) -> None:
    ann = add_active(site, "ann@example.org", name="Ann")

    response = post_action(site.client, preferences_url(ann, "ann@example.org"), "export")

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["content-disposition"].startswith("attachment;")
    assert response.headers["cache-control"] == "no-store"
    data = json.loads(response.text)
    assert data["person"]["email"] == "ann@example.org" and data["person"]["name"] == "Ann"
    assert [s["list"] for s in data["subscriptions"]] == ["weekly"]
    assert [e["action"] for e in data["consent_log"]] == ["subscribed"]


def test_delete_me_asks_first_then_erases(site: Site) -> None:
    ann = add_active(site, "ann@example.org")
    url = preferences_url(ann, "ann@example.org")

    asked = post_action(site.client, url, "delete")

    assert asked.status_code == 200
    assert "Delete everything about ann@example.org?" in asked.text
    assert 'name="action" value="erase"' in asked.text
    assert is_stored(site, "ann@example.org")

    erased = site.client.post(url, data={"csrf_token": csrf_token(asked.text), "action": "erase"})

    assert erased.status_code == 200
    assert "Your data is deleted" in erased.text
    assert not is_stored(site, "ann@example.org")
    with site.engine.connect() as conn:
        assert service.is_suppressed(conn, "ann@example.org")
    assert site.client.get(url).status_code == 404


def test_erasing_without_the_csrf_field_keeps_everything(site: Site) -> None:
    ann = add_active(site, "ann@example.org")
    url = preferences_url(ann, "ann@example.org")

    response = site.new_client().post(url, data={"action": "erase"})

    assert response.status_code == 403
    assert is_stored(site, "ann@example.org")


def test_a_token_for_one_address_opens_nothing_for_another(site: Site) -> None:
    add_active(site, "ann@example.org")
    bob = add_active(site, "bob@example.org")
    # Signed by us, with Bob's id, but for Ann's address.
    url = preferences_url(bob, "ann@example.org")

    shown = site.client.get(url)
    field = csrf_token(site.client.get(preferences_url(bob, "bob@example.org")).text)
    saved = site.client.post(url, data={"csrf_token": field, "action": "erase"})

    assert shown.status_code == saved.status_code == 404
    assert "does not open a subscription" in shown.text
    assert is_stored(site, "bob@example.org") and is_stored(site, "ann@example.org")


def test_an_altered_preferences_link_is_a_400_page(site: Site) -> None:
    ann = add_active(site, "ann@example.org")
    url = preferences_url(ann, "ann@example.org")

    response = site.client.get(url[:-2] + ("AA" if not url.endswith("AA") else "BB"))

    assert response.status_code == 400
    assert "This preferences link is not valid" in response.text


# --- one-click unsubscribe beside the forms ----------------------------------------------------


def test_one_click_still_needs_no_cookie_and_no_csrf_field(site: Site) -> None:
    ann = add_active(site, "ann@example.org")
    url = f"/u/{make_unsubscribe_token(SECRET, ann, 'weekly')}"
    mail_provider = site.new_client("192.0.2.7")

    first = mail_provider.post(url, data={"List-Unsubscribe": "One-Click"})
    again = mail_provider.post(url, data={"List-Unsubscribe": "One-Click"})

    assert first.status_code == again.status_code == 200
    assert "set-cookie" not in first.headers
    assert subscription_of(site, "ann@example.org")[0] == "unsubscribed"
    left = [e for e in consent_log(site, "ann@example.org") if e["action"] == "unsubscribed"]
    assert [(e["note"], e["ip"]) for e in left] == [("one-click", "192.0.2.7")]


def test_the_unsubscribe_page_button_works_without_a_cookie(site: Site) -> None:
    ann = add_active(site, "ann@example.org")
    url = f"/u/{make_unsubscribe_token(SECRET, ann, 'weekly')}"
    page = site.new_client().get(url)
    assert "csrf_token" not in page.text

    response = site.new_client().post(url, data={"List-Unsubscribe": "One-Click", "from": "page"})

    assert response.status_code == 200
    assert subscription_of(site, "ann@example.org")[0] == "unsubscribed"
