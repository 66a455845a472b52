"""What the editor's pages show and send: a reader's exact message, test copies, stats, times.

The preview is not a look-alike: it is the message MessageFactory builds for a recipient, the
same call the outbox makes, put into MIME as every backend but SendGrid sends it and read back
out, so its HTML and text are byte for byte what that reader's mail client shows.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from zoneinfo import ZoneInfo

from digest.config import DigestConfig, Settings
from digest.deliver.message import to_email_message
from digest.editing import EditError
from digest.messages import MessageFactory
from digest.models import Issue, OutgoingMessage
from digest.store import OutboxRow, Store
from subscribers.service import SubscriberError, find_person, find_subscription, normalise_email

# A test goes to the editor and a colleague or two, not to a list: the outbox is for lists.
MAX_TEST_ADDRESSES = 5
TEST_PREFIX = "[Test] "
_ADDRESS_SEPARATORS = re.compile(r"[\s,;]+")
# datetime-local inputs send "2025-03-04T09:00" (seconds optional).
_LOCAL_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d)?")
# The stats panel: what the provider reported, in the words editors use (events summed).
EVENT_STATS = (
    ("Delivered", ("delivered",)),
    ("Opens", ("open",)),
    ("Clicks", ("click",)),
    ("Bounces", ("bounce",)),
    ("Dropped", ("dropped", "blocked")),
    ("Complaints", ("spamreport",)),
    ("Unsubscribes", ("unsubscribe", "group_unsubscribe")),
)
OUTBOX_STATS = (
    ("Sent", "sent"),
    ("Failed", "failed"),
    ("Unknown", "unknown"),
    ("Queued", "queued"),
    ("Sending", "sending"),
)


@dataclass(frozen=True, slots=True)
class Preview:
    """One recipient's message, and what an inbox lists before it is opened."""

    recipient: str
    topics: tuple[str, ...]
    sender: str
    subject: str
    preheader: str
    html: str
    text: str
    size_bytes: int
    warnings: tuple[str, ...]


def preview_recipient(
    store: Store, digest: DigestConfig, reader: str, topics: Sequence[str]
) -> tuple[int, str, tuple[str, ...]]:
    """(subscriber id, address, topics) to render for: a subscriber of the digest's list with
    their own topic choice, or, with no `reader`, subscriber 0 at `preview@…` with `topics`."""
    if not reader:
        return 0, "", tuple(topics)
    try:
        address = normalise_email(reader)
    except SubscriberError as error:
        raise EditError(f"preview as {reader!r}: {error}") from error
    with store.transaction() as connection:
        person = find_person(connection, address)
        subscription = (
            find_subscription(connection, person.id, digest.list_name) if person else None
        )
    if person is None or subscription is None:
        raise EditError(f"{address} is not on the list {digest.list_name!r}")
    return person.id, person.email, tuple(subscription.topics)


def preview_message(
    settings: Settings,
    store: Store,
    issue: Issue,
    *,
    topics: Sequence[str],
    reader: str = "",
    now: datetime,
) -> Preview | None:
    """The message this recipient gets; None when their topics leave the issue empty."""
    assert issue.id is not None
    factory = MessageFactory(settings, issue)
    subscriber_id, address, chosen = preview_recipient(store, factory.digest, reader, topics)
    _variant, rendered = factory.variant(chosen)
    if rendered is None:
        return None
    message = factory(
        OutboxRow(
            id=0,
            issue_id=issue.id,
            subscriber_id=subscriber_id,
            email=address or f"preview@{factory.domain}",
            topics=chosen,
            state="preview",
            attempts=0,
        )
    )
    html, text = _decoded_parts(to_email_message(message, date=now))
    return Preview(
        recipient=message.to,
        topics=chosen,
        sender=message.sender,
        subject=message.subject,
        preheader=rendered.preheader,
        html=html,
        text=text,
        size_bytes=rendered.size_bytes,
        warnings=tuple(rendered.warnings),
    )


def _decoded_parts(message: EmailMessage) -> tuple[str, str]:
    """(html, text) as a mail client decodes them from the message."""
    html = message.get_body(preferencelist=("html",))
    text = message.get_body(preferencelist=("plain",))
    assert html is not None and text is not None  # to_email_message writes both
    return html.get_content(), text.get_content()


def parse_test_addresses(raw: str) -> list[str]:
    """The addresses typed (commas, semicolons, spaces or lines between), each once, checked."""
    found: list[str] = []
    for part in _ADDRESS_SEPARATORS.split(raw):
        if not part:
            continue
        try:
            address = normalise_email(part)
        except SubscriberError as error:
            raise EditError(f"test address {error}") from error
        if address not in found:
            found.append(address)
    if not found:
        raise EditError("give at least one address to send the test to")
    if len(found) > MAX_TEST_ADDRESSES:
        raise EditError(f"{len(found)} test addresses; at most {MAX_TEST_ADDRESSES} at once")
    return found


def build_test_messages(
    settings: Settings, issue: Issue, addresses: Sequence[str], topics: Sequence[str]
) -> list[OutgoingMessage]:
    """One copy per address of what a reader with `topics` gets, its subject marked "[Test]".

    Each copy has its own Message-ID (receivers drop a repeated one) and names no outbox row.
    """
    assert issue.id is not None
    factory = MessageFactory(settings, issue)
    if factory.variant(topics)[1] is None:
        raise EditError(f"issue {issue.id} has nothing for the topics {', '.join(topics)}")
    messages = []
    for number, address in enumerate(addresses, start=1):
        row = OutboxRow(0, issue.id, 0, address, tuple(topics), "test", 0)
        message = factory(row)
        headers = {
            **message.headers,
            "Message-ID": f"<digest.{issue.id}.test.{secrets.token_hex(8)}@{factory.domain}>",
        }
        messages.append(
            replace(
                message,
                delivery_id=f"test-{number}",
                subject=TEST_PREFIX + message.subject,
                headers=headers,
            )
        )
    return messages


def send_time(raw: str, zone: ZoneInfo, now: datetime) -> datetime | None:
    """A datetime-local value in the digest's zone as UTC; None for "now" (an empty field)."""
    value = raw.strip()
    if not value:
        return None
    if not _LOCAL_TIME.fullmatch(value):
        raise EditError(f"send time {value!r}: expected YYYY-MM-DDTHH:MM")
    try:
        local = datetime.fromisoformat(value).replace(tzinfo=zone)
    except ValueError as error:
        raise EditError(f"send time {value!r}: {error}") from error
    at = local.astimezone(UTC)
    # A minute's grace for the time spent filling in the form.
    if at < now - timedelta(minutes=1):
        raise EditError(f"send time {value} ({zone.key}) has passed; approve now instead")
    return at


def local_time(at: datetime | None, zone: ZoneInfo) -> str:
    """A stored UTC time as the editor reads it, in the digest's zone."""
    if at is None:
        return ""
    return at.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")


def stats_rows(outbox: dict[str, int], events: dict[str, int]) -> list[tuple[str, int]]:
    """(label, count) for the stats panel: outbox states, then provider events."""
    rows = [(label, outbox.get(state, 0)) for label, state in OUTBOX_STATS]
    rows += [(label, sum(events.get(e, 0) for e in names)) for label, names in EVENT_STATS]
    return rows
