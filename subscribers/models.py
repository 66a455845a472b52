"""Plain, frozen views of subscriber data that leave the service; no I/O here."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Subscriber:
    """A person. `email` is normalised (IDN-decoded, lower-case); `status` is active | blocked."""

    id: int
    email: str
    name: str
    status: str
    created: datetime


@dataclass(frozen=True, slots=True)
class Recipient:
    """Someone a list's next issue goes to. Empty `topics` means every topic."""

    subscriber_id: int
    email: str
    name: str
    topics: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Subscription:
    """One person's membership of one list, as the unsubscribe pages show it."""

    subscriber_id: int
    email: str
    list_name: str
    list_title: str
    topics: tuple[str, ...]
    status: str  # active | unsubscribed

    @property
    def is_active(self) -> bool:
        return self.status == "active"

    @property
    def list_label(self) -> str:
        """What to call the list in front of a reader: its title, else its name."""
        return self.list_title or self.list_name


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What a CSV import did.

    `added` counts people newly put on the list, `updated` people already on it whose details
    were refreshed; `rejected` holds (line number, one-line reason) for rows left out.
    """

    added: int
    updated: int
    rejected: tuple[tuple[int, str], ...]


@dataclass(frozen=True, slots=True)
class SubscriberRow:
    """One line of a subscriber listing: a person on a list (`list` is "" for no list).

    `status` is the most telling state: blocked or suppressed when the person is, otherwise the
    subscription's own (active | unsubscribed), or "none" for a person on no list.
    """

    email: str
    name: str
    list: str
    topics: tuple[str, ...]
    status: str
