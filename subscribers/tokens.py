"""Signed unsubscribe tokens: short, URL-safe, and valid for ever.

A token reads `<subscriber id>.<list>.<signature>`, e.g. `42.weekly.NpKQsx-KuGNpeeCVJJnESw`.
It is short on purpose: SendGrid's SMTP relay mangles `List-Unsubscribe` values longer than
77 bytes, so `http://127.0.0.1:8000/u/<token>` must fit in 76 for ids below a million and list
names up to 12 characters. Tokens never expire: an unsubscribe link in a years-old email
must still work. The id and list name are readable, not secret; only forging is prevented.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

from itsdangerous import BadSignature, Signer
from itsdangerous.signer import HMACAlgorithm

from subscribers.service import SubscriberError

# Separates the payload's own fields; the signer uses "." before the signature too and splits
# on the last one.
_SEP = "."
# List names made only of these go in as they are; others are base64url-encoded behind "~".
_PLAIN_LIST_NAME = re.compile(r"[A-Za-z0-9_-]+")
_ENCODED_MARK = "~"


class InvalidToken(SubscriberError):
    pass


class _ShortHMAC(HMACAlgorithm):
    """HMAC-SHA256 cut to 128 bits, as RFC 4868 does for IPsec: 22 characters instead of 43."""

    def __init__(self) -> None:
        super().__init__(hashlib.sha256)

    def get_signature(self, key: bytes, value: bytes) -> bytes:
        return super().get_signature(key, value)[:16]


def make_unsubscribe_token(secret: str, subscriber_id: int, list_name: str) -> str:
    """A token that lets whoever holds it unsubscribe this subscriber from this list."""
    if isinstance(subscriber_id, bool) or subscriber_id < 0:
        raise ValueError(f"subscriber id must be a non-negative int, got {subscriber_id!r}")
    if not list_name:
        raise ValueError("list name must not be empty")
    payload = f"{subscriber_id}{_SEP}{_encode_list_name(list_name)}"
    return _signer(secret).sign(payload).decode("ascii")


def read_unsubscribe_token(secret: str, token: str) -> tuple[int, str]:
    """(subscriber id, list name) from a token; InvalidToken if it was cut short or altered."""
    try:
        payload = _signer(secret).unsign(token.strip()).decode("utf-8")
        id_part, _, list_part = payload.partition(_SEP)
        return int(id_part), _decode_list_name(list_part)
    except (BadSignature, ValueError, binascii.Error) as error:
        # UnicodeDecodeError is a ValueError.
        raise InvalidToken(
            "This unsubscribe link is not valid: it was cut short or altered."
        ) from error


def _signer(secret: str) -> Signer:
    if not secret:
        raise ValueError("the token secret must not be empty")
    return Signer(secret, salt="unsubscribe", digest_method=hashlib.sha256, algorithm=_ShortHMAC())


def _encode_list_name(name: str) -> str:
    if _PLAIN_LIST_NAME.fullmatch(name):
        return name
    encoded = base64.urlsafe_b64encode(name.encode("utf-8")).decode("ascii").rstrip("=")
    return _ENCODED_MARK + encoded


def _decode_list_name(part: str) -> str:
    if not part.startswith(_ENCODED_MARK):
        if not _PLAIN_LIST_NAME.fullmatch(part):
            raise ValueError(f"bad list name in token: {part!r}")
        return part
    encoded = part.removeprefix(_ENCODED_MARK)
    padded = encoded + "=" * (-len(encoded) % 4)
    return base64.urlsafe_b64decode(padded.encode("ascii")).decode("utf-8")
