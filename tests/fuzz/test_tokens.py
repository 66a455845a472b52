"""Signed link tokens (subscribers/tokens.py) read from arbitrary strings.

A string that is not a token we made raises InvalidToken with one line, never another
exception, whatever it holds (surrogates, NULs, huge numbers, dots, base64 noise); a token we
made reads back as what went in.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from subscribers.tokens import (
    InvalidToken,
    make_confirm_token,
    make_preferences_token,
    make_unsubscribe_token,
    read_confirm_token,
    read_preferences_token,
    read_unsubscribe_token,
)
from tests.fuzz.hostile import FUZZ, assert_one_line

pytestmark = pytest.mark.nodb  # the PostgreSQL pass skips it

SECRET = "fuzz-secret"
NOW = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)
READERS = {
    "unsubscribe": lambda token: read_unsubscribe_token(SECRET, token),
    "preferences": lambda token: read_preferences_token(SECRET, token),
    "confirm": lambda token: read_confirm_token(SECRET, token, now=NOW),
}
PIECES = st.sampled_from(
    ["42", "-1", "1_000", "٤٢", "9" * 5000, "weekly", "~", "~!!", "~" + "A" * 7, ".", "..",
     "\x00", "\ud800", "é", "=", " ", "\n", "AAAAAAAAAAAAAAAAAAAAAA", "YW5uQGV4YW1wbGUub3Jn"]
)  # fmt: skip
junk = st.text() | st.lists(PIECES | st.text(max_size=5), max_size=8).map("".join)


@st.composite
def forged(draw: st.DrawFn) -> str:
    """A real token with its payload or signature altered: what a forger can start from."""
    kind = draw(st.sampled_from(sorted(READERS)))
    token = {
        "unsubscribe": make_unsubscribe_token(SECRET, 42, "weekly"),
        "preferences": make_preferences_token(SECRET, 42, "weekly", "ann@example.org"),
        "confirm": make_confirm_token(SECRET, 42, "weekly", "ann@example.org", now=NOW),
    }[kind]
    at = draw(st.integers(0, len(token) - 1))
    return token[:at] + draw(PIECES | st.text(max_size=3)) + token[at + 1 :]


@settings(FUZZ, max_examples=120)
@given(token=junk | forged(), kind=st.sampled_from(sorted(READERS)))
def test_anything_but_our_token_raises_invalid_token(token: str, kind: str) -> None:
    try:
        result = READERS[kind](token)
    except InvalidToken as error:
        assert_one_line(str(error), naming="link")
        return
    # Only a token we signed reads: an alteration that kept it valid changed nothing signed
    # (e.g. whitespace around it).
    assert result[:2] == (42, "weekly")


ids = st.integers(min_value=0, max_value=2**63)
list_names = st.text(min_size=1, max_size=40)
emails = st.text(min_size=1, max_size=60)


@FUZZ
@given(subscriber_id=ids, list_name=list_names, email=emails, age=st.integers(0, 48 * 3600))
def test_tokens_we_make_read_back(subscriber_id: int, list_name: str, email: str, age: int) -> None:
    """Round trip for every kind, any id, list name and address, and a confirm token read at
    any age within its 48 hours; every token is URL-safe ASCII."""
    unsubscribe = make_unsubscribe_token(SECRET, subscriber_id, list_name)
    assert read_unsubscribe_token(SECRET, unsubscribe) == (subscriber_id, list_name)
    preferences = make_preferences_token(SECRET, subscriber_id, list_name, email)
    assert read_preferences_token(SECRET, preferences) == (subscriber_id, list_name, email)
    confirm = make_confirm_token(SECRET, subscriber_id, list_name, email, now=NOW)
    later = NOW + timedelta(seconds=age)
    assert read_confirm_token(SECRET, confirm, now=later) == (subscriber_id, list_name, email)
    for token in (unsubscribe, preferences, confirm):
        assert token.isascii() and "/" not in token and "\n" not in token
