"""Signed link tokens: unsubscribe, confirm and preferences links; URL-safe and unforgeable.

Unsubscribe tokens are short and valid for ever. One reads `<subscriber id>.<list>.<sig>`,
e.g. `42.weekly.NpKQsx-KuGNpeeCVJJnESw`. It is short on purpose: SendGrid's SMTP relay mangles
`List-Unsubscribe` values longer than 77 bytes, so `http://127.0.0.1:8000/u/<token>` must fit
in 76 for ids below a million and list names up to 12 characters. Tokens never expire: an
unsubscribe link in a years-old email must still work. The id and list name are readable, not
secret; only forging is prevented. Subscriber ids are never reused (see subscribers.tables),
so an erased person's old link cannot reach a newcomer.

Confirm and preferences tokens also carry the address (base64url) and are checked against
it, so a token for one address never acts on another: `<id>.<list>.<address>[.<time>].<sig>`.
Confirm tokens expire (48 hours by default); preferences tokens do not. Each kind is signed
with its own salt, so one kind never passes for another.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import re
from datetime import datetime, timedelta
from typing import Any

from itsdangerous import BadSignature, Signer, TimestampSigner
from itsdangerous.signer import HMACAlgorithm

from subscribers.checks import utc
from subscribers.errors import InvalidToken

__all__ = [
    "CONFIRM_MAX_AGE",
    "InvalidToken",
    "make_confirm_token",
    "make_preferences_token",
    "make_unsubscribe_token",
    "read_confirm_token",
    "read_preferences_token",
    "read_unsubscribe_token",
]

CONFIRM_MAX_AGE = timedelta(hours=48)
# A token stamped a little after `now` comes from a server whose clock runs slightly ahead.
_CLOCK_SKEW = timedelta(minutes=5)

# Separates the payload's own fields; the signer uses "." before the signature too and splits
# on the last one.
_SEP = "."
# List names made only of these go in as they are; others are base64url-encoded behind "~".
_PLAIN_LIST_NAME = re.compile(r"[A-Za-z0-9_-]+")
_ENCODED_MARK = "~"


class _ShortHMAC(HMACAlgorithm):
    """HMAC-SHA256 cut to 128 bits, as RFC 4868 does for IPsec: 22 characters instead of 43."""

    def __init__(self) -> None:
        super().__init__(hashlib.sha256)

    def get_signature(self, key: bytes, value: bytes) -> bytes:
        return super().get_signature(key, value)[:16]


def make_unsubscribe_token(secret: str, subscriber_id: int, list_name: str) -> str:
    """A token that lets whoever holds it unsubscribe this subscriber from this list."""
    return _signer(secret).sign(_base_payload(subscriber_id, list_name)).decode("ascii")


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


def make_confirm_token(
    secret: str, subscriber_id: int, list_name: str, email: str, *, now: datetime
) -> str:
    """A token that confirms this address's subscription to this list, for CONFIRM_MAX_AGE."""
    payload = _personal_payload(subscriber_id, list_name, email)
    return _StampedSigner(secret, at=now).sign(payload).decode("ascii")


def read_confirm_token(
    secret: str, token: str, *, now: datetime, max_age: timedelta = CONFIRM_MAX_AGE
) -> tuple[int, str, str]:
    """(subscriber id, list name, email) from a confirm token no older than `max_age`.

    InvalidToken if it was cut short, altered or has expired.
    """
    try:
        payload, stamped = _StampedSigner(secret).unsign(token.strip(), return_timestamp=True)
        fields = _read_personal_payload(payload.decode("utf-8"))
    except (BadSignature, ValueError, binascii.Error) as error:
        raise InvalidToken(
            "This confirmation link is not valid: it was cut short or altered."
        ) from error
    age = utc(now) - stamped
    if age > max_age:
        hours = round(max_age / timedelta(hours=1))
        raise InvalidToken(
            f"This confirmation link has expired (links work for {hours} hours): "
            "subscribe again to get a new one."
        )
    if age < -_CLOCK_SKEW:
        raise InvalidToken("This confirmation link is not valid: it is dated in the future.")
    return fields


def make_preferences_token(secret: str, subscriber_id: int, list_name: str, email: str) -> str:
    """A token that opens this address's preferences for this list; it never expires."""
    payload = _personal_payload(subscriber_id, list_name, email)
    return _signer(secret, salt="preferences").sign(payload).decode("ascii")


def read_preferences_token(secret: str, token: str) -> tuple[int, str, str]:
    """(subscriber id, list name, email) from a preferences token; InvalidToken if altered.

    The caller checks that `email` is still the person's address.
    """
    try:
        payload = _signer(secret, salt="preferences").unsign(token.strip())
        return _read_personal_payload(payload.decode("utf-8"))
    except (BadSignature, ValueError, binascii.Error) as error:
        raise InvalidToken(
            "This preferences link is not valid: it was cut short or altered."
        ) from error


class _StampedSigner(TimestampSigner):
    """A TimestampSigner stamping the caller's `now`, not the wall clock (no patching in tests)."""

    def __init__(self, secret: str, *, at: datetime | None = None) -> None:
        _require_secret(secret)
        super().__init__(
            secret, salt="confirm", digest_method=hashlib.sha256, algorithm=_ShortHMAC()
        )
        self._at = at

    def get_timestamp(self) -> int:
        if self._at is None:
            raise ValueError("a confirm token needs `now` to be stamped with")
        return int(utc(self._at).timestamp())


def _personal_payload(subscriber_id: int, list_name: str, email: str) -> str:
    if not email:
        raise ValueError("email must not be empty")
    return _SEP.join((_base_payload(subscriber_id, list_name), _encode_text(email)))


def _read_personal_payload(payload: str) -> tuple[int, str, str]:
    id_part, list_part, email_part = payload.split(_SEP)  # ValueError unless exactly three
    email = _decode_text(email_part)
    if not email:
        raise ValueError("empty email in token")
    return int(id_part), _decode_list_name(list_part), email


def _base_payload(subscriber_id: int, list_name: str) -> str:
    if isinstance(subscriber_id, bool) or subscriber_id < 0:
        raise ValueError(f"subscriber id must be a non-negative int, got {subscriber_id!r}")
    if not list_name:
        raise ValueError("list name must not be empty")
    return f"{subscriber_id}{_SEP}{_encode_list_name(list_name)}"


def _signer(secret: str, *, salt: str = "unsubscribe") -> Signer:
    _require_secret(secret)
    return _cached_signer(secret, salt)


@functools.lru_cache(maxsize=32)
def _cached_signer(secret: str, salt: str) -> Signer:
    # A send signs two tokens per reader: build each signer, and derive its key, once.
    return _KeyedSigner(secret, salt=salt, digest_method=hashlib.sha256, algorithm=_ShortHMAC())


class _KeyedSigner(Signer):
    """A Signer that derives its key, and keys its HMAC, once instead of on every signature."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._key = super().derive_key()
        self._keyed = hmac.new(self._key, digestmod=hashlib.sha256)

    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        return self._key if secret_key is None else super().derive_key(secret_key)

    def get_signature(self, value: str | bytes) -> bytes:
        # _ShortHMAC's signature, from a copy of the keyed HMAC.
        mac = self._keyed.copy()
        mac.update(value.encode("utf-8") if isinstance(value, str) else value)
        return base64.urlsafe_b64encode(mac.digest()[:16]).rstrip(b"=")


def _require_secret(secret: str) -> None:
    if not secret:
        raise ValueError("the token secret must not be empty")


def _encode_text(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode("utf-8")).decode("ascii").rstrip("=")


def _decode_text(encoded: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_-]*", encoded):
        raise ValueError("bad base64url in token")
    padded = encoded + "=" * (-len(encoded) % 4)
    return base64.urlsafe_b64decode(padded.encode("ascii")).decode("utf-8")


def _encode_list_name(name: str) -> str:
    if _PLAIN_LIST_NAME.fullmatch(name):
        return name
    return _ENCODED_MARK + _encode_text(name)


def _decode_list_name(part: str) -> str:
    if not part.startswith(_ENCODED_MARK):
        if not _PLAIN_LIST_NAME.fullmatch(part):
            raise ValueError(f"bad list name in token: {part!r}")
        return part
    return _decode_text(part.removeprefix(_ENCODED_MARK))
