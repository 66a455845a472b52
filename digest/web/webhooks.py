"""The SendGrid event webhook: signed provider events become suppressions, unsubscribes, counts.

SendGrid signs each POST with ECDSA P-256 over the timestamp header's bytes followed by the raw
body; the raw bytes are verified, never re-serialised JSON. A timestamp more than ten minutes
old or five minutes ahead is refused, so a captured request cannot be replayed later. Events
are stored once per `sg_event_id` (SendGrid delivers many twice or more), and only an event
seen for the first time acts, in the same transaction that records it.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool

from digest.config import DigestConfig
from digest.errors import ConfigError
from digest.store import ProviderEvent, Store
from subscribers import service
from subscribers.service import SubscriberError

log = logging.getLogger(__name__)

PUBLIC_KEY_VARIABLE = "SENDGRID_WEBHOOK_PUBLIC_KEY"
SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
# Bounds the memory one request can take; SendGrid posts events in batches well below it.
MAX_BODY_BYTES = 1_000_000
# Past this age a signed request counts as a replay; ahead of now by more is a wrong clock.
MAX_AGE = timedelta(minutes=10)
MAX_AHEAD = timedelta(minutes=5)
MAX_EVENT_ID = 100  # provider_events.sg_event_id
MAX_EVENT_NAME = 40  # provider_events.event
MAX_EMAIL = 320
RAW_KEPT = 2000  # characters of each event kept for an operator to read
MAX_ROW_ID = 2**31 - 1  # an INTEGER column on every backend
# What each event tells the suppression list; the service sets the person's status from it.
SUPPRESSION_REASONS = {"bounce": "bounce", "spamreport": "spamreport"}
UNSUBSCRIBE_EVENTS = frozenset({"unsubscribe", "group_unsubscribe"})
# A `dropped` event's reason says whose problem it is. These drops are about the address, and
# suppress it as the earlier bounce or complaint did; others (spam content, a bad header, the
# account's quota) are about the message or the account: counted, the address is kept.
DROP_SUPPRESSION_REASONS = {
    "Bounced Address": "bounce",
    "Spam Reporting Address": "spamreport",
    "Invalid": "dropped",
    "Unsubscribed Address": "dropped",
}


class WebhookRefused(Exception):
    """A request the endpoint does not accept: the HTTP status and a one-line reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True, slots=True)
class EventWebhook:
    """What the endpoint needs: SendGrid's public key, the store, each digest's list name."""

    public_key: ec.EllipticCurvePublicKey
    store: Store
    lists_by_digest: Mapping[str, str]


def load_public_key(text: str) -> ec.EllipticCurvePublicKey:
    """SendGrid's verification key (base64 DER SubjectPublicKeyInfo, as its settings show it)."""
    armour = re.compile(r"-----(BEGIN|END) PUBLIC KEY-----")
    compact = "".join(armour.sub("", text).split())
    try:
        key = load_der_public_key(base64.b64decode(compact, validate=True))
    except (binascii.Error, ValueError) as error:
        raise ConfigError(
            f"{PUBLIC_KEY_VARIABLE}: not a base64 DER public key ({error})"
        ) from error
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise ConfigError(f"{PUBLIC_KEY_VARIABLE}: not an ECDSA P-256 public key")
    return key


def event_webhook_from_env(
    environ: Mapping[str, str], store: Store, digests: Sequence[DigestConfig]
) -> EventWebhook | None:
    """The webhook when SENDGRID_WEBHOOK_PUBLIC_KEY is set, else None (the endpoint is off)."""
    text = environ.get(PUBLIC_KEY_VARIABLE, "").strip()
    if not text:
        return None
    lists = {digest.name: digest.list_name for digest in digests}
    return EventWebhook(public_key=load_public_key(text), store=store, lists_by_digest=lists)


# --- checking a request ----------------------------------------------------------------------


def verify_request(
    key: ec.EllipticCurvePublicKey,
    signature: str | None,
    timestamp: str | None,
    body: bytes,
    *,
    now: datetime,
) -> None:
    """Raise WebhookRefused (403) unless SendGrid signed `timestamp + body` recently."""
    if not signature:
        raise WebhookRefused(403, f"{SIGNATURE_HEADER}: missing")
    if not timestamp:
        raise WebhookRefused(403, f"{TIMESTAMP_HEADER}: missing")
    check_fresh(timestamp, now=now)
    try:
        der = base64.b64decode(signature, validate=True)
    except ValueError as error:  # binascii.Error, or a header with non-ASCII characters
        raise WebhookRefused(403, f"{SIGNATURE_HEADER}: not base64") from error
    try:
        key.verify(der, timestamp.encode("ascii") + body, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as error:
        raise WebhookRefused(403, f"{SIGNATURE_HEADER}: does not match the body") from error


def check_fresh(timestamp: str, *, now: datetime) -> None:
    """Raise WebhookRefused (403) for a timestamp that is not recent Unix seconds."""
    if not re.fullmatch(r"[0-9]{1,12}", timestamp):
        raise WebhookRefused(403, f"{TIMESTAMP_HEADER}: {timestamp[:40]!r} is not a Unix time")
    # Compared as numbers: twelve digits can name a year no datetime holds.
    signed_at = int(timestamp)
    if signed_at < (now - MAX_AGE).timestamp():
        raise WebhookRefused(403, f"{TIMESTAMP_HEADER}: {timestamp} is more than 10 minutes old")
    if signed_at > (now + MAX_AHEAD).timestamp():
        raise WebhookRefused(403, f"{TIMESTAMP_HEADER}: {timestamp} is more than 5 minutes ahead")


async def read_bounded(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The raw body, or WebhookRefused (413) as soon as it passes `limit` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise WebhookRefused(413, f"request body: larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise WebhookRefused(413, f"request body: larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


# --- reading events --------------------------------------------------------------------------


def parse_events(body: bytes, *, now: datetime) -> list[ProviderEvent]:
    """The events of a JSON array; WebhookRefused (400) when the body is not one.

    An element without an event id or name cannot be deduplicated and is skipped, not refused:
    refusing would make SendGrid retry the whole batch for a day.
    """
    try:
        items = json.loads(body)
    except (ValueError, RecursionError) as error:
        detail = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise WebhookRefused(400, f"request body: not JSON ({detail})") from error
    if not isinstance(items, list):
        kind = type(items).__name__
        raise WebhookRefused(400, f"request body: a JSON {kind}, not an array of events")
    events = [event for item in items if (event := provider_event(item, now=now)) is not None]
    if len(events) < len(items):
        log.warning("sendgrid: skipped %d events without sg_event_id", len(items) - len(events))
    return events


def provider_event(item: Any, *, now: datetime) -> ProviderEvent | None:
    """One SendGrid event as stored; our custom args (issue_id, subscriber_id) are top-level."""
    if not isinstance(item, dict):
        return None
    event_id, name = item.get("sg_event_id"), item.get("event")
    if not _is_short_text(event_id, MAX_EVENT_ID) or not _is_short_text(name, MAX_EVENT_NAME):
        return None
    email = item.get("email")
    reason = item.get("reason")
    return ProviderEvent(
        sg_event_id=event_id,
        event=_event_name(name, item.get("type")),
        issue_id=_row_id(item.get("issue_id")),
        subscriber_id=_row_id(item.get("subscriber_id")),
        email=_storable(email).strip()[:MAX_EMAIL] if isinstance(email, str) else "",
        at=_event_time(item.get("timestamp"), now),
        raw=json.dumps(item, sort_keys=True)[:RAW_KEPT],
        delivery_id=_row_id(item.get("delivery_id")),
        reason=_storable(reason).strip()[:200] if isinstance(reason, str) else "",
    )


def _is_short_text(value: Any, limit: int) -> bool:
    return isinstance(value, str) and 0 < len(value) <= limit and _storable(value) == value


def _storable(text: str) -> str:
    """The text without what no database stores and would fail the whole batch for: NUL
    (PostgreSQL refuses it) and lone surrogates (JSON's "\\ud800" is no UTF-8 at all)."""
    return text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")


def _event_name(event: str, bounce_type: Any) -> str:
    # A block is the receiving server refusing for now (e.g. our IP on a blocklist), not a dead
    # address: it is counted apart and suppresses nothing.
    return "blocked" if event == "bounce" and bounce_type == "blocked" else event


def _row_id(value: Any) -> int | None:
    """A custom arg naming a row (SendGrid sends them as strings); None unless it can be one."""
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,10}", value):
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_ROW_ID:
        return value
    return None


def _event_time(value: Any, now: datetime) -> datetime:
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            pass  # a nonsense time is replaced by the time of receipt below
    return now


# --- acting on events ------------------------------------------------------------------------


def receive_events(webhook: EventWebhook, events: Sequence[ProviderEvent]) -> int:
    """Record the events; those never seen before act. Returns how many were new."""
    lists = {
        issue_id: _list_of_issue(webhook, issue_id)
        for issue_id in {e.issue_id for e in events if e.event in UNSUBSCRIBE_EVENTS}
        if issue_id is not None
    }
    with webhook.store.transaction() as connection:
        new = webhook.store.record_provider_events(events, connection=connection)
        for event in new:
            list_name = lists.get(event.issue_id) if event.issue_id is not None else None
            apply_event(connection, event, list_name)
            settle_delivery(webhook.store, connection, event)
    return len(new)


def settle_delivery(store: Store, connection: Connection, event: ProviderEvent) -> bool:
    """Any event about a message proves SendGrid took it: an outbox row left `unknown` (no
    answer came) or `sending` (the sender died) becomes `sent`, so it is never sent again.
    True if a row was settled."""
    if event.delivery_id is None or event.issue_id is None or event.subscriber_id is None:
        return False
    settled = store.settle_taken(
        event.delivery_id, event.issue_id, event.subscriber_id, now=event.at, connection=connection
    )
    if settled:
        log.info("outbox row %s settled as sent by event=%s", event.delivery_id, event.event)
    return settled


def _list_of_issue(webhook: EventWebhook, issue_id: int) -> str | None:
    """The list an issue went to; None for an issue (or a digest) this site does not know."""
    issue = webhook.store.load_issue(issue_id)
    return webhook.lists_by_digest.get(issue.digest) if issue is not None else None


def apply_event(connection: Connection, event: ProviderEvent, list_name: str | None) -> bool:
    """Suppress, or unsubscribe from `list_name`, as the event says; True if it acted.

    Deliveries, opens, clicks and deferrals only count; so does an event naming a subscriber,
    issue or list this site does not know.
    """
    reason = SUPPRESSION_REASONS.get(event.event)
    if event.event == "dropped":
        reason = DROP_SUPPRESSION_REASONS.get(event.reason)
        if reason is None:
            log.warning(
                "sendgrid dropped a message of issue %s for %r: the address is kept",
                event.issue_id,
                event.reason or "no reason given",
            )
    try:
        if reason is not None and event.email:
            service.suppress(connection, event.email, reason=reason, now=event.at)
            log.info("suppressed event=%s issue=%s", event.event, event.issue_id)
            return True
        if event.event in UNSUBSCRIBE_EVENTS and list_name and event.subscriber_id:
            via = f"sendgrid {event.event}"
            return service.unsubscribe(
                connection, event.subscriber_id, list_name, via=via, now=event.at
            )
    except SubscriberError as error:  # an address SendGrid sent that is not one; nothing to do
        log.warning("sendgrid event=%s id=%s ignored: %s", event.event, event.sg_event_id, error)
    return False


# --- the endpoint ----------------------------------------------------------------------------

# The endpoint reads its headers and raw body itself; this tells the OpenAPI description.
ENDPOINT_OPENAPI = {
    "parameters": [
        {"name": name, "in": "header", "required": True, "schema": {"type": "string"}}
        for name in (SIGNATURE_HEADER, TIMESTAMP_HEADER)
    ],
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"type": "array", "items": {"type": "object"}}}},
    },
}


def webhook_routes(webhook: EventWebhook | None, clock: Callable[[], datetime]) -> APIRouter:
    """`POST /webhooks/sendgrid`; without a webhook (no key configured) it answers 404."""
    router = APIRouter()

    @router.post("/webhooks/sendgrid", openapi_extra=ENDPOINT_OPENAPI)
    async def sendgrid_events(request: Request) -> Response:
        if webhook is None:
            return _refusal(WebhookRefused(404, "the SendGrid event webhook is not enabled"))
        now = clock()
        try:
            body = await read_bounded(request)
            headers = request.headers
            verify_request(
                webhook.public_key,
                headers.get(SIGNATURE_HEADER),
                headers.get(TIMESTAMP_HEADER),
                body,
                now=now,
            )
            events = parse_events(body, now=now)
        except WebhookRefused as refused:
            log.warning("sendgrid webhook refused (%s): %s", refused.status, refused.reason)
            return _refusal(refused)
        new = await run_in_threadpool(receive_events, webhook, events)
        log.info("sendgrid events=%d new=%d", len(events), new)
        return JSONResponse({"events": len(events), "new": new})

    return router


def _refusal(refused: WebhookRefused) -> PlainTextResponse:
    return PlainTextResponse(refused.reason + "\n", status_code=refused.status)
