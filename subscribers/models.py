"""Plain, frozen views of subscriber data that leave the service; no I/O here."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# What a person is, as far as mailing them goes. Only "active" people are sent issues.
PERSON_STATUSES = ("pending", "active", "unsubscribed", "bounced", "complained")
# What one subscription is; "pending" waits for the person to confirm it.
SUBSCRIPTION_STATUSES = ("pending", "active", "unsubscribed")


@dataclass(frozen=True, slots=True)
class Consent:
    """What is logged with a consent event: where it happened, what the person saw, who asked.

    `source` names the form or channel ("subscribe-form", "preferences-page", "import"),
    `wording` is the consent text shown, `ip` and `user_agent` identify the request.
    """

    source: str
    wording: str = ""
    ip: str = ""
    user_agent: str = ""


@dataclass(frozen=True, slots=True)
class Subscriber:
    """A person. `email` is normalised (IDN-decoded, lower-case); `status` is a PERSON_STATUSES."""

    id: int
    email: str
    name: str
    status: str
    created: datetime
    attributes: dict[str, Any] = field(default_factory=dict, hash=False)


@dataclass(frozen=True, slots=True)
class SubscribeOutcome:
    """What a subscribe request did; `confirm_needed` says whether to send a confirmation."""

    subscriber_id: int
    email: str
    list_name: str
    confirm_needed: bool


@dataclass(frozen=True, slots=True)
class Recipient:
    """Someone a list's next issue goes to. Empty `topics` means every topic."""

    subscriber_id: int
    email: str
    name: str
    topics: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Subscription:
    """One person's membership of one list, as the public pages show it.

    `cadence` is one of service.FREQUENCIES ("paused" receives nothing); empty `topics` means
    every topic; `name` is the person's.
    """

    subscriber_id: int
    email: str
    list_name: str
    list_title: str
    topics: tuple[str, ...]
    status: str  # pending | active | unsubscribed
    cadence: str = "weekly"
    name: str = ""

    @property
    def is_active(self) -> bool:
        return self.status == "active"

    @property
    def is_pending(self) -> bool:
        return self.status == "pending"

    @property
    def is_paused(self) -> bool:
        return self.cadence == "paused"

    @property
    def list_label(self) -> str:
        """What to call the list in front of a reader: its title, else its name."""
        return self.list_title or self.list_name


@dataclass(frozen=True, slots=True)
class SubscriberRow:
    """One line of a subscriber listing: a person on a list (`list` is "" for no list).

    `status` is the most telling state: the person's own when it is not active (pending,
    unsubscribed, bounced, complained), "suppressed" when the address is on the do-not-mail
    list, otherwise the subscription's (pending | active | unsubscribed), or "none".
    """

    email: str
    name: str
    list: str
    topics: tuple[str, ...]
    status: str
    cadence: str = ""  # one of service.FREQUENCIES; "" for a person on no list
    attributes: dict[str, Any] = field(default_factory=dict, hash=False)
