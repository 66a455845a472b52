"""One subscriber's email: headers that receivers and RFCs require, and its MIME form."""

from __future__ import annotations

import secrets
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import default as default_policy
from email.utils import format_datetime, parseaddr

from digest.errors import DeliveryError
from digest.models import OutgoingMessage


def sender_domain(sender: str) -> str:
    """'Demo <digest@demo.example.org>' → 'demo.example.org'."""
    _name, address = parseaddr(sender)
    if "@" not in address:
        raise DeliveryError(
            f"mail.sender {sender!r} is not an address like 'Name <me@example.org>'"
        )
    return address.rsplit("@", 1)[1].lower()


def list_id(title: str, digest: str, domain: str) -> str:
    """RFC 2919: a phrase plus a dot-atom under our own domain."""
    phrase = title.replace("<", "").replace(">", "").replace('"', "")
    return f"{phrase} <{digest}.{domain}>"


def message_id(domain: str, issue_id: int, delivery_id: str) -> str:
    # The random part keeps ids unique even if an outbox row is ever re-sent on purpose.
    return f"<digest.{issue_id}.{delivery_id}.{secrets.token_hex(6)}@{domain}>"


def unsubscribe_headers(https_url: str, mailto: str) -> dict[str, str]:
    """RFC 2369 + RFC 8058 one-click: exactly one https URL, plus a mailto fallback."""
    return {
        "List-Unsubscribe": f"<{https_url}>, <mailto:{mailto}?subject=unsubscribe>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }


def unsubscribe_mailto(sender: str, token: str) -> str:
    _name, address = parseaddr(sender)
    local, domain = address.rsplit("@", 1)
    return f"{local}+unsubscribe-{token}@{domain}"


# Folding at 78 columns makes Python RFC 2047-encode a long List-Unsubscribe, which breaks
# it for receivers; RFC 5322 allows lines up to 998 characters.
MESSAGE_POLICY = default_policy.clone(max_line_length=998)


def to_email_message(message: OutgoingMessage, *, date: datetime) -> EmailMessage:
    """multipart/alternative: text/plain first, text/html last (the preferred part)."""
    email = EmailMessage(policy=MESSAGE_POLICY)
    email["From"] = message.sender
    email["To"] = Address(addr_spec=message.to)
    email["Subject"] = message.subject
    email["Date"] = format_datetime(date)
    for name, value in message.headers.items():
        email[name] = value
    email.set_content(message.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    email.add_alternative(message.html, subtype="html", charset="utf-8", cte="quoted-printable")
    return email
