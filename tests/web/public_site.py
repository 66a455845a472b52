"""A whole public site for the web tests: a migrated SQLite file, the real notice mailer writing
.eml files to an outbox folder, and the app as `digest serve` builds it; helpers to read it."""

from __future__ import annotations

import email
import html
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from digest.config import Settings, parse_settings
from digest.deliver.backends import backend_from_url
from digest.notices import NoticeMailer
from digest.store import Store
from digest.web.app import create_app
from digest.web.ratelimit import RateLimit
from digest.web.site import offered_lists
from subscribers import service, tables

# A browser's user agent, as the consent log records it.
CHROME = "Mozilla/5.0 (X11; Linux x86_64) Chrome/140.0 Safari/537.36"

SECRET = "web-test-secret"
BASE_URL = "https://news.example.org"
START = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)
TOPICS = ("Science", "Culture & Arts", "Sport")
CONFIG = f"""
version = 1
name = "Example News"
base_url = "{BASE_URL}"

[mail]
url = "file://outbox"
sender = "Example News <news@example.org>"

[[digests]]
name = "weekly"
title = "The Weekly"
cadence = "weekly"
topics = [{{ name = "Science" }}, {{ name = "Culture & Arts" }}, {{ name = "Sport" }}]

[[digests]]
name = "daily"
list = "weekly"
title = "The Daily"
cadence = "daily"

[[digests]]
name = "alerts"
title = "Alerts"
"""
# Generous enough that only the rate-limit tests meet it.
TEST_RATE_LIMIT = RateLimit(burst=50, refill_seconds=1)


@dataclass
class Clock:
    """The app's clock, moved by the test."""

    now: datetime = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **how_long: float) -> None:
        self.now += timedelta(**how_long)


@dataclass(frozen=True)
class Site:
    client: TestClient
    engine: sa.Engine
    settings: Settings
    outbox: Path
    clock: Clock

    def new_client(self, host: str = "testclient") -> TestClient:
        """Another browser (no cookies), optionally from another address."""
        return TestClient(self.client.app, follow_redirects=False, client=(host, 50000))


def build_settings(root: Path) -> Settings:
    path = root / "digest.toml"
    path.write_text(CONFIG, encoding="utf-8")
    return parse_settings(CONFIG, path, {"DIGEST_SECRET_KEY": SECRET})


def build_app(settings: Settings, engine: sa.Engine, clock: Clock, rate_limit: RateLimit):  # type: ignore[no-untyped-def]
    return create_app(
        engine=engine,
        secret_key=SECRET,
        publication="Example News",
        clock=clock,
        lists=offered_lists(settings.digests),
        mailer=NoticeMailer(settings, backend_from_url(settings.mail_url)),
        rate_limit=rate_limit,
    )


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    settings = build_settings(tmp_path)
    store = Store.open(settings.database_url)
    with store.engine.begin() as conn:
        service.ensure_list(conn, "weekly", title="The Weekly", now=START)
        service.ensure_list(conn, "alerts", title="Alerts", now=START)
    clock = Clock()
    app = build_app(settings, store.engine, clock, TEST_RATE_LIMIT)
    with TestClient(app, follow_redirects=False) as client:
        yield Site(client, store.engine, settings, tmp_path / "outbox", clock)
    store.engine.dispose()


# --- reading what the site did ---------------------------------------------------------------


def csrf_token(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, "the page has no CSRF field"
    return found.group(1)


def post_subscribe(
    client: TestClient, address: str, path: str = "/subscribe/weekly", **fields: object
) -> httpx.Response:
    """Fill in and send the subscribe form as a browser would (every topic, weekly, no name
    unless `fields` say otherwise); the answer."""
    form = client.get(path)
    assert form.status_code == 200
    data: dict[str, object] = {
        "csrf_token": csrf_token(form.text),
        "email": address,
        "name": "",
        "topic": list(TOPICS),
        "cadence": "weekly",
        "website": "",
    }
    data.update(fields)
    return client.post(path, data=data, headers={"user-agent": CHROME})


def take_mail(outbox: Path) -> list[EmailMessage]:
    """The messages written since the last call, oldest first; they leave the outbox."""
    if not outbox.is_dir():
        return []
    files = sorted(outbox.glob("*.eml"), key=lambda p: p.stat().st_mtime_ns)
    messages = []
    for path in files:
        message = email.message_from_bytes(path.read_bytes(), policy=default)
        assert isinstance(message, EmailMessage)
        messages.append(message)
        path.unlink()
    return messages


def plain_text(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return part.get_content()


def link_path(message: EmailMessage, page: str) -> str:
    """The path of the message's link to `page` ("confirm", "p" or "u"), as the site serves it."""
    found = re.search(rf"{re.escape(BASE_URL)}(/{page}/[A-Za-z0-9._~-]+)", plain_text(message))
    assert found, f"no /{page}/ link in:\n{plain_text(message)}"
    return found.group(1)


def shown_text(page: str, element_id: str) -> str:
    """The text of the element with this id, as a reader sees it (tags dropped, unescaped)."""
    found = re.search(rf'id="{element_id}"[^>]*>(.*?)</', page, re.S)
    assert found, f"no element #{element_id}"
    return html.unescape(" ".join(found.group(1).split()))


def subscription_of(site: Site, address: str, list_name: str = "weekly") -> tuple[str, str, tuple]:
    """(status, cadence, topics) of an address's subscription."""
    with site.engine.connect() as conn:
        person = service.find_person(conn, address)
        assert person is not None, f"{address} is not stored"
        found = service.find_subscription(conn, person.id, list_name)
    assert found is not None
    return found.status, found.cadence, found.topics


def is_stored(site: Site, address: str) -> bool:
    with site.engine.connect() as conn:
        return service.find_person(conn, address) is not None


def consent_log(site: Site, address: str) -> list[dict]:
    with site.engine.connect() as conn:
        person = service.find_person(conn, address)
        assert person is not None
        rows = conn.execute(
            sa.select(tables.consent_events)
            .where(tables.consent_events.c.subscriber_id == person.id)
            .order_by(tables.consent_events.c.id)
        ).mappings()
        return [dict(row) for row in rows]


def add_active(site: Site, address: str, **choices: object) -> int:
    """An operator-added, active subscriber of the weekly list; their id."""
    with site.engine.begin() as conn:
        person = service.add_subscriber(
            conn, address, list_name="weekly", consent="signed up at a fair", now=START, **choices
        )
    return person.id
