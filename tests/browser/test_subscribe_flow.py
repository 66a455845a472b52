"""A reader joins, tunes and leaves a list in Chromium, with JavaScript off, on a phone.

The app runs as `digest serve` builds it (digest/web/serving.py), under uvicorn on 127.0.0.1;
its mail goes by SMTP to aiosmtpd on loopback, and every link followed comes out of a caught
message. Each page is measured for sideways scrolling and tap-target size, and a full-page
PNG of each is kept in <repo>/test-artefacts/screenshots (or $DIGEST_SCREENSHOTS), named
subscribe-flow-<step>.png.
"""

from __future__ import annotations

import email
import re
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from typing import Any

import pytest

from digest.config import parse_settings
from digest.store import Store
from digest.web.serving import public_app
from subscribers import service
from tests.browser.chromium import (
    BROWSER_TEST,
    CHROMIUM,
    CHROMIUM_ARGS,
    measure_layout,
    screenshots_dir,
    small_tap_targets,
)
from tests.browser.live_app import listening, served, wait_for
from tests.conftest import MailSink, SmtpServer

pytestmark = BROWSER_TEST
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the playwright package is absent (pip install playwright)"
)

PHONE = {"width": 375, "height": 812}
ADDRESS = "reader@example.org"


@dataclass(frozen=True)
class Running:
    base_url: str
    store: Store
    sink: MailSink


def config(base_url: str, smtp: SmtpServer) -> str:
    return f"""
version = 1
name = "Example News"
base_url = "{base_url}"

[mail]
url = "smtp://{smtp.host}:{smtp.port}"
sender = "Example News <news@example.org>"

[[digests]]
name = "weekly"
title = "The Weekly"
cadence = "weekly"
topics = [{{ name = "Science" }}, {{ name = "Culture" }}, {{ name = "Sport" }}]

[[digests]]
name = "daily"
list = "weekly"
title = "The Daily"
cadence = "daily"
"""


@pytest.fixture
def running(tmp_path: Path, smtp_server: SmtpServer) -> Iterator[Running]:
    """The public app under uvicorn in a thread, on a port bound before the links are made."""
    with listening() as (listener, base_url):
        path = tmp_path / "digest.toml"
        text = config(base_url, smtp_server)
        path.write_text(text, encoding="utf-8")
        settings = parse_settings(text, path, {"DIGEST_SECRET_KEY": "browser-test-secret"})
        store = Store.open(settings.database_url)
        try:
            with served(public_app(settings, store), listener):
                yield Running(base_url, store, smtp_server.sink)
        finally:
            store.engine.dispose()


@pytest.fixture
def phone(running: Running) -> Iterator[Any]:
    """A Chromium tab the size of a phone, with JavaScript switched off."""
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = chromium.new_context(
            viewport=PHONE, is_mobile=True, has_touch=True, java_script_enabled=False
        )
        try:
            yield context.new_page()
        finally:
            context.close()
            chromium.close()


def next_mail(sink: MailSink, seen: int) -> EmailMessage:
    """The message after the first `seen` ones the SMTP server accepted."""
    wait_for(lambda: len(sink.received) > seen, f"message {seen + 1} at the SMTP server")
    received = sink.received[seen]
    assert received.rcpt_tos == [ADDRESS]
    message = email.message_from_bytes(received.data, policy=default)
    assert isinstance(message, EmailMessage)
    return message


def link_in(message: EmailMessage, base_url: str, page: str) -> str:
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    found = re.search(rf"{re.escape(base_url)}/{page}/[A-Za-z0-9._~-]+", body.get_content())
    assert found, f"no /{page}/ link in {message['Subject']!r}"
    return found.group(0)


def look(page: Any, step: str) -> None:
    """Keep a screenshot; the page must fit the phone and its links be big enough to tap."""
    page.screenshot(path=str(screenshots_dir() / f"subscribe-flow-{step}.png"), full_page=True)
    layout = measure_layout(page)
    assert layout.scroll_width <= layout.viewport_width, f"{step}: scrolls sideways"
    assert small_tap_targets(layout) == [], step


def subscription(running: Running) -> tuple[str, str, tuple[str, ...]]:
    with running.store.engine.connect() as conn:
        person = service.find_person(conn, ADDRESS)
        assert person is not None
        found = service.find_subscription(conn, person.id, "weekly")
    assert found is not None
    return found.status, found.cadence, found.topics


def test_subscribe_confirm_change_topics_and_unsubscribe(running: Running, phone: Any) -> None:
    page = phone

    page.goto(f"{running.base_url}/subscribe")
    look(page, "1-form")
    page.get_by_label("Email address").fill(ADDRESS)
    page.get_by_label("Name (optional)").fill("Robin")
    page.get_by_label("Sport").uncheck()
    page.get_by_label("A daily digest").check()
    page.get_by_role("button", name="Subscribe").click()

    sync_api.expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()
    look(page, "2-check-inbox")
    assert subscription(running) == ("pending", "daily", ("Science", "Culture"))

    confirmation = next_mail(running.sink, 0)
    page.goto(link_in(confirmation, running.base_url, "confirm"))
    look(page, "3-confirm")
    assert subscription(running)[0] == "pending"  # opening the link confirms nothing
    page.get_by_role("button", name="Confirm").click()

    sync_api.expect(page.get_by_role("heading", name="You are subscribed")).to_be_visible()
    look(page, "4-subscribed")
    assert subscription(running)[0] == "active"
    welcome = next_mail(running.sink, 1)

    page.get_by_role("link", name="Choose your topics and how often").click()
    assert page.url == link_in(welcome, running.base_url, "p")
    assert page.get_by_label("Science").is_checked()
    assert not page.get_by_label("Sport").is_checked()
    page.get_by_label("Science").uncheck()
    page.get_by_label("Sport").check()
    page.get_by_label("Every issue").check()
    page.get_by_role("button", name="Save my choices").click()

    assert page.get_by_role("status").inner_text().startswith("Saved.")
    look(page, "5-preferences-saved")
    assert subscription(running) == ("active", "each", ("Culture", "Sport"))
    changed = next_mail(running.sink, 2)

    page.goto(link_in(changed, running.base_url, "u"))
    look(page, "6-unsubscribe")
    page.get_by_role("button", name="Unsubscribe").click()

    sync_api.expect(page.get_by_role("heading", name="You are unsubscribed")).to_be_visible()
    look(page, "7-unsubscribed")
    assert subscription(running)[0] == "unsubscribed"
    assert len(running.sink.received) == 3  # leaving sends nothing
