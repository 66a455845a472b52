"""One subscriber's email: headers that receivers and RFCs require, and its MIME form."""

from __future__ import annotations

import functools
import re
from datetime import datetime
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage, MIMEPart
from email.policy import EmailPolicy
from email.utils import format_datetime, parseaddr

from digest.errors import DeliveryError
from digest.models import OutgoingMessage

# A CR or LF in a header value starts another header; other controls have no place there.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def sender_domain(sender: str) -> str:
    """'Demo <digest@demo.example.org>' → 'demo.example.org'."""
    _name, address = parseaddr(sender)
    local, _at, domain = address.rpartition("@")
    # A control character would let the configured From smuggle in another header, and
    # parseaddr reads "News\r\nBcc: x@evil.example <me@example.org>" as x@evil.example.
    if not local or not domain or " " in address or _CONTROL.search(sender):
        raise DeliveryError(
            f"mail.sender {sender!r} is not an address like 'Name <me@example.org>'"
        )
    return domain.lower()


def list_id(title: str, digest: str, domain: str) -> str:
    """RFC 2919: a phrase plus a dot-atom under our own domain."""
    phrase = title.replace("<", "").replace(">", "").replace('"', "")
    return f"{' '.join(_CONTROL.sub(' ', phrase).split())} <{digest}.{domain}>"


def message_id(domain: str, issue_id: int, subscriber_id: int) -> str:
    """The same for every attempt at one reader's copy of one issue, so a retried message is
    recognisably the same message (receivers drop the second copy of a Message-ID)."""
    return f"<digest.{issue_id}.{subscriber_id}@{domain}>"


def unsubscribe_headers(https_url: str, mailto: str) -> dict[str, str]:
    """RFC 2369 + RFC 8058 one-click: exactly one https URL, plus a mailto fallback.

    DeliveryError when either holds white space or a control (a base URL set wrongly): sent
    as it is, it could end the header and start another.
    """
    for link in (https_url, mailto):
        if _CONTROL.search(link) or " " in link:
            raise DeliveryError(f"unsubscribe link {link!r} holds white space or a control")
    return {
        "List-Unsubscribe": f"<{https_url}>, <mailto:{mailto}?subject=unsubscribe>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }


def unsubscribe_mailto(sender: str, token: str) -> str:
    local, domain = _sender_parts(sender)
    return f"{local}+unsubscribe-{token}@{domain}"


@functools.lru_cache(maxsize=64)
def _sender_parts(sender: str) -> tuple[str, str]:
    # Parsed once per sender, not once per reader (parseaddr costs ~60 µs).
    _name, address = parseaddr(sender)
    local, domain = address.rsplit("@", 1)
    return local, domain


class _MessagePolicy(EmailPolicy):
    """Bodies wrapped at 76 columns, RFC 2045's limit for quoted-printable; headers unfolded.

    Python's folding at 78 columns RFC 2047-encodes a long List-Unsubscribe, which breaks
    it for receivers, and drops the space between encoded words when it folds a non-ASCII
    Subject. RFC 5322 allows header lines up to 998 characters.
    """

    def fold(self, name: str, value: str) -> str:
        return EmailPolicy.fold(self.clone(max_line_length=998), name, value)

    def fold_binary(self, name: str, value: str) -> bytes:
        return EmailPolicy.fold_binary(self.clone(max_line_length=998), name, value)


MESSAGE_POLICY = _MessagePolicy(max_line_length=76)
# SMTP wants CRLF line ends; the rest is the message's own policy.
WIRE_POLICY = MESSAGE_POLICY.clone(linesep="\r\n")


def to_email_message(message: OutgoingMessage, *, date: datetime) -> EmailMessage:
    """multipart/alternative: text/plain first, text/html last (the preferred part).

    Raises DeliveryError when the recipient or a header cannot be put into a message.
    """
    email = EmailMessage(policy=MESSAGE_POLICY)
    try:
        email["From"] = message.sender
        email["To"] = Address(addr_spec=message.to)
        email["Subject"] = message.subject
        email["Date"] = format_datetime(date)
        for name, value in message.headers.items():
            email[name] = value
    except (ValueError, IndexError, HeaderParseError) as error:
        raise DeliveryError(
            f"message {message.delivery_id} to {message.to!r}: {error}".splitlines()[0]
        ) from error
    email["MIME-Version"] = "1.0"
    email.make_alternative()
    email.attach(_body_part(message.text, "plain"))
    email.attach(_body_part(message.html, "html"))
    return email


def _body_part(content: str, subtype: str) -> MIMEPart:
    # A MIMEPart, not an EmailMessage: MIME-Version belongs on the message only (RFC 2045 §4),
    # and add_alternative() would repeat it on the html part.
    part = MIMEPart(policy=MESSAGE_POLICY)
    part.set_content(content, subtype=subtype, charset="utf-8", cte="quoted-printable")
    return part
