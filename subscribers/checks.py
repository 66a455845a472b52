"""Input checks: each value the service stores, validated and put in its stored form."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from email_validator import EmailNotValidError, validate_email

from subscribers.errors import InvalidEmail, SubscriberError
from subscribers.models import Consent

# Column widths from subscribers.tables; checked here so a long value is a clear error, not a
# database error that aborts the caller's whole transaction on PostgreSQL.
MAX_LIST_NAME = 100
MAX_NAME = 200
MAX_SOURCE = 100
MAX_IP = 64
MAX_USER_AGENT = 500
# Attributes are small facts about a person, not a document store.
MAX_ATTRIBUTES_JSON = 10_000
# How often someone wants a list's issues: every issue, only the daily or weekly digest, none.
FREQUENCIES = ("each", "daily", "weekly", "paused")


def normalise_email(raw: str) -> str:
    """The stored form of an address: syntax-checked, IDN domain decoded, lower-cased.

    No DNS lookups. 'Ann@Example.ORG' and 'ann@example.org' give the same result, and so do
    'x@bücher.example' and 'x@xn--bcher-kva.example'.
    """
    candidate = raw.strip()
    try:
        checked = validate_email(candidate, check_deliverability=False)
    except EmailNotValidError as error:
        shown = one_line(candidate)
        shown = shown if len(shown) <= 100 else shown[:100] + "…"
        raise InvalidEmail(f"{shown!r}: {one_line(str(error))}") from error
    return checked.normalized.lower()


def require_consent(consent: str) -> str:
    """The consent note, stripped; every subscription must say how the person agreed."""
    note = consent.strip()
    if not note:
        raise SubscriberError("a consent note is required: say how and when the person agreed")
    return one_line(note)


def clean_consent(consent: Consent) -> Consent:
    """The consent record as stored: one-line fields, a source required, long values cut."""
    source = one_line(consent.source)
    if not source:
        raise SubscriberError("consent needs a source: the form or channel the person used")
    if len(source) > MAX_SOURCE:
        raise SubscriberError(f"consent source is longer than {MAX_SOURCE} characters")
    return Consent(
        source=source,
        wording=consent.wording.strip(),
        # The request's own headers; cut rather than refused, the person did nothing wrong.
        ip=one_line(consent.ip)[:MAX_IP],
        user_agent=one_line(consent.user_agent)[:MAX_USER_AGENT],
    )


def require_frequency(frequency: str) -> str:
    """A known frequency, or SubscriberError naming the choices."""
    if frequency not in FREQUENCIES:
        raise SubscriberError(
            f"unknown frequency {frequency!r}: choose one of {', '.join(FREQUENCIES)}"
        )
    return frequency


def clean_topics(topics: Sequence[str]) -> tuple[str, ...]:
    """Topic names stripped, blanks dropped, repeats removed, order kept."""
    if isinstance(topics, str):
        raise TypeError("topics must be a sequence of names, not one string")
    return tuple(dict.fromkeys(name.strip() for name in topics if name.strip()))


def clean_attributes(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON object of facts about a person; SubscriberError if it is not one or is too big."""
    if not isinstance(attributes, Mapping) or not all(isinstance(k, str) for k in attributes):
        raise SubscriberError("attributes must be a mapping with text keys")
    try:
        encoded = json.dumps(dict(attributes), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise SubscriberError(f"attributes are not JSON: {one_line(str(error))}") from error
    if len(encoded) > MAX_ATTRIBUTES_JSON:
        raise SubscriberError(f"attributes are longer than {MAX_ATTRIBUTES_JSON} characters")
    return dict(json.loads(encoded))


def utc(now: datetime) -> datetime:
    """`now` in UTC; SQLite keeps no offset, so everything is stored as UTC."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"now must be timezone-aware, got {now!r}")
    return now.astimezone(UTC)


def aware(stored: datetime) -> datetime:
    """A stored timestamp as aware UTC (SQLite hands them back naive)."""
    return stored if stored.tzinfo is not None else stored.replace(tzinfo=UTC)


def one_line(text: str) -> str:
    return " ".join(text.split())
