"""Per-client rate limiting: an in-process token bucket for each IP address (IPv6 by /64).

Each process keeps its own buckets, so with several web processes a client gets each process's
allowance; that still bounds how many confirmation emails one address can make us send.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass
from datetime import datetime

# Beyond this many clients, buckets that have filled up again are forgotten (they hold nothing
# a fresh bucket would not), then those first seen longest ago.
MAX_CLIENTS = 10_000


@dataclass(frozen=True, slots=True)
class RateLimit:
    """`burst` requests at once, then one more every `refill_seconds`."""

    burst: int = 5
    refill_seconds: float = 60.0

    def __post_init__(self) -> None:
        if self.burst < 1 or self.refill_seconds <= 0:
            raise ValueError(f"rate limit needs burst >= 1 and refill_seconds > 0, got {self!r}")


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: datetime


class TokenBuckets:
    """One bucket per client key. Not thread-safe: call it from the event loop only."""

    def __init__(self, limit: RateLimit, max_clients: int = MAX_CLIENTS) -> None:
        self.limit = limit
        self.max_clients = max_clients
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key: str, now: datetime) -> float:
        """Spend one token: 0 when the request may go ahead, else the seconds until it may."""
        bucket = self._buckets.get(key)
        if bucket is None:
            self._make_room(now)
            bucket = self._buckets[key] = _Bucket(float(self.limit.burst), now)
        bucket.tokens = self._refilled(bucket, now)
        bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0.0
        return (1 - bucket.tokens) * self.limit.refill_seconds

    def _refilled(self, bucket: _Bucket, now: datetime) -> float:
        # A clock that steps back refills nothing rather than draining the bucket.
        elapsed = max((now - bucket.updated).total_seconds(), 0.0)
        return min(float(self.limit.burst), bucket.tokens + elapsed / self.limit.refill_seconds)

    def _make_room(self, now: datetime) -> None:
        if len(self._buckets) < self.max_clients:
            return
        full = [k for k, b in self._buckets.items() if self._refilled(b, now) >= self.limit.burst]
        for key in full:
            del self._buckets[key]
        while len(self._buckets) >= self.max_clients:
            del self._buckets[next(iter(self._buckets))]


def client_key(host: str | None) -> str:
    """Whose bucket a request uses: its IP address, an IPv6 address's /64 network."""
    if not host:
        return "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if address.version == 6 and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def retry_after_header(seconds: float) -> str:
    """Whole seconds, rounded up, at least 1 (the Retry-After header takes an integer)."""
    return str(max(1, math.ceil(seconds)))
