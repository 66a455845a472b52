"""The SendGrid event webhook against a replaying or splicing attacker.

Unsigned, wrongly signed, one-byte-changed and old requests are refused in
tests/web/test_webhooks.py. A captured request sent again *within* the ten minutes a signature
is fresh is accepted, by design (SendGrid itself retries); these tests prove it acts once.
"""

from __future__ import annotations

import json

from subscribers import service
from subscribers.models import Consent
from tests.security.site import ACTIVE, WEBHOOK_KEY, FullSite
from tests.web.test_webhooks import URL, signed_headers


def captured_request(site: FullSite) -> tuple[bytes, dict[str, str]]:
    """An unsubscribe event for Ann, and a bounce for another address, signed now."""
    args = {"issue_id": str(site.issue_id), "subscriber_id": str(site.ann)}
    events = [
        {"event": "unsubscribe", "sg_event_id": "u-1", "email": ACTIVE, **args},
        {"event": "bounce", "type": "bounce", "sg_event_id": "b-1", "email": "gone@example.org"},
    ]
    body = json.dumps(events).encode() + b"\r\n"
    timestamp = str(int(site.clock().timestamp()))
    return body, signed_headers(WEBHOOK_KEY, body, timestamp)


def status_of_ann(site: FullSite) -> str:
    with site.store.engine.connect() as connection:
        found = service.find_subscription(connection, site.ann, "weekly")
    assert found is not None
    return found.status


def test_a_request_replayed_within_the_window_is_accepted_and_acts_once(
    full_site: FullSite,
) -> None:
    """Attack: capture a signed request (an unsubscribe) and send the identical bytes again
    within the ten minutes, after the reader has subscribed again, to unsubscribe them
    against their will. The replay is answered 200 (SendGrid must not retry it) but records
    and changes nothing: each event id acts once."""
    body, headers = captured_request(full_site)
    first = full_site.client.post(URL, content=body, headers=headers)
    assert (first.status_code, first.json()) == (200, {"events": 2, "new": 2})
    assert status_of_ann(full_site) == "unsubscribed"
    with full_site.store.transaction() as connection:
        service.subscribe(
            connection,
            ACTIVE,
            list_name="weekly",
            consent=Consent(source="form:/subscribe/weekly"),
            now=full_site.clock(),
        )
        service.confirm(
            connection,
            full_site.ann,
            "weekly",
            email=ACTIVE,
            consent=Consent(source="form:/confirm"),
            now=full_site.clock(),
        )
    assert status_of_ann(full_site) == "active"
    before = full_site.snapshot()
    full_site.clock.advance(minutes=9, seconds=59)

    replayed = full_site.client.post(URL, content=body, headers=headers)

    assert (replayed.status_code, replayed.json()) == (200, {"events": 2, "new": 0})
    assert full_site.snapshot() == before
    assert status_of_ann(full_site) == "active"


def test_a_stale_redated_or_spliced_request_is_refused_and_records_nothing(
    full_site: FullSite,
) -> None:
    """Attacks on a captured request, each refused with 403 before its events are read, so
    not even unseen events in it are recorded:
    - replayed once its signature is more than ten minutes old;
    - replayed later with a fresh timestamp header written over the old one (the timestamp
      is part of what is signed);
    - its signature and timestamp sent with another body of the same length (another
      subscriber id): the signature covers every byte."""
    body, headers = captured_request(full_site)
    own, other = (f'"subscriber_id": "{n}"'.encode() for n in (full_site.ann, full_site.pat))
    spliced = body.replace(own, other)
    assert spliced != body and len(spliced) == len(body)
    before = full_site.snapshot()

    spliced_answer = full_site.client.post(URL, content=spliced, headers=headers)
    full_site.clock.advance(minutes=10, seconds=1)
    stale = full_site.client.post(URL, content=body, headers=headers)
    fresh = str(int(full_site.clock().timestamp()))
    redated = full_site.client.post(
        URL, content=body, headers={**headers, "X-Twilio-Email-Event-Webhook-Timestamp": fresh}
    )

    assert (spliced_answer.status_code, stale.status_code, redated.status_code) == (403,) * 3
    assert "does not match the body" in spliced_answer.text
    assert "more than 10 minutes old" in stale.text
    assert "does not match the body" in redated.text
    assert full_site.snapshot() == before
