"""Tests for digest/web/csrf.py: the signed double-submit token."""

from __future__ import annotations

from digest.web.csrf import CsrfGuard

GUARD = CsrfGuard("csrf-test-secret")


def test_a_field_issued_for_a_cookie_is_valid_with_that_cookie_only() -> None:
    pair = GUARD.pair_for(None)
    other = GUARD.pair_for(None)

    assert pair.is_new and len(pair.nonce) == 22 and pair.nonce != other.nonce
    assert GUARD.is_valid(pair.nonce, pair.field_value)
    assert not GUARD.is_valid(other.nonce, pair.field_value)
    assert not GUARD.is_valid(None, pair.field_value)
    assert not GUARD.is_valid(pair.nonce, None)


def test_a_browser_keeps_its_well_formed_cookie() -> None:
    first = GUARD.pair_for(None)

    again = GUARD.pair_for(first.nonce)

    assert not again.is_new and again.nonce == first.nonce
    assert GUARD.is_valid(first.nonce, again.field_value)


def test_a_malformed_cookie_is_replaced() -> None:
    pair = GUARD.pair_for('"; injected=1')

    assert pair.is_new and pair.nonce != '"; injected=1'


def test_fields_from_another_key_or_altered_fields_are_invalid() -> None:
    pair = GUARD.pair_for(None)
    foreign = CsrfGuard("another-secret").pair_for(pair.nonce)

    assert not GUARD.is_valid(pair.nonce, foreign.field_value)
    # A character inside the signature: the last one also carries padding bits, so changing
    # it can leave the decoded signature as it was.
    at = len(pair.nonce) + 2
    swapped = "B" if pair.field_value[at] == "A" else "A"
    altered = pair.field_value[:at] + swapped + pair.field_value[at + 1 :]
    assert not GUARD.is_valid(pair.nonce, altered)
    assert not GUARD.is_valid(pair.nonce, pair.nonce)  # an unsigned copy of the cookie
