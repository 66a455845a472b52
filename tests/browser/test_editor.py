"""The editor's main path in Chromium, with JavaScript off: log in, preview this week's draft at
600 and 375 px, drop an item, write the intro, send a test, approve for a time.

The app runs as `digest serve` builds it (digest/web/serving.py) with DIGEST_EDITOR_PASSWORD in
its environment, under uvicorn on 127.0.0.1; the test goes by SMTP to aiosmtpd on loopback.
A full-page PNG of each step is kept in <repo>/test-artefacts/screenshots (or
$DIGEST_SCREENSHOTS), named editor-<step>.png.
"""

from __future__ import annotations

import email
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from digest.config import parse_settings
from digest.store import Store
from digest.web.serving import public_app
from tests.browser.chromium import BROWSER_TEST, CHROMIUM, CHROMIUM_ARGS, screenshots_dir
from tests.browser.live_app import listening, served, wait_for
from tests.conftest import MailSink, SmtpServer
from tests.web.test_editor import PASSWORD, save_issue

pytestmark = BROWSER_TEST
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the playwright package is absent (pip install playwright)"
)

DESKTOP = {"width": 1280, "height": 1000}
ZONE = "Europe/Berlin"


@dataclass(frozen=True)
class Running:
    base_url: str
    store: Store
    sink: MailSink
    issue_id: int


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
timezone = "{ZONE}"
topics = [{{ name = "Science" }}, {{ name = "Sport" }}]
"""


@pytest.fixture
def running(tmp_path: Path, smtp_server: SmtpServer) -> Iterator[Running]:
    """The app with the editor's pages under uvicorn in a thread; one draft issue stored."""
    with listening() as (listener, base_url):
        path = tmp_path / "digest.toml"
        text = config(base_url, smtp_server)
        path.write_text(text, encoding="utf-8")
        settings = parse_settings(text, path, {"DIGEST_SECRET_KEY": "browser-test-secret"})
        store = Store.open(settings.database_url)
        issue_id = save_issue(store)
        app = public_app(settings, store, environ={"DIGEST_EDITOR_PASSWORD": PASSWORD})
        try:
            with served(app, listener):
                yield Running(base_url, store, smtp_server.sink, issue_id)
        finally:
            store.engine.dispose()


@pytest.fixture
def desktop(running: Running) -> Iterator[Any]:
    """A desktop Chromium tab with JavaScript switched off: the editor needs none."""
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = chromium.new_context(viewport=DESKTOP, java_script_enabled=False)
        try:
            yield context.new_page()
        finally:
            context.close()
            chromium.close()


def look(page: Any, step: str) -> None:
    """Keep the whole page, and the previews apart: Chromium leaves sandboxed frames (drawn in
    their own process) blank in full-page screenshots, not in element ones."""
    folder = screenshots_dir()
    page.screenshot(path=str(folder / f"editor-{step}.png"), full_page=True)
    previews = page.locator(".previews")
    if previews.count():
        previews.screenshot(path=str(folder / f"editor-{step}-previews.png"))


def frame_width(page: Any, selector: str) -> float:
    box = page.locator(selector).bounding_box()
    assert box is not None, f"{selector} is not drawn"
    return box["width"]


def test_log_in_preview_drop_write_intro_send_a_test_and_approve(
    running: Running, desktop: Any
) -> None:
    page = desktop
    expect = sync_api.expect

    page.goto(f"{running.base_url}/editor/")
    assert page.url.startswith(f"{running.base_url}/editor/login")
    look(page, "1-login")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()

    assert page.url == f"{running.base_url}/editor/"
    look(page, "2-issues")
    page.get_by_role("link", name="The Weekly").click()

    # The reader's email, framed at a desktop pane's width and a phone's.
    desktop_frame = page.frame_locator("#preview-desktop")
    phone_frame = page.frame_locator("#preview-phone")
    expect(desktop_frame.get_by_role("link", name="Story S2")).to_be_visible()
    expect(phone_frame.get_by_role("link", name="Story S2")).to_be_visible()
    assert 600 <= frame_width(page, "#preview-desktop") <= 604  # plus its border
    assert 375 <= frame_width(page, "#preview-phone") <= 379
    expect(page.locator("#inbox-subject")).to_have_text("The Weekly — March 3, 2025")
    expect(page.locator("#text-version")).to_contain_text("Story S2")
    look(page, "3-preview")

    page.get_by_role("button", name="Drop: Story S2").click()
    expect(page.get_by_role("status")).to_have_text("Item dropped.")
    expect(desktop_frame.get_by_role("link", name="Story S1")).to_be_visible()
    expect(desktop_frame.get_by_role("link", name="Story S2")).to_have_count(0)
    look(page, "4-dropped")

    page.get_by_label("Intro").fill("A **big** week for science.")
    page.get_by_role("button", name="Save intro").click()
    expect(page.get_by_role("status")).to_have_text("Intro saved.")
    expect(desktop_frame.locator("strong", has_text="big")).to_be_visible()
    expect(phone_frame.locator("strong", has_text="big")).to_be_visible()
    look(page, "5-intro")

    page.get_by_label("Send to").fill("ed@example.org")
    page.get_by_role("button", name="Send test").click()
    expect(page.get_by_role("status")).to_have_text("Test sent to 1 address.")
    wait_for(lambda: len(running.sink.received) == 1, "the test at the SMTP server")
    test = email.message_from_bytes(running.sink.received[0].data, policy=default)
    assert isinstance(test, EmailMessage)
    assert running.sink.received[0].rcpt_tos == ["ed@example.org"]
    assert test["Subject"] == "[Test] The Weekly — March 3, 2025"
    html_part = test.get_body(preferencelist=("html",))
    assert html_part is not None
    assert "<strong>big</strong>" in html_part.get_content()
    assert "Story S2" not in html_part.get_content()
    look(page, "6-test-sent")

    tomorrow = (datetime.now(ZoneInfo(ZONE)) + timedelta(days=1)).replace(
        hour=9, minute=30, second=0, microsecond=0
    )
    page.get_by_label(f"at this time ({ZONE}):").check()
    page.get_by_label(f"Send at, {ZONE} time").fill(tomorrow.strftime("%Y-%m-%dT%H:%M"))
    page.get_by_role("button", name="Approve", exact=True).click()
    expect(page.get_by_role("status")).to_have_text("Issue approved.")
    expect(page.locator("#status")).to_have_text("approved")
    look(page, "7-approved")
    summary = running.store.issue_summary(running.issue_id)
    assert summary is not None
    assert summary.status == "approved"
    assert summary.send_after == tomorrow.astimezone(UTC)
    assert len(running.sink.received) == 1  # approving sends nothing by itself


def test_a_stale_tab_is_shown_the_issue_as_it_is_now_and_logging_out_ends_every_tab(
    running: Running, desktop: Any
) -> None:
    expect = sync_api.expect
    first = desktop
    first.goto(f"{running.base_url}/editor/login")
    first.get_by_label("Password").fill(PASSWORD)
    first.get_by_role("button", name="Log in").click()
    issue_url = f"{running.base_url}/editor/issues/{running.issue_id}"
    first.goto(issue_url)
    second = first.context.new_page()
    second.goto(issue_url)

    first.get_by_role("button", name="Drop: Story S2").click()
    expect(first.get_by_role("status")).to_have_text("Item dropped.")
    second.get_by_role("button", name="Approve", exact=True).click()
    expect(second.get_by_role("alert")).to_contain_text("The issue changed since you opened it")
    expect(second.get_by_role("button", name="Drop: Story S2")).to_have_count(0)
    look(second, "8-changed")
    assert running.store.issue_status(running.issue_id) == "draft"

    first.get_by_role("button", name="Log out", exact=True).click()
    assert first.url.startswith(f"{running.base_url}/editor/login")
    second.goto(issue_url)
    assert second.url.startswith(f"{running.base_url}/editor/login")
