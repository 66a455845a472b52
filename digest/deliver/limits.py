"""How fast an issue may go out: token buckets for the backend and each recipient domain."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SendLimits:
    """How fast, and how stubbornly, an issue goes out.

    `rate` caps messages per second through the backend and `domain_rate` per recipient domain
    (0: no cap); `pause_after` consecutive failed messages stop the send (0: never), since a
    run of failures usually means a broken account, sender or template, not bad addresses.
    """

    rate: float = 0.0
    domain_rate: float = 0.0
    pause_after: int = 50


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up; `reserve` says when a token is yours."""

    def __init__(self, rate: float, burst: float = 1.0) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self._tokens = self.burst
        self._at: float | None = None

    def reserve(self, now: float) -> float:
        """Take one token; the seconds from `now` until it may be used (0: at once)."""
        if self._at is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate


class Throttle:
    """The backend's bucket and one bucket per recipient domain, from SendLimits."""

    def __init__(self, limits: SendLimits) -> None:
        self.limits = limits
        self._backend = TokenBucket(limits.rate, burst=limits.rate) if limits.rate else None
        self._domains: dict[str, TokenBucket] = {}

    def delay(self, recipients: Sequence[str], now: float) -> float:
        """Seconds to wait before a batch to `recipients` may go, all its tokens reserved."""
        wait = 0.0
        for address in recipients:
            if self._backend is not None:
                wait = max(wait, self._backend.reserve(now))
            if self.limits.domain_rate:
                domain = address.rpartition("@")[2].lower()
                bucket = self._domains.setdefault(
                    domain, TokenBucket(self.limits.domain_rate, burst=self.limits.domain_rate)
                )
                wait = max(wait, bucket.reserve(now))
        return wait
