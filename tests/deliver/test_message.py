"""One subscriber's email: the headers receivers require and the MIME form, parsed back."""

from __future__ import annotations

import email
import quopri
import random
import re
from dataclasses import replace
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import default as default_policy
from email.utils import parsedate_to_datetime

import pytest

from digest.deliver.message import (
    WIRE_POLICY,
    list_id,
    message_id,
    sender_domain,
    to_email_message,
    unsubscribe_headers,
    unsubscribe_mailto,
)
from digest.deliver.mime import FastEncoder, quoted_printable
from digest.errors import DeliveryError
from digest.models import OutgoingMessage, SharedBody
from digest.render.markers import escape_html, keep_text, marker, split_markers

pytestmark = pytest.mark.nodb  # the PostgreSQL pass skips it

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


# --- the fast encoder: the same message, parsed back, as the email package builds ----------

NONCE = "0123456789abcdef"
PIECES = [
    "Week 10",
    "Rain again.",
    "Ünïcödé cell ✓",
    "مرحبا بالعالم، هذا ملخص الأسبوع",
    "emoji 🎉🚀 and 東京",
    "a=b&c=d ==",
    "x" * 90,
    "word " * 30,
    "trailing space ",
    "tab\tend\t",
    ".",
    "",
    "From the desk",
    "=_",
    '<p style="color:#333">' + "ab" * 50 + "</p>",
]
VALUES = [
    "",
    " ",
    "Ann",
    'Zoë & "Bob" <b>',
    "سارة",
    "👩‍💻 dev",
    "https://news.example.org/u/" + TOKEN + "?a=1&b=2",
    "=" * 80,
]


FIELDS = ("name", "email", "unsubscribe_url", "preferences_url")


def random_variant(rng: random.Random, number: int) -> tuple[SharedBody, str]:
    """A variant's body with random chunks, markers and line breaks, and its subject."""

    def body(nonce: str, newline: str) -> str:
        out: list[str] = []
        for _ in range(rng.randint(0, 14)):
            choice = rng.random()
            if choice < 0.3:
                default = rng.choice(["", "there", "Lieber Leser ✓", "a=b"])
                out.append(marker(nonce, rng.choice(FIELDS), default))
            elif choice < 0.5:
                out.append(newline)
            else:
                out.append(rng.choice(PIECES))
        return "".join(out)

    nonce = f"{number:016x}"
    shared = SharedBody(nonce, body(nonce, "\n"), body(nonce, rng.choice(["\n", "\r\n", "\r"])))
    subject = rng.choice(["Week 10: rain", "Die Woche in Köln – Überblick ✓ " * 3, "عاجل 🎉"])
    return shared, subject


def shared_message(
    rng: random.Random, delivery: int, variant: tuple[SharedBody, str]
) -> OutgoingMessage:
    """One reader's message of `variant`, with random personal values."""
    shared, subject = variant
    values = {field: rng.choice(VALUES) for field in FIELDS}
    values["email"] = f"reader{delivery}@example.com"
    return outgoing(
        delivery_id=str(delivery),
        to=values["email"],
        subject=subject,
        html=split_markers(shared.html, shared.nonce).fill(values, escape_html),
        text=split_markers(shared.text, shared.nonce).fill(values, keep_text),
        shared=shared,
        personal=values,
    )


def comparable(raw: bytes) -> tuple[list[tuple[str, str]], list[tuple[str, str, str]]]:
    """Headers (Content-Type without its boundary) and each part's type, encoding and text."""
    message = email.message_from_bytes(raw, policy=default_policy)
    headers = [(name, str(value)) for name, value in message.items() if name != "Content-Type"]
    headers.append(("Content-Type", message.get_content_type()))
    parts = [
        (p.get_content_type(), str(p["Content-Transfer-Encoding"]), p.get_content())
        for p in message.iter_parts()  # type: ignore[attr-defined]
    ]
    return headers, parts


def test_the_fast_encoder_gives_the_same_message_as_the_email_package() -> None:
    rng = random.Random(7)
    variants = [random_variant(rng, number) for number in range(40)]
    encoder = FastEncoder()
    fast_count = 0
    for delivery in range(400):
        message = shared_message(rng, delivery, rng.choice(variants))
        slow = to_email_message(message, date=DATE).as_bytes(policy=WIRE_POLICY)
        fast = encoder.encode(message, date=DATE)
        if fast is None:
            continue
        fast_count += 1
        fast.decode("ascii")  # 7-bit clean
        assert comparable(fast) == comparable(slow), delivery
        body = fast.split(b"\r\n\r\n", 1)[1]
        assert max(len(line) for line in body.split(b"\r\n")) <= 76
        # Receivers strip white space at the end of a line: it must be encoded there.
        assert not re.search(rb"[ \t]\r\n", body)
    # Only the odd variant (a lone "\r" right before a marker) goes the slow way.
    assert fast_count > 300


def test_a_message_without_a_shared_body_or_with_an_odd_address_takes_the_slow_path() -> None:
    encoder = FastEncoder()
    rng = random.Random(1)
    message = shared_message(rng, 1, random_variant(rng, 1))
    assert encoder.encode(message, date=DATE) is not None
    assert encoder.encode(outgoing(), date=DATE) is None
    assert encoder.encode(replace(message, to="zoë@example.com"), date=DATE) is None
    assert encoder.encode(replace(message, to='"a b"@example.com'), date=DATE) is None
    smuggled = {**message.headers, "Reply-To": "editor@example.org\r\nBcc: all@example.org"}
    assert encoder.encode(replace(message, headers=smuggled), date=DATE) is None
    repeated = {**message.headers, "subject": "Another subject"}
    assert encoder.encode(replace(message, headers=repeated), date=DATE) is None


def test_quoted_printable_chunks_concatenate_and_stay_within_76_columns() -> None:
    pieces = ["a" * 75, "b=", "", " \n", "ü" * 40 + "\n\n", "end "]
    joined = b"".join(quoted_printable(piece) for piece in pieces)
    assert max(len(line) for line in joined.split(b"\r\n")) <= 76
    assert not re.search(rb"[ \t]\r\n", joined)
    decoded = quopri.decodestring(joined.replace(b"\r\n", b"\n")).decode("utf-8")
    assert decoded == "".join(pieces)
    assert b"=_" not in joined


def test_a_message_needs_its_body_or_a_shared_one() -> None:
    with pytest.raises(ValueError, match="message 7: give html and text, or a shared body"):
        OutgoingMessage(delivery_id="7", to="a@example.org", sender=SENDER, subject="Hi")


def test_a_shared_message_is_personalised_when_read_and_after_replace() -> None:
    nonce = "00112233aabbccdd"
    shared = SharedBody(nonce, f"<p>{marker(nonce, 'email')}</p>", f"{marker(nonce, 'email')}\n")
    message = OutgoingMessage(
        delivery_id="1",
        to="a@example.org",
        sender=SENDER,
        subject="Hi",
        shared=shared,
        personal={"email": "a&b@example.org"},
    )
    assert (message.html, message.text) == ("<p>a&amp;b@example.org</p>", "a&b@example.org\n")
    other = replace(message, personal={"email": "c@example.org"})
    assert (other.html, other.text) == ("<p>c@example.org</p>", "c@example.org\n")
