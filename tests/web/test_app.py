"""Tests for digest/web/app.py: the one-click unsubscribe pages, over a real SQLite file."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from digest.web.app import create_app
from subscribers import service, tables
from subscribers.tokens import make_unsubscribe_token

SECRET = "web-test-secret"
NOW = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)
CLICKED = datetime(2025, 3, 4, 19, 30, tzinfo=UTC)


@dataclass(frozen=True)
class Site:
    client: TestClient
    engine: sa.Engine
    ann_id: int
    url: str  # Ann's unsubscribe URL for the weekly list


@pytest.fixture
def site(database_url: str) -> Iterator[Site]:
    engine = sa.create_engine(database_url)  # SQLite, or PostgreSQL in that pass
    tables.metadata.create_all(engine)
    with engine.begin() as conn:
        service.ensure_list(conn, "weekly", title="The <b>Weekly</b>", now=NOW)
        ann = service.add_subscriber(
            conn, "ann@example.org", list_name="weekly", consent="form", now=NOW
        )
        service.add_subscriber(conn, "bob@example.org", list_name="weekly", consent="form", now=NOW)
    app = create_app(
        engine=engine, secret_key=SECRET, publication="Example News", clock=lambda: CLICKED
    )
    token = make_unsubscribe_token(SECRET, ann.id, "weekly")
    with TestClient(app, follow_redirects=False) as client:
        yield Site(client=client, engine=engine, ann_id=ann.id, url=f"/u/{token}")
    engine.dispose()


def audience(site: Site) -> list[str]:
    with site.engine.connect() as conn:
        return [r.email for r in service.audience(conn, "weekly")]


def unsubscribe_log(site: Site) -> list[tuple[str, datetime]]:
    """(note, time) of every unsubscribe event."""
    with site.engine.connect() as conn:
        rows = conn.execute(
            sa.select(tables.consent_events.c.note, tables.consent_events.c.at).where(
                tables.consent_events.c.action == "unsubscribed"
            )
        ).all()
    return [(note, at.replace(tzinfo=UTC)) for note, at in rows]


def test_one_click_form_urlencoded_post_unsubscribes(site: Site) -> None:
    response = site.client.post(site.url, data={"List-Unsubscribe": "One-Click"})

    assert response.request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert response.status_code == 200
    assert "You are unsubscribed" in response.text
    assert audience(site) == ["bob@example.org"]
    assert unsubscribe_log(site) == [("one-click", CLICKED)]


def test_one_click_multipart_post_unsubscribes(site: Site) -> None:
    response = site.client.post(site.url, files={"List-Unsubscribe": (None, "One-Click")})

    assert response.request.headers["content-type"].startswith("multipart/form-data")
    assert response.status_code == 200
    assert "You are unsubscribed" in response.text
    assert audience(site) == ["bob@example.org"]
    assert unsubscribe_log(site) == [("one-click", CLICKED)]


def test_get_asks_but_never_unsubscribes(site: Site) -> None:
    response = site.client.get(site.url)

    assert response.status_code == 200
    assert "Unsubscribe ann@example.org from" in response.text
    assert '<form method="post">' in response.text
    assert audience(site) == ["ann@example.org", "bob@example.org"]
    assert unsubscribe_log(site) == []


def test_the_page_button_posts_one_click_and_is_logged_as_a_link(site: Site) -> None:
    response = site.client.post(site.url, data={"List-Unsubscribe": "One-Click", "from": "page"})

    assert response.status_code == 200
    assert audience(site) == ["bob@example.org"]
    assert unsubscribe_log(site) == [("link", CLICKED)]


def test_a_repeated_post_answers_the_same_and_logs_once(site: Site) -> None:
    first = site.client.post(site.url, data={"List-Unsubscribe": "One-Click"})
    second = site.client.post(site.url, data={"List-Unsubscribe": "One-Click"})

    assert first.status_code == second.status_code == 200
    assert "You are unsubscribed" in second.text
    assert len(unsubscribe_log(site)) == 1


def test_a_post_with_an_unreadable_body_still_unsubscribes(site: Site) -> None:
    response = site.client.post(
        site.url,
        content=b"--nope\r\ngarbage",
        headers={"content-type": "multipart/form-data; boundary=elsewhere"},
    )

    assert response.status_code == 200
    assert audience(site) == ["bob@example.org"]


def test_after_unsubscribing_the_link_says_so_instead_of_asking(site: Site) -> None:
    site.client.post(site.url, data={"List-Unsubscribe": "One-Click"})

    response = site.client.get(site.url)

    assert response.status_code == 200
    assert "You are unsubscribed" in response.text
    assert "<form" not in response.text


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_bad_token_is_a_400_page_without_a_traceback(site: Site, method: str) -> None:
    tampered = site.url[:-2] + ("AA" if not site.url.endswith("AA") else "BB")

    response = site.client.request(method, tampered, data={"List-Unsubscribe": "One-Click"})

    assert response.status_code == 400
    assert response.headers["content-type"].startswith("text/html")
    assert "This unsubscribe link is not valid" in response.text
    assert "Traceback" not in response.text and "File " not in response.text
    assert audience(site) == ["ann@example.org", "bob@example.org"]


def test_an_erased_subscriber_gets_a_calm_answer(site: Site) -> None:
    with site.engine.begin() as conn:
        service.remove_subscriber(conn, "ann@example.org", now=NOW)

    assert site.client.get(site.url).status_code == 200
    response = site.client.post(site.url, data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    assert "You are unsubscribed" in response.text


def test_pages_escape_what_they_show_and_stay_private(site: Site) -> None:
    response = site.client.get(site.url)

    assert "The &lt;b&gt;Weekly&lt;/b&gt;" in response.text
    assert "<b>Weekly</b>" not in response.text
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-store"


def test_healthz(site: Site) -> None:
    response = site.client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
