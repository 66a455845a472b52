"""Tests for digest/web/webhooks.py: SendGrid's signed event webhook, over a real SQLite file.

Requests are signed as SendGrid signs them (ECDSA P-256 over the timestamp string followed by
the raw body) with a key pair made for the test; the app is the one `digest serve` builds.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from digest.cli import app as cli_app
from digest.errors import ConfigError
from digest.models import Issue, SendResult
from digest.store import ProviderEvent, QueuedRecipient, Store
from digest.tables import outbox, provider_events
from digest.web.serving import public_app
from digest.web.webhooks import (
    MAX_BODY_BYTES,
    PUBLIC_KEY_VARIABLE,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    parse_events,
)
from subscribers import service, tables
from tests.web.public_site import TEST_RATE_LIMIT, Clock, build_settings

START = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)
URL = "/webhooks/sendgrid"

# SendGrid's published test vector (its libraries' unit tests): a real signature by SendGrid.
SENDGRID_KEY = (
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62"
    "gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g=="
)
SENDGRID_SIGNATURE = (
    "MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0JuG+luQAbPIqHh89M15Tlu"
    "LtEZtM="
)
SENDGRID_TIMESTAMP = "1600112502"
SENDGRID_PAYLOAD = (
    '[{"email":"hello@world.com","event":"dropped","reason":"Bounced Address",'
    '"sg_event_id":"ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA",'
    '"sg_message_id":"LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0",'
    '"smtp-id":"<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>","timestamp":1600112492}]'
    "\r\n"
)


@dataclass
class Webhook:
    client: TestClient
    store: Store
    clock: Clock
    key: ec.EllipticCurvePrivateKey
    root: Path
    issue_id: int  # an issue of the "alerts" digest, sent to the "alerts" list
    ann: int  # on the weekly and alerts lists
    bob: int  # on the weekly list

    def post(self, events: Any, *, key: ec.EllipticCurvePrivateKey | None = None) -> httpx.Response:
        """POST the events as SendGrid does: signed now, body ending in CRLF."""
        body = json.dumps(events).encode() + b"\r\n"
        return self.post_body(body, signed_headers(key or self.key, body, self.timestamp()))

    def post_body(self, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return self.client.post(URL, content=body, headers=headers)

    def timestamp(self) -> str:
        return str(int(self.clock.now.timestamp()))

    def counts(self) -> dict[str, int]:
        return self.store.issue_event_counts(self.issue_id)


def signed_headers(key: ec.EllipticCurvePrivateKey, body: bytes, timestamp: str) -> dict[str, str]:
    signature = key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: base64.b64encode(signature).decode(),
        TIMESTAMP_HEADER: timestamp,
    }


def public_key_text(key: ec.EllipticCurvePrivateKey) -> str:
    """The public key as SendGrid's settings page shows it: base64 DER SubjectPublicKeyInfo."""
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def event(kind: str, number: int, **fields: Any) -> dict[str, Any]:
    return {
        "event": kind,
        "sg_event_id": f"{kind}-{number}",
        "email": "ann@example.org",
        "timestamp": int(START.timestamp()),
        **fields,
    }


def build_public_app(root: Path, store: Store, clock: Clock, environ: dict[str, str]) -> Any:
    settings = build_settings(root)
    return public_app(settings, store, clock=clock, rate_limit=TEST_RATE_LIMIT, environ=environ)


@contextmanager
def open_app(
    root: Path, store: Store, clock: Clock, environ: dict[str, str]
) -> Iterator[TestClient]:
    """A client of the app `digest serve` builds, with `environ` as its environment."""
    with TestClient(build_public_app(root, store, clock, environ)) as client:
        yield client


@pytest.fixture
def webhook(tmp_path: Path) -> Iterator[Webhook]:
    settings = build_settings(tmp_path)
    store = Store.open(settings.database_url)
    with store.transaction() as conn:
        for name in ("weekly", "alerts"):
            service.ensure_list(conn, name, now=START)
        ann = service.add_subscriber(
            conn, "ann@example.org", list_name="weekly", consent="fair", now=START
        )
        service.add_subscriber(
            conn, "ann@example.org", list_name="alerts", consent="fair", now=START
        )
        bob = service.add_subscriber(
            conn, "bob@example.org", list_name="weekly", consent="fair", now=START
        )
    issue, _ = store.save_issue(
        Issue(digest="alerts", period_key="2025-03-03", title="Alerts", created=START, sections=())
    )
    assert issue.id is not None
    key = ec.generate_private_key(ec.SECP256R1())
    clock = Clock(START + timedelta(minutes=2))
    environ = {PUBLIC_KEY_VARIABLE: public_key_text(key)}
    with open_app(tmp_path, store, clock, environ) as client:
        yield Webhook(client, store, clock, key, tmp_path, issue.id, ann.id, bob.id)
    store.engine.dispose()


def stored_events(store: Store) -> list[str]:
    with store.engine.connect() as conn:
        return list(
            conn.execute(
                sa.select(provider_events.c.sg_event_id).order_by(provider_events.c.id)
            ).scalars()
        )


def person(store: Store, address: str) -> tuple[str, str | None]:
    """(person status, suppression reason) of an address."""
    with store.engine.connect() as conn:
        found = service.find_person(conn, address)
        reason = conn.execute(
            sa.select(tables.suppressions.c.reason).where(tables.suppressions.c.email == address)
        ).scalar()
    assert found is not None
    return found.status, reason


def subscriptions(store: Store, subscriber_id: int) -> dict[str, str]:
    with store.engine.connect() as conn:
        return {s.list_name: s.status for s in service.subscriptions_of(conn, subscriber_id)}


def unsubscribe_notes(store: Store, subscriber_id: int) -> list[str]:
    with store.engine.connect() as conn:
        return list(
            conn.execute(
                sa.select(tables.consent_events.c.note).where(
                    tables.consent_events.c.subscriber_id == subscriber_id,
                    tables.consent_events.c.action == "unsubscribed",
                )
            ).scalars()
        )


# --- the signature ---------------------------------------------------------------------------


def test_signed_events_are_accepted_and_counted_per_issue(webhook: Webhook) -> None:
    issue = {"issue_id": str(webhook.issue_id), "subscriber_id": str(webhook.ann)}
    kinds = ("delivered", "open", "open", "click", "deferred", "processed")
    sent = [event(kind, n, **issue) for n, kind in enumerate(kinds)]

    answer = webhook.post(sent)

    assert (answer.status_code, answer.json()) == (200, {"events": 6, "new": 6})
    assert webhook.counts() == {
        "delivered": 1,
        "open": 2,
        "click": 1,
        "deferred": 1,
        "bounce": 0,
        "dropped": 0,
        "spamreport": 0,
        "processed": 1,
    }
    # Counting touches nobody.
    assert person(webhook.store, "ann@example.org") == ("active", None)


def test_sendgrids_own_signed_example_verifies(tmp_path: Path) -> None:
    store = Store.open(build_settings(tmp_path).database_url)
    clock = Clock(datetime.fromtimestamp(int(SENDGRID_TIMESTAMP), UTC))
    headers = {SIGNATURE_HEADER: SENDGRID_SIGNATURE, TIMESTAMP_HEADER: SENDGRID_TIMESTAMP}
    with open_app(tmp_path, store, clock, {PUBLIC_KEY_VARIABLE: SENDGRID_KEY}) as client:
        answer = client.post(URL, content=SENDGRID_PAYLOAD.encode(), headers=headers)
        assert (answer.status_code, answer.json()) == (200, {"events": 1, "new": 1})
        # The same bytes without SendGrid's trailing CRLF were not what it signed.
        trimmed = client.post(URL, content=SENDGRID_PAYLOAD.strip().encode(), headers=headers)
        assert trimmed.status_code == 403
    with store.engine.connect() as conn:
        assert service.is_suppressed(conn, "hello@world.com")
    store.engine.dispose()


def test_a_body_changed_by_one_byte_is_refused(webhook: Webhook) -> None:
    body = json.dumps([event("spamreport", 1)]).encode() + b"\r\n"
    headers = signed_headers(webhook.key, body, webhook.timestamp())
    altered = body.replace(b"ann@", b"bnn@")
    assert len(altered) == len(body) and altered != body

    answer = webhook.post_body(altered, headers)

    assert answer.status_code == 403
    assert answer.text == f"{SIGNATURE_HEADER}: does not match the body\n"
    assert stored_events(webhook.store) == []
    assert person(webhook.store, "ann@example.org") == ("active", None)


def test_a_signature_by_another_key_is_refused(webhook: Webhook) -> None:
    stranger = ec.generate_private_key(ec.SECP256R1())
    answer = webhook.post([event("unsubscribe", 1)], key=stranger)
    assert answer.status_code == 403
    assert stored_events(webhook.store) == []


@pytest.mark.parametrize(
    ("dropped_header", "message"),
    [
        (SIGNATURE_HEADER, f"{SIGNATURE_HEADER}: missing"),
        (TIMESTAMP_HEADER, f"{TIMESTAMP_HEADER}: missing"),
    ],
)
def test_a_request_without_a_signature_header_is_refused(
    webhook: Webhook, dropped_header: str, message: str
) -> None:
    body = json.dumps([event("delivered", 1)]).encode()
    headers = signed_headers(webhook.key, body, webhook.timestamp())
    del headers[dropped_header]
    answer = webhook.post_body(body, headers)
    assert (answer.status_code, answer.text) == (403, message + "\n")
    assert stored_events(webhook.store) == []


@pytest.mark.parametrize(
    ("signature", "timestamp", "problem"),
    [
        ("not base64!", None, f"{SIGNATURE_HEADER}: not base64"),
        (base64.b64encode(b"not DER").decode(), None, f"{SIGNATURE_HEADER}: does not match"),
        (None, "yesterday", f"{TIMESTAMP_HEADER}: 'yesterday' is not a Unix time"),
        (None, "-5", f"{TIMESTAMP_HEADER}: '-5' is not a Unix time"),
    ],
)
def test_malformed_signature_headers_are_refused(
    webhook: Webhook, signature: str | None, timestamp: str | None, problem: str
) -> None:
    body = json.dumps([event("delivered", 1)]).encode()
    headers = signed_headers(webhook.key, body, webhook.timestamp())
    if signature is not None:
        headers[SIGNATURE_HEADER] = signature
    if timestamp is not None:
        headers[TIMESTAMP_HEADER] = timestamp
    answer = webhook.post_body(body, headers)
    assert answer.status_code == 403 and answer.text.startswith(problem)
    assert stored_events(webhook.store) == []


@pytest.mark.parametrize(
    ("signed_ago", "accepted"),
    [
        (timedelta(minutes=9, seconds=59), True),
        (timedelta(minutes=10, seconds=1), False),
        (-timedelta(minutes=4, seconds=59), True),
        (-timedelta(minutes=5, seconds=1), False),
    ],
)
def test_only_a_recent_timestamp_is_accepted(
    webhook: Webhook, signed_ago: timedelta, accepted: bool
) -> None:
    body = json.dumps([event("delivered", 1)]).encode()
    signed_at = str(int((webhook.clock.now - signed_ago).timestamp()))
    answer = webhook.post_body(body, signed_headers(webhook.key, body, signed_at))
    assert answer.status_code == (200 if accepted else 403)
    assert stored_events(webhook.store) == (["delivered-1"] if accepted else [])


def test_a_captured_request_replayed_later_is_refused(webhook: Webhook) -> None:
    body = json.dumps([event("spamreport", 1)]).encode()
    headers = signed_headers(webhook.key, body, webhook.timestamp())
    webhook.clock.advance(minutes=11)

    answer = webhook.post_body(body, headers)

    assert answer.status_code == 403 and "more than 10 minutes old" in answer.text
    assert person(webhook.store, "ann@example.org") == ("active", None)


# --- the body --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'[{"event": ', "request body: not JSON (Expecting value: line 1 column 12 (char 11))"),
        (b'{"event": "open"}', "request body: a JSON dict, not an array of events"),
        (b"[" * 100_000 + b"]" * 100_000, "request body: not JSON"),
    ],
)
def test_a_signed_body_that_is_not_an_event_array_is_a_400(
    webhook: Webhook, body: bytes, message: str
) -> None:
    answer = webhook.post_body(body, signed_headers(webhook.key, body, webhook.timestamp()))
    assert answer.status_code == 400
    assert answer.text.startswith(message) and answer.text.count("\n") == 1


def test_a_body_over_the_limit_is_a_413(webhook: Webhook) -> None:
    body = b"[" + b" " * MAX_BODY_BYTES + b"]"
    headers = signed_headers(webhook.key, body, webhook.timestamp())
    declared = webhook.post_body(body, headers)
    # Sent in chunks without a Content-Length, the limit holds as the body streams in.
    streamed = webhook.client.post(
        URL, content=(body[i : i + 65536] for i in range(0, len(body), 65536)), headers=headers
    )
    for answer in (declared, streamed):
        assert answer.status_code == 413
        assert answer.text == f"request body: larger than {MAX_BODY_BYTES} bytes\n"


def test_events_without_an_id_are_skipped_and_repeats_in_one_batch_count_once(
    webhook: Webhook,
) -> None:
    issue = {"issue_id": str(webhook.issue_id)}
    sent = [
        event("open", 1, **issue),
        event("open", 1, **issue),
        {"event": "open", "email": "ann@example.org", **issue},
        {"event": "open", "sg_event_id": "", **issue},
        "not an event",
    ]
    answer = webhook.post(sent)
    assert (answer.status_code, answer.json()) == (200, {"events": 2, "new": 1})
    assert webhook.counts()["open"] == 1


# --- what each event does --------------------------------------------------------------------


def test_a_retried_delivery_changes_nothing(webhook: Webhook) -> None:
    args = {"issue_id": str(webhook.issue_id), "subscriber_id": str(webhook.ann)}
    sent = [event("delivered", 1, **args), event("unsubscribe", 2, **args)]
    first = webhook.post(sent)
    webhook.clock.advance(minutes=30)  # SendGrid retries with a fresh signature

    again = webhook.post(sent)

    assert first.json() == {"events": 2, "new": 2}
    assert (again.status_code, again.json()) == (200, {"events": 2, "new": 0})
    assert stored_events(webhook.store) == ["delivered-1", "unsubscribe-2"]
    assert webhook.counts()["delivered"] == 1
    assert unsubscribe_notes(webhook.store, webhook.ann) == ["sendgrid unsubscribe"]


def test_a_retried_bounce_does_not_undo_a_later_reactivation(webhook: Webhook) -> None:
    sent = [event("bounce", 1, type="bounce")]
    webhook.post(sent)
    with webhook.store.transaction() as conn:
        service.add_subscriber(
            conn,
            "ann@example.org",
            list_name="weekly",
            consent="new address works",
            now=START,
            reactivate=True,
        )
    webhook.clock.advance(hours=3)

    webhook.post(sent)

    assert person(webhook.store, "ann@example.org") == ("active", None)


def test_a_bounce_suppresses_the_address_and_marks_the_person_bounced(webhook: Webhook) -> None:
    webhook.post([event("bounce", 1, type="bounce", issue_id=str(webhook.issue_id))])
    assert person(webhook.store, "ann@example.org") == ("bounced", "bounce")
    # The person did not object: their subscriptions stay, the suppression keeps mail away.
    assert subscriptions(webhook.store, webhook.ann) == {"weekly": "active", "alerts": "active"}
    with webhook.store.engine.connect() as conn:
        assert [r.email for r in service.audience(conn, "weekly")] == ["bob@example.org"]
    assert webhook.counts()["bounce"] == 1


def test_a_block_is_counted_but_suppresses_nothing(webhook: Webhook) -> None:
    webhook.post([event("bounce", 1, type="blocked", issue_id=str(webhook.issue_id))])
    assert person(webhook.store, "ann@example.org") == ("active", None)
    assert (webhook.counts()["blocked"], webhook.counts()["bounce"]) == (1, 0)


def test_a_dropped_message_suppresses_the_address(webhook: Webhook) -> None:
    webhook.post([event("dropped", 1, reason="Invalid", issue_id=str(webhook.issue_id))])
    assert person(webhook.store, "ann@example.org") == ("unsubscribed", "dropped")
    assert webhook.counts()["dropped"] == 1


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("Bounced Address", ("bounced", "bounce")),
        ("Spam Reporting Address", ("complained", "spamreport")),
        ("Unsubscribed Address", ("unsubscribed", "dropped")),
        ("Spam Content (if Spam Checker app is enabled)", ("active", None)),
        ("Invalid SMTPAPI header", ("active", None)),
        ("Recipient List over Package Quota", ("active", None)),
    ],
)
def test_a_drop_suppresses_only_when_its_reason_is_the_address(
    webhook: Webhook, reason: str, expected: tuple[str, str | None]
) -> None:
    webhook.post([event("dropped", 1, reason=reason, issue_id=str(webhook.issue_id))])
    assert person(webhook.store, "ann@example.org") == expected
    assert webhook.counts()["dropped"] == 1


def _outbox_row(webhook: Webhook, state: str) -> int:
    """Ann's outbox row of the webhook's issue, in `state` (as a crash or a timeout left it)."""
    webhook.store.queue_recipients(
        webhook.issue_id, [QueuedRecipient(webhook.ann, "ann@example.org", ())], now=START
    )
    (row,) = webhook.store.claim_queued(webhook.issue_id, 1, now=START)
    if state != "sending":
        webhook.store.record_results([SendResult(str(row.id), state, error="no answer")], now=START)
    return row.id


def _row_state(webhook: Webhook, row_id: int) -> str:
    with webhook.store.engine.connect() as connection:
        return connection.execute(sa.select(outbox.c.state).where(outbox.c.id == row_id)).scalar()


@pytest.mark.parametrize("left", ["unknown", "sending"])
def test_an_event_about_a_message_settles_its_unknown_row_as_sent(
    webhook: Webhook, left: str
) -> None:
    row_id = _outbox_row(webhook, left)
    ids = {"issue_id": str(webhook.issue_id), "subscriber_id": str(webhook.ann)}
    webhook.post([event("processed", 1, delivery_id=str(row_id), **ids)])

    assert _row_state(webhook, row_id) == "sent"
    # A late answer from the send itself no longer changes it.
    webhook.store.record_results([SendResult(str(row_id), "unknown")], now=START)
    assert _row_state(webhook, row_id) == "sent"
    with webhook.store.engine.connect() as connection:
        outbox_error = connection.execute(
            sa.select(outbox.c.last_error).where(outbox.c.id == row_id)
        ).scalar()
    assert outbox_error == ""


def test_an_event_settles_nothing_that_is_not_its_own_row(webhook: Webhook) -> None:
    row_id = _outbox_row(webhook, "unknown")
    webhook.post(
        [
            # Another subscriber's copy, another issue, and a failed row are left alone.
            event("delivered", 1, delivery_id=str(row_id), issue_id=str(webhook.issue_id),
                  subscriber_id=str(webhook.bob)),
            event("delivered", 2, delivery_id=str(row_id), issue_id=str(webhook.issue_id + 1),
                  subscriber_id=str(webhook.ann)),
            event("delivered", 3, delivery_id=str(row_id)),
        ]
    )  # fmt: skip
    assert _row_state(webhook, row_id) == "unknown"

    failed = _outbox_row_failed(webhook)
    webhook.post(
        [event("delivered", 4, delivery_id=str(failed), issue_id=str(webhook.issue_id),
               subscriber_id=str(webhook.bob))]
    )  # fmt: skip
    assert _row_state(webhook, failed) == "failed"


def _outbox_row_failed(webhook: Webhook) -> int:
    webhook.store.queue_recipients(
        webhook.issue_id, [QueuedRecipient(webhook.bob, "bob@example.org", ())], now=START
    )
    (row,) = webhook.store.claim_queued(webhook.issue_id, 1, now=START)
    webhook.store.record_results([SendResult(str(row.id), "failed", error="550")], now=START)
    return row.id


def test_a_spam_report_suppresses_and_ends_every_subscription(webhook: Webhook) -> None:
    webhook.post([event("spamreport", 1, email="Ann@Example.org")])
    assert person(webhook.store, "ann@example.org") == ("complained", "spamreport")
    assert subscriptions(webhook.store, webhook.ann) == {
        "weekly": "unsubscribed",
        "alerts": "unsubscribed",
    }
    assert person(webhook.store, "bob@example.org") == ("active", None)


@pytest.mark.parametrize("kind", ["unsubscribe", "group_unsubscribe"])
def test_an_unsubscribe_ends_only_the_list_the_message_was_for(webhook: Webhook, kind: str) -> None:
    args = {"issue_id": str(webhook.issue_id), "subscriber_id": str(webhook.ann)}
    answer = webhook.post([event(kind, 1, **args)])
    assert answer.status_code == 200
    assert subscriptions(webhook.store, webhook.ann) == {
        "weekly": "active",
        "alerts": "unsubscribed",
    }
    assert unsubscribe_notes(webhook.store, webhook.ann) == [f"sendgrid {kind}"]
    assert person(webhook.store, "ann@example.org") == ("active", None)


@pytest.mark.parametrize(
    "args",
    [
        {"issue_id": "999", "subscriber_id": "1"},  # no such issue
        {"issue_id": "ISSUE", "subscriber_id": "1"},  # not an id
        {"issue_id": "1", "subscriber_id": "999"},  # no such subscriber
        {"issue_id": "1", "subscriber_id": str(2**40)},  # too large for any row
        {"issue_id": "1"},  # no subscriber named
        {},  # not one of our messages
    ],
)
def test_events_naming_unknown_issues_or_subscribers_are_accepted_and_ignored(
    webhook: Webhook, args: dict[str, str]
) -> None:
    sent = [event("unsubscribe", 1, **args), event("open", 2, **args)]
    answer = webhook.post(sent)
    assert (answer.status_code, answer.json()) == (200, {"events": 2, "new": 2})
    assert subscriptions(webhook.store, webhook.ann) == {"weekly": "active", "alerts": "active"}
    assert unsubscribe_notes(webhook.store, webhook.ann) == []


def test_an_invalid_address_in_a_bounce_is_recorded_and_ignored(webhook: Webhook) -> None:
    answer = webhook.post([event("bounce", 1, email="not an address"), event("bounce", 2)])
    assert (answer.status_code, answer.json()) == (200, {"events": 2, "new": 2})
    assert person(webhook.store, "ann@example.org") == ("bounced", "bounce")


# --- configuration and status ----------------------------------------------------------------


def test_without_a_key_the_endpoint_is_not_enabled(tmp_path: Path) -> None:
    store = Store.open(build_settings(tmp_path).database_url)
    with open_app(tmp_path, store, Clock(), {}) as client:
        answer = client.post(URL, content=b"[]")
        assert answer.status_code == 404
        assert answer.text == "the SendGrid event webhook is not enabled\n"
    store.engine.dispose()


@pytest.mark.parametrize(
    "key",
    [
        "not a key",
        base64.b64encode(b"not DER").decode(),
        # A valid public key of the wrong kind (P-384) is refused too.
        public_key_text(ec.generate_private_key(ec.SECP384R1())),
    ],
)
def test_a_bad_key_stops_the_app_with_one_line(tmp_path: Path, key: str) -> None:
    store = Store.open(build_settings(tmp_path).database_url)
    with pytest.raises(ConfigError) as raised:
        build_public_app(tmp_path, store, Clock(), {PUBLIC_KEY_VARIABLE: key})
    assert str(raised.value).startswith(f"{PUBLIC_KEY_VARIABLE}: not ")
    assert "\n" not in str(raised.value)
    store.engine.dispose()


def test_a_pem_key_works_too(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    store = Store.open(build_settings(tmp_path).database_url)
    clock = Clock()
    body = b"[]"
    with open_app(tmp_path, store, clock, {PUBLIC_KEY_VARIABLE: pem.decode()}) as client:
        headers = signed_headers(key, body, str(int(clock.now.timestamp())))
        assert client.post(URL, content=body, headers=headers).status_code == 200
    store.engine.dispose()


def test_status_shows_the_issues_event_counts(webhook: Webhook) -> None:
    issue = {"issue_id": str(webhook.issue_id)}
    webhook.post([event("delivered", 1, **issue), event("open", 2, **issue)])
    config = ["--config", str(webhook.root / "digest.toml")]

    shown = CliRunner().invoke(cli_app, [*config, "status", str(webhook.issue_id), "--json"])

    assert shown.exit_code == 0, shown.stderr
    status = json.loads(shown.stdout)
    assert status["issue_id"] == webhook.issue_id and status["sent"] == 0
    assert status["events"]["delivered"] == 1 and status["events"]["open"] == 1
    text = CliRunner().invoke(cli_app, [*config, "status", str(webhook.issue_id)])
    assert "events: delivered: 1, open: 1, click: 0" in text.stderr


# --- the store, on every backend -------------------------------------------------------------


def provider_event_row(event_id: str, kind: str, issue_id: int | None) -> ProviderEvent:
    return ProviderEvent(event_id, kind, issue_id, None, "ann@example.org", START, "{}")


def test_recording_events_is_idempotent(database_url: str) -> None:
    store = Store.open(database_url)
    try:
        batch: Sequence[ProviderEvent] = [
            provider_event_row("a", "open", 7),
            provider_event_row("b", "click", 7),
            provider_event_row("c", "open", 8),
        ]
        assert store.record_provider_events(batch) == list(batch)
        assert store.record_provider_events([*batch, provider_event_row("d", "open", 7)]) == [
            provider_event_row("d", "open", 7)
        ]
        assert store.issue_event_counts(7) == {
            "delivered": 0,
            "open": 2,
            "click": 1,
            "deferred": 0,
            "bounce": 0,
            "dropped": 0,
            "spamreport": 0,
        }
        assert store.issue_event_counts(9)["open"] == 0
    finally:
        store.engine.dispose()


def test_events_with_nul_characters_are_stored_on_every_backend(database_url: str) -> None:
    body = json.dumps(
        [event("open", 1, email="ann\x00@example.org", note="\x00"), event("open\x00", 2)]
    ).encode()
    store = Store.open(database_url)
    try:
        events = parse_events(body, now=START)
        assert [e.email for e in events] == ["ann@example.org"]
        assert store.record_provider_events(events) == events
    finally:
        store.engine.dispose()
