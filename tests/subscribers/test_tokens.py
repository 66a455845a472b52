"""Tests for subscribers/tokens.py."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from subscribers.service import SubscriberError
from subscribers.tokens import InvalidToken, make_unsubscribe_token, read_unsubscribe_token

SECRET = "test-secret-key"
# SendGrid's SMTP relay RFC 2047-encodes List-Unsubscribe values longer than this.
HEADER_LIMIT = 77
BASE = "http://127.0.0.1:8000/u/"


@given(subscriber_id=st.integers(min_value=0, max_value=10**12), list_name=st.text(min_size=1))
def test_tokens_round_trip_and_are_url_safe(subscriber_id: int, list_name: str) -> None:
    token = make_unsubscribe_token(SECRET, subscriber_id, list_name)

    assert read_unsubscribe_token(SECRET, token) == (subscriber_id, list_name)
    assert quote(token, safe="") == token


@given(
    subscriber_id=st.integers(min_value=0, max_value=10**6 - 1),
    list_name=st.from_regex(r"[a-z0-9][a-z0-9_-]{0,11}", fullmatch=True),
)
def test_unsubscribe_url_stays_under_the_relay_limit(subscriber_id: int, list_name: str) -> None:
    url = BASE + make_unsubscribe_token(SECRET, subscriber_id, list_name)

    assert len(url.encode("ascii")) < HEADER_LIMIT


def test_longest_expected_url_fits() -> None:
    url = BASE + make_unsubscribe_token(SECRET, 999_999, "weekly-tech1")
    assert len(url) < HEADER_LIMIT, url


def tampered_tokens(token: str) -> list[str]:
    payload, signature = token.rsplit(".", 1)
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    return [
        f"{payload}.{flipped}",  # altered signature
        token.replace("42.", "43.", 1),  # someone else's id
        token.replace(".weekly.", ".daily.", 1),  # another list
        token[:-3],  # cut short by a mail client
        payload,  # no signature
        "",
        "not-a-token",
    ]


@pytest.mark.parametrize("index", range(7))
def test_tampered_tokens_are_rejected(index: int) -> None:
    token = make_unsubscribe_token(SECRET, 42, "weekly")
    with pytest.raises(InvalidToken) as caught:
        read_unsubscribe_token(SECRET, tampered_tokens(token)[index])
    assert isinstance(caught.value, SubscriberError)
    assert "\n" not in str(caught.value)


def test_a_token_signed_with_another_secret_is_rejected() -> None:
    token = make_unsubscribe_token("another-secret", 42, "weekly")
    with pytest.raises(InvalidToken):
        read_unsubscribe_token(SECRET, token)
