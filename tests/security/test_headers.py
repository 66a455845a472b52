"""Header injection: CR, LF and other controls in titles, labels, subjects, names, the list
title and the publication name never add a header to a message that goes out.

Real issues are sent through the real pipeline (`send_issue`) to the file backend (the email
package builds each message), to aiosmtpd (the fast encoder writes the bytes) and to the fake
SendGrid (the JSON payload); what arrives is parsed back with the email package. The
confirmation and welcome emails go through the web form. A header-level check of
`to_email_message` alone is in tests/deliver/test_message.py.
"""

from __future__ import annotations

import email
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

import pytest

from digest.config import Settings, parse_settings
from digest.deliver.backends import MailBackend, backend_from_url
from digest.deliver.sendgrid import SendGridBackend
from digest.errors import DeliveryError
from digest.messages import MessageFactory
from digest.models import Article, Issue, Section
from digest.pipeline import send_issue
from digest.store import OutboxRow, Store
from subscribers import service
from tests.conftest import SmtpServer
from tests.fake_sendgrid import FakeSendGrid
from tests.web.public_site import Site, csrf_token, link_path, post_subscribe, take_mail

NOW = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)
KEY = "SG.header-test-key"
# What each hostile value carries: line breaks that would start a Bcc header, and controls.
# (No NUL: PostgreSQL stores no text holding one; the list title in CONFIG has one.)
BREAK = "\r\nBcc: {}@evil.example\r\n\x07\x0b\x1b[31m\x85\u2028end"
CONFIG = """
version = 1
name = "Example News"
base_url = "https://news.example.org"

[mail]
url = "file://outbox"
sender = "Example News <news@example.org>"

[[digests]]
name = "weekly"
title = "The Weekly"
"""
# The loader refuses line breaks in these (tests/test_config.py); they are put in past it, so
# the send path is shown to hold on its own.
HOSTILE_NAME = "Example News\r\nBcc: publication@evil.example"
HOSTILE_TITLE = "The Weekly\r\nBcc: list@evil.example\x00"


def unchecked(settings: Settings, *, base_url: str | None = None, **mail: str) -> Settings:
    """`settings` with hostile values the loader would refuse: the publication name, the
    digest title, and any given [mail] values or base URL."""
    file = settings.file
    digests = tuple(d.model_copy(update={"title": HOSTILE_TITLE}) for d in file.digests)
    changed = file.model_copy(
        update={
            "name": HOSTILE_NAME,
            "digests": digests,
            "mail": file.mail.model_copy(update=mail),
        }
    )
    update: dict[str, object] = {"file": changed}
    if base_url is not None:
        update["base_url"] = base_url
    return settings.model_copy(update=update)


ISSUE_HEADERS = {
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "MIME-Version",
    "Content-Type",
}
SENDGRID_HEADERS = {"Message-ID", "List-Id", "List-Unsubscribe", "List-Unsubscribe-Post"}


def has_control(text: str) -> bool:
    return any(ord(c) < 32 or 0x7F <= ord(c) <= 0x9F or c in "\u2028\u2029" for c in text)


def assert_only_our_headers(raw: bytes, expected: set[str]) -> EmailMessage:
    """The message's top-level headers are exactly `expected`, each once, each one line of
    visible characters; nothing below the header block is read as a header."""
    message = email.message_from_bytes(raw, policy=default)
    assert isinstance(message, EmailMessage)
    names = [name for name, _value in message.items()]
    assert sorted(names) == sorted(expected), names
    for name, value in message.items():
        assert not has_control(str(value)), (name, str(value))
    block = raw.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0].decode("ascii")
    for line in block.split("\n"):
        assert line[:1] in (" ", "\t") or line.split(":", 1)[0] in expected, line
    assert "bcc" not in {name.lower() for name in names}
    return message


def hostile_issue(key: str) -> Issue:
    articles = tuple(
        Article(
            id=f"{key}-{n}",
            url=f"https://example.org/{key}/{n}",
            title=f"Story {n}" + BREAK.format(f"title{n}"),
            text="Plain words about it. " * 10 + BREAK.format("text"),
            source="Wire" + BREAK.format("source"),
            published=NOW - timedelta(hours=1),
        )
        for n in range(3)
    )
    return Issue(
        digest="weekly",
        period_key=key,
        title="The Weekly" + BREAK.format("issue"),
        created=NOW,
        sections=(Section("Section" + BREAK.format("label"), articles),),
        intro="Hello" + BREAK.format("intro"),
        subject="Week 10" + BREAK.format("subject"),
    )


@pytest.fixture
def hostile(tmp_path: Path) -> tuple[Settings, Store]:
    """Settings with a hostile list title and publication name; two readers on the list."""
    path = tmp_path / "digest.toml"
    path.write_text(CONFIG, encoding="utf-8")
    loaded = parse_settings(CONFIG, path, {"DIGEST_SECRET_KEY": "header-test-secret"})
    settings = unchecked(loaded)
    store = Store.open(settings.database_url)
    with store.transaction() as connection:
        service.ensure_list(connection, "weekly", title="The Weekly" + BREAK, now=NOW)
        for address in ("ann@example.org", "bob@example.org"):
            service.add_subscriber(
                connection,
                address,
                list_name="weekly",
                name="Ann" + BREAK.format("name"),
                consent="signed up at a fair",
                now=NOW,
            )
    return settings, store


async def send(settings: Settings, store: Store, key: str, backend: MailBackend) -> None:
    issue = hostile_issue(key)
    store.save_articles([a for section in issue.sections for a in section.articles], now=NOW)
    issue, _created = store.save_issue(issue)
    assert issue.id is not None
    report = await send_issue(settings, store, issue.id, backend, clock=lambda: NOW)
    assert (report.sent, report.failed, report.unknown) == (2, 0, 0)


async def test_hostile_text_adds_no_header_to_an_email_built_by_the_email_package(
    hostile: tuple[Settings, Store], tmp_path: Path
) -> None:
    """Attack: a feed titles an article "Story\\r\\nBcc: x@evil.example" (and the source, the
    text, the section label, the intro, the editor's subject, the list title and the
    publication name carry the same), hoping to add a recipient or a header to every copy.
    Through the file backend, each message has exactly the headers we write, on one line."""
    settings, store = hostile
    await send(settings, store, "file", backend_from_url(f"file://{tmp_path / 'sent'}"))
    files = sorted((tmp_path / "sent").glob("*.eml"))
    assert len(files) == 2
    for path in files:
        message = assert_only_our_headers(path.read_bytes(), ISSUE_HEADERS)
        assert message["Subject"].startswith("Week 10 Bcc: subject@evil.example")
        assert message["List-Id"].startswith("The Weekly Bcc: list@evil.example")
    store.engine.dispose()


async def test_hostile_text_adds_no_header_to_an_email_sent_over_smtp(
    hostile: tuple[Settings, Store], smtp_server: SmtpServer
) -> None:
    """Attack: the same, through the SMTP backend, whose fast encoder writes header bytes
    itself rather than through the email package."""
    settings, store = hostile
    url = f"smtp://{smtp_server.host}:{smtp_server.port}"
    await send(settings, store, "smtp", backend_from_url(url))
    received = smtp_server.sink.received
    assert sorted(r.rcpt_tos[0] for r in received) == ["ann@example.org", "bob@example.org"]
    for copy in received:
        assert_only_our_headers(copy.data, ISSUE_HEADERS)
    store.engine.dispose()


async def test_hostile_text_adds_no_header_to_a_sendgrid_request(
    hostile: tuple[Settings, Store],
) -> None:
    """Attack: the same, through SendGrid: the subject, the From name and every header value
    in the JSON payload are single lines of visible characters (SendGrid would write them
    into the message as given), and the request is accepted, not refused for a bad header."""
    settings, store = hostile
    with FakeSendGrid(KEY) as fake:
        await send(settings, store, "sendgrid", SendGridBackend(api_key=KEY, host=fake.url))
        assert [r.status for r in fake.requests] == [202]
        assert len(fake.deliveries) == 2
        for delivery in fake.deliveries:
            assert set(delivery.headers) == SENDGRID_HEADERS
            values = [delivery.subject, *delivery.sender.values(), *delivery.headers.values()]
            assert not any(has_control(value) for value in values), values
            assert delivery.reply_to is None
    store.engine.dispose()


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("sender", "Example News\r\nBcc: sender@evil.example <news@example.org>"),
        ("sender", "Example\x00News <news@example.org>"),
    ],
)
def test_a_from_name_with_a_line_break_stops_the_send_before_any_message(
    tmp_path: Path, setting: str, value: str
) -> None:
    """Attack: a From name with CR LF (or another control), past the loader (which refuses
    it in digest.toml). Read as an address,
    "Name\\r\\nBcc: x@evil.example <me@example.org>" gives x@evil.example, so the send must
    not start: one line naming mail.sender, before any message is built."""
    path = tmp_path / "digest.toml"
    path.write_text(CONFIG, encoding="utf-8")
    loaded = parse_settings(CONFIG, path, {"DIGEST_SECRET_KEY": "header-test-secret"})
    settings = unchecked(loaded, **{setting: value})
    issue = Issue("weekly", "k", "The Weekly", NOW, hostile_issue("k").sections, id=1)
    with pytest.raises(DeliveryError, match="mail.sender") as raised:
        MessageFactory(settings, issue)
    assert "\n" not in str(raised.value)


def test_a_base_url_with_a_line_break_builds_no_message(tmp_path: Path) -> None:
    """Attack: a base URL "https://site\\r\\nBcc: x@evil.example", past the loader (which
    refuses it in DIGEST_BASE_URL and digest.toml): every reader's
    List-Unsubscribe would carry the break. No message is built; the error is one line."""
    path = tmp_path / "digest.toml"
    path.write_text(CONFIG, encoding="utf-8")
    loaded = parse_settings(CONFIG, path, {"DIGEST_SECRET_KEY": "header-test-secret"})
    settings = unchecked(loaded, base_url="https://news.example.org\r\nBcc: base@evil.example")
    issue = Issue("weekly", "k", "The Weekly", NOW, hostile_issue("k").sections, id=1)
    row = OutboxRow(1, 1, 42, "ann@example.org", (), "sending", 1)
    with pytest.raises(DeliveryError, match="unsubscribe link") as raised:
        MessageFactory(settings, issue)(row)
    assert "\n" not in str(raised.value)


def test_a_hostile_name_on_the_subscribe_form_adds_no_header_to_the_notices(site: Site) -> None:
    """Attack: subscribe with a name holding CR LF and controls, so the confirmation (and,
    after confirming, the welcome) email carries an extra header or recipient."""
    name = "Mallory" + BREAK.format("name")
    answer = post_subscribe(site.client, "mallory@example.org", name=name, topic=["Science"])
    assert answer.status_code == 200
    [confirm] = take_mail(site.outbox)
    notice_headers = ISSUE_HEADERS - {"List-Id", "List-Unsubscribe", "List-Unsubscribe-Post"}
    assert_only_our_headers(confirm.as_bytes(), notice_headers)
    assert confirm["To"] == "mallory@example.org"
    link = link_path(confirm, "confirm")
    page = site.client.get(link)
    assert site.client.post(link, data={"csrf_token": csrf_token(page.text)}).status_code == 200
    [welcome] = take_mail(site.outbox)
    assert_only_our_headers(welcome.as_bytes(), ISSUE_HEADERS)
    assert welcome["To"] == "mallory@example.org"
