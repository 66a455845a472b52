"""End to end: `digest demo` from bundled samples to delivered .eml files, and unsubscribing."""

from __future__ import annotations

import csv
import email
import json
import logging
import re
from dataclasses import replace
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from markupsafe import escape
from typer.testing import CliRunner

from digest.cli import app
from digest.config import Settings, load_settings
from digest.deliver.backends import backend_from_url
from digest.deliver.file import FileBackend
from digest.messages import MessageFactory
from digest.models import Issue, Section
from digest.pipeline import published_pages, send_issue
from digest.store import IssueNotEditable, Store
from digest.web.app import create_app
from digest.web.serving import public_app
from subscribers.service import audience
from tests.render.sample_issue import sample_article

UNSUBSCRIBE = re.compile(r"<(https?://[^>]+/u/([^>]+))>, <mailto:([^>]+)>")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("demo") / "digest-demo"
    result = CliRunner().invoke(app, ["demo", str(folder), "--json"])
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def _messages(demo: dict) -> dict[str, EmailMessage]:
    messages = {}
    for path in sorted(Path(demo["outbox"]).glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=default)
        messages[str(message["To"])] = message
    return messages


def _text(message: EmailMessage) -> str:
    return message.get_body(("plain",)).get_content()


def _html(message: EmailMessage) -> str:
    return message.get_body(("html",)).get_content()


def _subscribers(demo: dict) -> dict[str, tuple[str, ...]]:
    with open(Path(demo["folder"]) / "subscribers.csv", encoding="utf-8") as handle:
        return {
            row["email"].lower(): tuple(t for t in row["topics"].split(";") if t)
            for row in csv.DictReader(handle)
        }


def test_demo_reports_its_run(demo: dict) -> None:
    assert demo["sources"] == 5 and demo["failed_sources"] == 0
    assert demo["articles"] >= 30
    assert demo["duplicates"] >= 2
    assert len(demo["topics"]) >= 5
    assert demo["sent"] == 20
    assert Path(demo["preview"]).is_file()


def test_every_subscriber_gets_exactly_one_message(demo: dict) -> None:
    messages = _messages(demo)
    assert sorted(messages) == sorted(_subscribers(demo))
    assert len(list(Path(demo["outbox"]).glob("*.eml"))) == 20


def test_each_message_has_the_headers_receivers_require(demo: dict) -> None:
    message_ids = set()
    for address, message in _messages(demo).items():
        assert message["From"] == "Demo Digest <digest@demo.example.org>"
        assert message["To"] == address
        assert message["Subject"].startswith("The Tamsett Valley Weekly")
        assert message["Date"].datetime.tzinfo is not None
        message_ids.add(message["Message-ID"])
        assert message["List-Id"] == "The Tamsett Valley Weekly <weekly.demo.example.org>"
        assert UNSUBSCRIBE.fullmatch(message["List-Unsubscribe"]), message["List-Unsubscribe"]
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert message.get_content_type() == "multipart/alternative"
        parts = [part.get_content_type() for part in message.iter_parts()]
        assert parts == ["text/plain", "text/html"]
    assert len(message_ids) == 20
    # The outbox row of each copy names the Message-ID that copy went out with.
    store = Store.open(load_settings(Path(demo["folder"]) / "digest.toml", {}).database_url)
    with store.engine.connect() as database:
        recorded = {row[0] for row in database.exec_driver_sql("SELECT message_id FROM outbox")}
    store.engine.dispose()
    assert recorded == message_ids


def test_messages_carry_the_issue_with_a_preheader_and_working_links(demo: dict) -> None:
    message = _messages(demo)["ada.fenwick@example.org"]  # subscribed to every topic
    html, text = _html(message), _text(message)
    unsubscribe_url = UNSUBSCRIBE.fullmatch(message["List-Unsubscribe"]).group(1)
    assert f'href="{unsubscribe_url}"' in html
    assert unsubscribe_url in text
    for topic in demo["topics"]:
        assert topic.upper() in text
    # The preheader: hidden text at the top of the body that inboxes show beside the subject.
    assert re.search(r'<div style="display:none;[^"]*"[^>]*>[^<]{20,}', html)
    assert "%%digest-" not in html and "%%digest-" not in text


def test_subscribers_only_get_the_topics_they_chose(demo: dict) -> None:
    messages = _messages(demo)
    for address, topics in _subscribers(demo).items():
        if not topics:
            continue
        text = _text(messages[address])
        for topic in demo["topics"]:
            assert (topic.upper() in text) == (topic in topics), (address, topic)


def test_duplicates_appear_once_and_boilerplate_is_gone(demo: dict) -> None:
    text = _text(_messages(demo)["ada.fenwick@example.org"])
    assert "also in" in text.lower()
    assert "Related:" not in text
    assert "cookie" not in text.lower()
    titles = re.findall(r"^\* (.+)$", text, flags=re.MULTILINE)
    assert len(titles) == len(set(titles)) >= 25


def test_running_the_demo_again_sends_nobody_a_second_copy(demo: dict) -> None:
    result = CliRunner().invoke(app, ["demo", demo["folder"], "--json"])
    assert result.exit_code == 0, result.stderr
    again = json.loads(result.stdout)
    assert again["issue_id"] == demo["issue_id"]
    assert len(list(Path(demo["outbox"]).glob("*.eml"))) == 20


async def test_one_click_unsubscribe_sticks_for_the_next_issue(demo: dict) -> None:
    settings = load_settings(Path(demo["folder"]) / "digest.toml", {})
    store = Store.open(settings.database_url)
    message = _messages(demo)["celeste.marr@example.net"]
    url = UNSUBSCRIBE.fullmatch(message["List-Unsubscribe"]).group(1)
    web = create_app(
        engine=store.engine, secret_key=settings.require_secret_key(), publication="Demo"
    )
    with TestClient(web) as client:
        response = client.post(
            url.removeprefix(settings.base_url),
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    assert response.status_code == 200
    with store.transaction() as connection:
        emails = {r.email for r in audience(connection, "weekly")}
    assert "celeste.marr@example.net" not in emails and len(emails) == 19

    issue = store.load_issue(demo["issue_id"])
    assert issue is not None
    next_issue, created = store.save_issue(replace(issue, id=None, period_key="next-week"))
    assert created
    outbox = Path(demo["folder"]) / "next-outbox"
    report = await send_issue(
        settings,
        store,
        next_issue.id,
        backend_from_url(f"file://{outbox}"),
        clock=lambda: datetime.now(UTC),
    )
    assert (report.sent, report.failed, report.unknown, report.queued) == (19, 0, 0, 0)
    recipients = {p.name.split("-", 1)[1].removesuffix(".eml") for p in outbox.glob("*.eml")}
    assert "celeste.marr@example.net" not in recipients and len(recipients) == 19


def test_a_source_whose_content_contradicts_its_kind_fails_alone(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    assert CliRunner().invoke(app, ["demo", str(folder), "--json"]).exit_code == 0
    config = folder / "digest.toml"
    text = config.read_text(encoding="utf-8")
    # Point the first feed source at the HTML article page.
    config.write_text(
        text.replace('url = "sources/courier.rss.xml"', 'url = "sources/fibre-hill-farms.html"'),
        encoding="utf-8",
    )
    result = CliRunner().invoke(app, ["--config", str(config), "fetch", "--json"])
    assert result.exit_code == 0, result.stderr
    outcomes = {s["name"]: s for s in json.loads(result.stdout)["sources"]}
    assert "not a feed" in outcomes["brindlemoor-courier"]["error"]
    assert all(not s["error"] for name, s in outcomes.items() if name != "brindlemoor-courier")
    health = json.loads(
        CliRunner().invoke(app, ["--config", str(config), "sources", "--json"]).stdout
    )
    courier = next(s for s in health["sources"] if s["name"] == "brindlemoor-courier")
    assert courier["failures"] == 1 and "not a feed" in courier["last_error"]


def test_readers_see_source_titles_not_config_names(demo: dict) -> None:
    text = _text(_messages(demo)["ada.fenwick@example.org"])
    assert "The Brindlemoor Courier" in text
    for name in ("brindlemoor-courier", "courier-flood-barrier", "courier-fibre-page"):
        assert name not in text


def test_view_in_browser_opens_the_sent_issue_and_drafts_stay_private(demo: dict) -> None:
    settings = load_settings(Path(demo["folder"]) / "digest.toml", {})
    store = Store.open(settings.database_url)
    message = _messages(demo)["celeste.marr@example.net"]
    html = _html(message)
    web_link = re.search(r'href="([^"]+/issues/\d+)"[^>]*>View in browser<', html)
    assert web_link is not None
    pages = published_pages(settings, store)
    web = create_app(
        engine=store.engine,
        secret_key=settings.require_secret_key(),
        publication="Demo",
        issue_page=pages,
    )
    issue = store.load_issue(demo["issue_id"])
    assert issue is not None
    draft, _ = store.save_issue(replace(issue, id=None, period_key="a-draft"))
    with TestClient(web) as client:
        page = client.get(web_link.group(1).removeprefix(settings.base_url))
        hidden = client.get(f"/issues/{draft.id}")
        unknown = client.get("/issues/999999")
    assert page.status_code == 200
    assert "script-src" not in page.headers["Content-Security-Policy"]
    assert "You are reading the web version" in page.text
    # Every section of the issue, whoever's topics the link came from; nobody's address.
    for section in issue.sections:
        assert escape(section.articles[0].title) in page.text
    assert "celeste.marr" not in page.text and "/u/" not in page.text
    assert (hidden.status_code, unknown.status_code) == (404, 404)


def test_a_variant_over_the_gmail_clip_is_logged_when_rendered(
    demo: dict, caplog: pytest.LogCaptureFixture
) -> None:
    settings = load_settings(Path(demo["folder"]) / "digest.toml", {})
    store = Store.open(settings.database_url)
    issue = store.load_issue(demo["issue_id"])
    assert issue is not None
    huge = replace(issue, sections=(Section("Everything", tuple(map(sample_article, range(250)))),))
    with caplog.at_level(logging.WARNING, logger="digest.pipeline"):
        MessageFactory(settings, huge).variant(())
    assert any("Gmail clips" in record.getMessage() for record in caplog.records)


def test_manage_preferences_in_the_digest_opens_that_reader_s_preferences(demo: dict) -> None:
    settings = load_settings(Path(demo["folder"]) / "digest.toml", {})
    store = Store.open(settings.database_url)
    html = _html(_messages(demo)["celeste.marr@example.net"])
    link = re.search(r'href="([^"]+/p/[^"]+)"[^>]*>Manage preferences<', html)
    assert link is not None
    with TestClient(public_app(settings, store)) as client:
        page = client.get(link.group(1).replace("&amp;", "&").removeprefix(settings.base_url))
        forged = client.get(link.group(1).removeprefix(settings.base_url)[:-3] + "xyz")
    assert page.status_code == 200
    assert "celeste.marr@example.net" in page.text
    assert forged.status_code == 400


class SevenAtATime:
    """The file backend, saying it takes seven messages a batch, and noting what it got."""

    batch_size = 7

    def __init__(self, folder: Path) -> None:
        self.file = FileBackend(folder)
        self.batches: list[int] = []

    async def send(self, batch: list, *, date: datetime) -> list:
        self.batches.append(len(batch))
        return await self.file.send(batch, date=date)


def copy_of_the_demo_issue(demo: dict, period_key: str) -> tuple[Settings, Store, Issue]:
    """The demo's settings and store, and a new draft issue with the demo issue's content."""
    settings = load_settings(Path(demo["folder"]) / "digest.toml", {})
    store = Store.open(settings.database_url)
    issue = store.load_issue(demo["issue_id"])
    assert issue is not None
    again, _ = store.save_issue(replace(issue, id=None, period_key=period_key))
    assert again.id is not None
    return settings, store, again


async def test_the_outbox_claims_as_many_rows_as_the_backend_takes(
    demo: dict, tmp_path: Path
) -> None:
    settings, store, again = copy_of_the_demo_issue(demo, "seven-at-a-time")
    backend = SevenAtATime(tmp_path)
    report = await send_issue(settings, store, again.id, backend, clock=lambda: datetime.now(UTC))
    assert report.sent == sum(backend.batches) and backend.batches[0] == 7
    assert all(size <= 7 for size in backend.batches)


async def test_a_send_that_died_before_queueing_queues_its_audience_when_resumed(
    demo: dict, tmp_path: Path
) -> None:
    settings, store, again = copy_of_the_demo_issue(demo, "died-before-queueing")
    now = datetime.now(UTC)
    # The sender moved the issue to `sending` and died before writing a single outbox row.
    assert store.start_sending(again.id, now=now)
    assert not store.start_sending(again.id, now=now)  # only one caller moves it
    with pytest.raises(IssueNotEditable, match="only a draft or approved issue"):
        store.save_issue_edits(replace(again, intro="too late"), now=now)

    report = await send_issue(settings, store, again.id, FileBackend(tmp_path), clock=lambda: now)

    delivered = len(list(tmp_path.glob("*.eml")))
    assert report.sent == delivered >= 19 and report.queued == 0  # the audience, once each
    assert store.issue_status(again.id) == "sent"
    # A sent issue is never queued again, even for a subscriber who joined since.
    config = ["--config", str(Path(demo["folder"]) / "digest.toml")]
    joined = CliRunner().invoke(app, [*config, "subscribers", "add", "late@example.org"])
    assert joined.exit_code == 0, joined.stderr
    again_report = await send_issue(
        settings, store, again.id, FileBackend(tmp_path), clock=lambda: now
    )
    assert again_report.sent == delivered == len(list(tmp_path.glob("*.eml")))
