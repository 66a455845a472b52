"""Tests for subscribers/tokens.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from subscribers import service
from subscribers.service import SubscriberError
from subscribers.tokens import (
    CONFIRM_MAX_AGE,
    InvalidToken,
    make_confirm_token,
    make_preferences_token,
    make_unsubscribe_token,
    read_confirm_token,
    read_preferences_token,
    read_unsubscribe_token,
)

pytestmark = pytest.mark.nodb  # the PostgreSQL pass skips it

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


# --- confirm and preferences tokens ------------------------------------------------------

NOW = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)
addresses = st.emails().map(str.lower) | st.sampled_from(
    ["kim@bücher.example", "josé+news@example.org", "o'neil@example.org", "用户@例子.中国"]
)


@given(
    subscriber_id=st.integers(min_value=0, max_value=10**12),
    list_name=st.text(min_size=1),
    email=addresses,
)
def test_confirm_and_preferences_tokens_round_trip_and_are_url_safe(
    subscriber_id: int, list_name: str, email: str
) -> None:
    confirm = make_confirm_token(SECRET, subscriber_id, list_name, email, now=NOW)
    preferences = make_preferences_token(SECRET, subscriber_id, list_name, email)

    assert read_confirm_token(SECRET, confirm, now=NOW) == (subscriber_id, list_name, email)
    assert read_preferences_token(SECRET, preferences) == (subscriber_id, list_name, email)
    assert quote(confirm, safe="") == confirm
    assert quote(preferences, safe="") == preferences


def test_tokens_are_compact() -> None:
    email = "firstname.lastname@example-company.org"  # 38 characters, a long everyday one
    confirm = make_confirm_token(SECRET, 999_999, "weekly-tech1", email, now=NOW)
    preferences = make_preferences_token(SECRET, 999_999, "weekly-tech1", email)
    # id, list, the address in base64 (4/3 of it), a 6-character time, a 22-character signature.
    assert len(preferences) <= 6 + 12 + 51 + 22 + 3
    assert len(confirm) == len(preferences) + 7


def test_a_confirm_token_works_for_48_hours_and_then_expires() -> None:
    token = make_confirm_token(SECRET, 42, "weekly", "ann@example.org", now=NOW)

    assert read_confirm_token(SECRET, token, now=NOW + CONFIRM_MAX_AGE)[0] == 42
    assert timedelta(hours=48) == CONFIRM_MAX_AGE
    with pytest.raises(InvalidToken, match="expired") as caught:
        read_confirm_token(SECRET, token, now=NOW + CONFIRM_MAX_AGE + timedelta(seconds=1))
    assert "48 hours" in str(caught.value)
    with pytest.raises(InvalidToken, match="expired"):
        read_confirm_token(SECRET, token, now=NOW + timedelta(hours=2), max_age=timedelta(hours=1))


def test_a_confirm_token_from_the_future_is_refused_beyond_clock_skew() -> None:
    token = make_confirm_token(SECRET, 42, "weekly", "ann@example.org", now=NOW)
    assert read_confirm_token(SECRET, token, now=NOW - timedelta(minutes=4))[0] == 42
    with pytest.raises(InvalidToken, match="future"):
        read_confirm_token(SECRET, token, now=NOW - timedelta(hours=1))


def test_a_confirm_token_is_stamped_with_the_given_time_not_the_clock() -> None:
    paris = timezone(timedelta(hours=1))
    first = make_confirm_token(SECRET, 42, "weekly", "ann@example.org", now=NOW)
    same_instant = make_confirm_token(
        SECRET, 42, "weekly", "ann@example.org", now=NOW.astimezone(paris)
    )
    assert first == same_instant
    with pytest.raises(ValueError, match="aware"):
        make_confirm_token(SECRET, 42, "weekly", "ann@example.org", now=NOW.replace(tzinfo=None))


def personal_token_fields(token: str) -> list[str]:
    return token.split(".")


def test_a_token_for_one_address_never_names_another() -> None:
    ann = make_confirm_token(SECRET, 42, "weekly", "ann@example.org", now=NOW)
    bob = make_confirm_token(SECRET, 42, "weekly", "bob@example.org", now=NOW)
    ann_fields, bob_fields = personal_token_fields(ann), personal_token_fields(bob)
    # Ann's token with Bob's address put in: the signature no longer matches.
    swapped = ".".join([*ann_fields[:2], bob_fields[2], *ann_fields[3:]])
    with pytest.raises(InvalidToken):
        read_confirm_token(SECRET, swapped, now=NOW)
    prefs = personal_token_fields(make_preferences_token(SECRET, 42, "weekly", "ann@example.org"))
    with pytest.raises(InvalidToken):
        read_preferences_token(SECRET, ".".join([*prefs[:2], bob_fields[2], prefs[3]]))


@pytest.mark.parametrize("part", range(5))
def test_every_part_of_a_confirm_token_is_signed(part: int) -> None:
    fields = personal_token_fields(
        make_confirm_token(SECRET, 42, "weekly", "ann@example.org", now=NOW)
    )
    value = fields[part]
    middle = len(value) // 2  # the last base64 character may carry only padding bits
    changed = "A" if value[middle] != "A" else "B"
    fields[part] = (
        str(int(value) + 1) if value.isdigit() else value[:middle] + changed + value[middle + 1 :]
    )
    with pytest.raises(InvalidToken, match="not valid") as caught:
        read_confirm_token(SECRET, ".".join(fields), now=NOW)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("bad", ["", "not-a-token", "42.weekly", "42.weekly.YW5u.x.y.z"])
def test_malformed_personal_tokens_are_rejected(bad: str) -> None:
    with pytest.raises(InvalidToken):
        read_confirm_token(SECRET, bad, now=NOW)
    with pytest.raises(InvalidToken):
        read_preferences_token(SECRET, bad)


def test_one_kind_of_token_never_passes_for_another() -> None:
    unsubscribe = make_unsubscribe_token(SECRET, 42, "weekly")
    confirm = make_confirm_token(SECRET, 42, "weekly", "ann@example.org", now=NOW)
    preferences = make_preferences_token(SECRET, 42, "weekly", "ann@example.org")
    for token in (unsubscribe, preferences):
        with pytest.raises(InvalidToken):
            read_confirm_token(SECRET, token, now=NOW)
    for token in (unsubscribe, confirm):
        with pytest.raises(InvalidToken):
            read_preferences_token(SECRET, token)
    for token in (confirm, preferences):
        with pytest.raises(InvalidToken):
            read_unsubscribe_token(SECRET, token)


def test_personal_tokens_signed_with_another_secret_are_rejected() -> None:
    with pytest.raises(InvalidToken):
        read_confirm_token(
            SECRET,
            make_confirm_token("another", 42, "weekly", "ann@example.org", now=NOW),
            now=NOW,
        )
    with pytest.raises(InvalidToken):
        read_preferences_token(
            SECRET, make_preferences_token("another", 42, "weekly", "ann@example.org")
        )


def test_a_preferences_token_never_expires() -> None:
    token = make_preferences_token(SECRET, 42, "weekly", "ann@example.org")
    assert make_preferences_token(SECRET, 42, "weekly", "ann@example.org") == token
    assert read_preferences_token(SECRET, token) == (42, "weekly", "ann@example.org")


def test_tokens_refuse_what_cannot_be_signed() -> None:
    with pytest.raises(ValueError, match="secret"):
        make_preferences_token("", 42, "weekly", "ann@example.org")
    with pytest.raises(ValueError, match="email"):
        make_confirm_token(SECRET, 42, "weekly", "", now=NOW)
    with pytest.raises(ValueError, match="list name"):
        make_preferences_token(SECRET, 42, "", "ann@example.org")
    with pytest.raises(ValueError, match="non-negative"):
        make_confirm_token(SECRET, -1, "weekly", "ann@example.org", now=NOW)


def test_invalid_token_is_the_services_error() -> None:
    assert InvalidToken is service.InvalidToken
    assert issubclass(InvalidToken, SubscriberError)


def test_tokens_stay_the_same_bytes_across_releases() -> None:
    # Links in mail already sent must keep working: these were made before signing was cached.
    secret = "s" * 32
    assert make_unsubscribe_token(secret, 42, "weekly") == "42.weekly.WqxKmBax4YTU7KQQmH28GQ"
    assert (
        make_preferences_token(secret, 42, "weekly", "zoë@example.org")
        == "42.weekly.em_Dq0BleGFtcGxlLm9yZw.TUWQviAg83HoNVjkO5Obfg"
    )
    stamped = datetime(2026, 11, 26, tzinfo=UTC)
    assert (
        make_confirm_token(secret, 42, "weekly", "a@b.org", now=stamped)
        == "42.weekly.YUBiLm9yZw.awd2gA._s3M4L0RILbCgaVYhr6GJw"
    )
    assert read_unsubscribe_token(secret, "42.weekly.WqxKmBax4YTU7KQQmH28GQ") == (42, "weekly")
