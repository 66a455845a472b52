"""Notices to one person (confirm, welcome, preferences-changed) over a real SMTP server."""

from __future__ import annotations

import email
import re
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

import pytest

from digest.config import parse_settings
from digest.deliver.smtp import SmtpBackend
from digest.errors import DeliveryError
from digest.notices import NoticeMailer, NoticeRecipient, send_confirmations
from subscribers.tokens import (
    InvalidToken,
    read_confirm_token,
    read_preferences_token,
    read_unsubscribe_token,
)
from tests.conftest import SmtpServer

pytestmark = pytest.mark.nodb  # the PostgreSQL pass skips it

NOW = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)
SECRET = "notice-test-secret"
CONFIG = """version = 1
name = "Valley News"
base_url = "https://news.example.org"
postal_address = "Valley News, 1 Mill Lane"
[mail]
sender = "Valley News <news@news.example.org>"
[[digests]]
name = "weekly"
title = "The Valley Weekly"
list = "valley"
locale = "{locale}"
[[digests.topics]]
name = "Science"
keywords = ["science"]
"""
ANN = NoticeRecipient(7, "ann@example.org", "valley", "Ann", ("Science",), "weekly")


def mailer(tmp_path: Path, server: SmtpServer, locale: str = "en") -> NoticeMailer:
    settings = parse_settings(
        CONFIG.format(locale=locale),
        tmp_path / "digest.toml",
        {"DIGEST_SECRET_KEY": SECRET, "DIGEST_MAIL_URL": f"smtp://{server.host}:{server.port}"},
    )
    return NoticeMailer(settings, SmtpBackend(host=server.host, port=server.port))


def received(server: SmtpServer) -> list[EmailMessage]:
    return [
        email.message_from_bytes(item.data, policy=default)  # type: ignore[misc]
        for item in server.sink.received
    ]


def body(message: EmailMessage, subtype: str) -> str:
    part = message.get_body(preferencelist=(subtype,))
    assert part is not None
    return part.get_content()


async def test_a_confirmation_arrives_with_a_link_that_confirms_only_that_address(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    await mailer(tmp_path, smtp_server).send_many("confirm", [ANN], now=NOW)
    (message,) = received(smtp_server)
    assert message["To"] == "ann@example.org"
    assert message["Subject"] == "Confirm your subscription to The Valley Weekly"
    assert "List-Unsubscribe" not in message  # not subscribed yet: nothing to leave
    text = body(message, "plain")
    link = re.search(r"https://news\.example\.org/confirm/(\S+)", text)
    assert link is not None and link.group(0) in body(message, "html")
    token = link.group(1)
    assert read_confirm_token(SECRET, token, now=NOW + timedelta(hours=47)) == (
        7,
        "valley",
        "ann@example.org",
    )
    with pytest.raises(InvalidToken, match="expired"):
        read_confirm_token(SECRET, token, now=NOW + timedelta(hours=49))
    assert "Hello Ann," in text and "Valley News, 1 Mill Lane" in text


async def test_welcome_carries_working_preferences_and_one_click_unsubscribe(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    await mailer(tmp_path, smtp_server).send(
        "welcome",
        subscriber_id=7,
        email="ann@example.org",
        name="",
        list_name="valley",
        topics=(),
        cadence="daily",
        now=NOW,
    )
    (message,) = received(smtp_server)
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    one_click = re.match(r"<https://news\.example\.org/u/([^>]+)>", message["List-Unsubscribe"])
    assert one_click is not None
    assert read_unsubscribe_token(SECRET, one_click.group(1)) == (7, "valley")
    text = body(message, "plain")
    preferences = re.search(r"https://news\.example\.org/p/(\S+)", text)
    assert preferences is not None
    assert read_preferences_token(SECRET, preferences.group(1)) == (7, "valley", "ann@example.org")
    assert "Hello there," in text and "once a day, with every topic" in text


async def test_notices_speak_the_list_s_language(tmp_path: Path, smtp_server: SmtpServer) -> None:
    await mailer(tmp_path, smtp_server, locale="de").send_many("confirm", [ANN], now=NOW)
    (message,) = received(smtp_server)
    assert message["Subject"] != "Confirm your subscription to The Valley Weekly"
    assert "The Valley Weekly" in message["Subject"]
    assert 'lang="de"' in body(message, "html")


async def test_a_refused_address_is_named_in_the_error(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    refused = NoticeRecipient(8, "reject@example.org", "valley")
    with pytest.raises(DeliveryError, match="reject@example.org"):
        await mailer(tmp_path, smtp_server).send_many("confirm", [ANN, refused], now=NOW)


def test_send_confirmations_uses_the_configured_backend(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    settings = mailer(tmp_path, smtp_server).settings
    people = [NoticeRecipient(n, f"reader{n}@example.org", "valley") for n in range(1, 131)]
    assert send_confirmations(settings, people, now=NOW) == 130
    assert len(smtp_server.sink.received) == 130  # two batches of SEND_BATCH and the rest
    assert send_confirmations(settings, [], now=NOW) == 0
