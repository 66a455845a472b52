"""Tests for digest/web/ratelimit.py: token buckets per client address."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from digest.web.ratelimit import RateLimit, TokenBuckets, client_key, retry_after_header

T0 = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)


def test_a_burst_is_allowed_then_the_wait_until_the_next_token_is_given() -> None:
    buckets = TokenBuckets(RateLimit(burst=3, refill_seconds=20))

    assert [buckets.take("a", T0) for _ in range(3)] == [0, 0, 0]
    assert buckets.take("a", T0) == 20
    assert buckets.take("a", T0 + timedelta(seconds=15)) == pytest.approx(5)
    assert buckets.take("a", T0 + timedelta(seconds=20)) == 0


def test_buckets_refill_up_to_the_burst_only() -> None:
    buckets = TokenBuckets(RateLimit(burst=2, refill_seconds=10))
    buckets.take("a", T0)

    later = T0 + timedelta(hours=1)

    assert [buckets.take("a", later) for _ in range(3)] == [0, 0, 10]


def test_clients_have_separate_buckets() -> None:
    buckets = TokenBuckets(RateLimit(burst=1, refill_seconds=60))

    assert buckets.take("a", T0) == 0
    assert buckets.take("b", T0) == 0
    assert buckets.take("a", T0) == 60


def test_a_clock_stepping_back_does_not_drain_or_fill() -> None:
    buckets = TokenBuckets(RateLimit(burst=1, refill_seconds=60))
    buckets.take("a", T0)

    assert buckets.take("a", T0 - timedelta(minutes=5)) == 60


def test_memory_stays_bounded_dropping_refilled_buckets_first() -> None:
    buckets = TokenBuckets(RateLimit(burst=1, refill_seconds=60), max_clients=2)
    buckets.take("old", T0)
    buckets.take("busy", T0 + timedelta(seconds=59))

    buckets.take("new", T0 + timedelta(seconds=60))  # "old" has refilled: it is forgotten

    assert buckets.take("busy", T0 + timedelta(seconds=60)) > 0  # still remembered, still empty


def test_ipv6_clients_share_their_64_and_mapped_ipv4_is_ipv4() -> None:
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::9")
    assert client_key("2001:db8:1:2::1") != client_key("2001:db8:1:3::1")
    assert client_key("::ffff:203.0.113.9") == "203.0.113.9"
    assert client_key("203.0.113.9") != client_key("203.0.113.10")
    assert client_key(None) == "unknown"


def test_retry_after_is_whole_seconds_rounded_up() -> None:
    assert retry_after_header(0.2) == "1"
    assert retry_after_header(59.01) == "60"


def test_a_limit_that_allows_nothing_is_refused() -> None:
    with pytest.raises(ValueError, match="burst >= 1"):
        RateLimit(burst=0)
