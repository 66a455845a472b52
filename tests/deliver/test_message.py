"""One subscriber's email: the headers receivers require and the MIME form, parsed back."""

from __future__ import annotations

import email
import re
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import default as default_policy
from email.utils import parsedate_to_datetime

import pytest

from digest.deliver.message import (
    list_id,
    message_id,
    sender_domain,
    to_email_message,
    unsubscribe_headers,
    unsubscribe_mailto,
)
from digest.errors import DeliveryError
from digest.models import OutgoingMessage

DATE = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)
SENDER = "Weekly News <digest@news.example.org>"
# Long enough that folding at 78 columns would have to break (and so encode) it.
TOKEN = "eyJzIjo0MiwibCI6IndlZWtseSJ9.Z8VkQA.q3Wm2v1Kx8bH0pYt7cRr9eLsNfUuJdAi"
UNSUBSCRIBE_URL = f"https://news.example.org/u/{TOKEN}"


def outgoing(**changes: object) -> OutgoingMessage:
    headers = {
        "Message-ID": message_id("news.example.org", 7, 42),
        "List-Id": list_id("Weekly News", "weekly", "news.example.org"),
        **unsubscribe_headers(UNSUBSCRIBE_URL, unsubscribe_mailto(SENDER, TOKEN)),
    }
    values: dict[str, object] = {
        "delivery_id": "42",
        "to": "reader@example.com",
        "sender": SENDER,
        "subject": "Week 10: rain, rents and a new bridge",
        "html": "<html><body><h1>Week 10</h1><p>Rain again.</p></body></html>",
        "text": "Week 10\n\nRain again.\n",
        "headers": headers,
        **changes,
    }
    return OutgoingMessage(**values)  # type: ignore[arg-type]


def parsed(message: OutgoingMessage) -> tuple[EmailMessage, bytes]:
    raw = to_email_message(message, date=DATE).as_bytes()
    return email.message_from_bytes(raw, policy=default_policy), raw  # type: ignore[return-value]


def header_lines(raw: bytes) -> list[str]:
    """The top-level header block, one entry per physical line."""
    return raw.split(b"\n\n", 1)[0].decode("ascii").split("\n")


def test_message_carries_the_headers_receivers_require() -> None:
    message, _raw = parsed(outgoing())

    assert message["From"] == SENDER
    assert message["To"] == "reader@example.com"
    assert message["Subject"] == "Week 10: rain, rents and a new bridge"
    assert parsedate_to_datetime(message["Date"]) == DATE
    assert message["Message-ID"] == "<digest.7.42@news.example.org>"
    assert message["List-Id"] == "Weekly News <weekly.news.example.org>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_list_unsubscribe_has_one_https_url_and_a_mailto() -> None:
    message, _raw = parsed(outgoing())

    targets = re.findall(r"<([^>]*)>", message["List-Unsubscribe"])
    assert targets == [
        UNSUBSCRIBE_URL,
        f"mailto:digest+unsubscribe-{TOKEN}@news.example.org?subject=unsubscribe",
    ]
    assert sum(t.startswith(("https:", "http:")) for t in targets) == 1


def test_a_long_list_unsubscribe_is_neither_folded_nor_encoded() -> None:
    long_url = f"https://news.example.org/u/{TOKEN * 3}"
    headers = {**outgoing().headers, **unsubscribe_headers(long_url, "digest@news.example.org")}
    _message, raw = parsed(outgoing(headers=headers))

    (line,) = [h for h in header_lines(raw) if h.startswith("List-Unsubscribe:")]
    assert len(line) > 200
    assert line == (
        f"List-Unsubscribe: <{long_url}>, <mailto:digest@news.example.org?subject=unsubscribe>"
    )
    assert "=?" not in raw.decode("ascii")


def test_body_is_plain_text_then_html_alternatives() -> None:
    message, _raw = parsed(outgoing())

    assert message.get_content_type() == "multipart/alternative"
    parts = list(message.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert parts[0].get_content() == "Week 10\n\nRain again.\n"
    assert parts[1].get_content() == (
        "<html><body><h1>Week 10</h1><p>Rain again.</p></body></html>\n"
    )
    assert message.get_body(("html", "plain")) is parts[1]


def test_mime_version_is_declared_once_on_the_message_only() -> None:
    # RFC 2045 §4: the top-level header; a repeat inside a body part looks hand-made to filters.
    message, raw = parsed(outgoing())

    assert message["MIME-Version"] == "1.0"
    assert [p["MIME-Version"] for p in message.iter_parts()] == [None, None]
    assert raw.count(b"MIME-Version:") == 1


def test_long_body_lines_are_wrapped_within_the_quoted_printable_limit() -> None:
    # Rendered HTML often comes as one very long line; RFC 2045 caps encoded lines at 76.
    html = "<table>" + "<tr><td>Ünïcödé cell ✓</td></tr>" * 200 + "</table>"
    text = "word " * 400
    message, raw = parsed(outgoing(html=html, text=text))

    body = raw.split(b"\n\n", 1)[1]
    assert max(len(line) for line in body.split(b"\n")) <= 76
    plain, rich = message.iter_parts()
    assert plain.get_content() == text + "\n"
    assert rich.get_content() == html + "\n"


def test_non_ascii_subject_and_body_round_trip() -> None:
    subject = "Die Woche in Köln – Überblick über Mieten, Brücken und Regen ✓ 東京 " * 2
    message, raw = parsed(outgoing(subject=subject.strip(), text="Grüße aus Köln ✓\n"))

    assert message["Subject"] == subject.strip()
    assert next(message.iter_parts()).get_content() == "Grüße aus Köln ✓\n"
    raw.decode("ascii")  # the wire form is 7-bit clean


def test_a_reader_s_copy_of_an_issue_keeps_one_message_id_across_retries() -> None:
    assert message_id("news.example.org", 7, 42) == message_id("news.example.org", 7, 42)
    assert message_id("news.example.org", 7, 42) == "<digest.7.42@news.example.org>"
    others = {message_id("news.example.org", i, s) for i in (7, 8) for s in (42, 43)}
    assert len(others) == 4


@pytest.mark.parametrize(
    ("sender", "domain"),
    [
        ("Weekly News <digest@News.Example.org>", "news.example.org"),
        ("digest@example.org", "example.org"),
        ('"Smith, Jo" <jo@mail.example.org>', "mail.example.org"),
    ],
)
def test_sender_domain_is_the_lowercased_domain(sender: str, domain: str) -> None:
    assert sender_domain(sender) == domain


@pytest.mark.parametrize("sender", ["", "nobody", "digest@", "@example.org", "Name <>"])
def test_sender_domain_refuses_a_sender_that_is_not_an_address(sender: str) -> None:
    with pytest.raises(DeliveryError, match="is not an address") as raised:
        sender_domain(sender)
    assert "\n" not in str(raised.value)


def test_list_id_is_a_phrase_and_a_dot_atom_under_our_domain() -> None:
    assert list_id('The "Best" <News>', "weekly", "example.org") == (
        "The Best News <weekly.example.org>"
    )


@pytest.mark.parametrize("to", ["not an address", "reader@exa mple.org", "reader@", "a@b@c"])
def test_a_recipient_that_is_not_an_address_is_a_delivery_error(to: str) -> None:
    with pytest.raises(DeliveryError, match="message 42") as raised:
        to_email_message(outgoing(to=to), date=DATE)
    assert "\n" not in str(raised.value)


def test_a_header_cannot_smuggle_in_another_header() -> None:
    headers = {**outgoing().headers, "Reply-To": "editor@example.org\r\nBcc: everyone@example.org"}
    with pytest.raises(DeliveryError):
        to_email_message(outgoing(headers=headers), date=DATE)
