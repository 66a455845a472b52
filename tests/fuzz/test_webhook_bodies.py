"""The SendGrid event webhook (digest/web/webhooks.py) fed arbitrary bytes, JSON and headers.

parse_events gives events or refuses with a one-line 400 reason; provider_event turns any JSON
value into an event that fits its columns, or None; the endpoint answers 200, 400, 403 or 413,
never a 500, whatever the body, the signature and the timestamp headers say.
"""

from __future__ import annotations

import json
import tracemalloc
from datetime import UTC, datetime

import httpx
import pytest
import sqlalchemy as sa
from hypothesis import example, given, settings
from hypothesis import strategies as st

from digest.store import ProviderEvent
from digest.tables import provider_events
from digest.web.webhooks import (
    MAX_EMAIL,
    MAX_EVENT_ID,
    MAX_EVENT_NAME,
    MAX_ROW_ID,
    RAW_KEPT,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookRefused,
    parse_events,
    provider_event,
)
from tests.fuzz.hostile import FUZZ, assert_one_line
from tests.fuzz.site import WholeSite, shared_site

__all__ = ["shared_site"]

URL = "/webhooks/sendgrid"
# Tests with no database: the PostgreSQL pass skips them.
NO_DATABASE = pytest.mark.nodb
NOW = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)
# JSON text that json.loads turns into what no database stores: NUL and lone surrogates.
SNEAKY = ["\\u0000", "\\ud800", "\\udfff\\ud800", "x" * 101]
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(["bounce", "blocked", "dropped", "unsubscribe", "group_unsubscribe",
                       "spamreport", "Bounced Address", "1", "2147483648", "-1", "1e309"])
)  # fmt: skip
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=8,
)
event_objects = st.fixed_dictionaries(
    {},
    optional={
        "sg_event_id": json_values,
        "event": json_values,
        "email": json_values,
        "timestamp": json_values | st.sampled_from([10**20, -(10**20), 1e308, float("nan")]),
        "issue_id": json_values,
        "subscriber_id": json_values,
        "delivery_id": json_values,
        "reason": json_values,
        "type": json_values,
    },
)


def with_sneaky_strings(text: str, data: st.DataObject) -> str:
    """JSON text with escapes spliced into its strings that no generator of str produces."""
    for _ in range(data.draw(st.integers(0, 3))):
        quotes = [i for i, c in enumerate(text) if c == '"']
        if not quotes:
            break
        at = data.draw(st.sampled_from(quotes))
        text = text[: at + 1] + data.draw(st.sampled_from(SNEAKY)) + text[at + 1 :]
    return text


def check_event(event: ProviderEvent) -> None:
    """An event whose every field fits its column on every backend."""
    for text, limit in (
        (event.sg_event_id, MAX_EVENT_ID),
        (event.event, MAX_EVENT_NAME),
        (event.email, MAX_EMAIL),
        (event.raw, RAW_KEPT),
        (event.reason, 200),
    ):
        assert isinstance(text, str) and len(text) <= limit
        assert "\x00" not in text
        text.encode("utf-8")  # no lone surrogates
    assert event.sg_event_id and event.event
    for row_id in (event.issue_id, event.subscriber_id, event.delivery_id):
        assert row_id is None or 0 < row_id <= MAX_ROW_ID
    assert event.at.tzinfo is not None


@NO_DATABASE
@settings(FUZZ, max_examples=60)
@given(items=st.lists(event_objects | json_values, max_size=5), data=st.data())
def test_any_json_array_gives_storable_events(items: list[object], data: st.DataObject) -> None:
    body = with_sneaky_strings(json.dumps(items), data).encode()
    try:
        events = parse_events(body, now=NOW)
    except WebhookRefused as error:  # a sneaky escape can break the JSON: a clean refusal
        assert error.status == 400
        assert_one_line(error.reason, naming="request body")
        return
    assert len(events) <= len(items)
    for event in events:
        check_event(event)


@NO_DATABASE
@FUZZ
@given(body=st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()))
def test_any_body_parses_or_is_refused_with_a_400(body: bytes) -> None:
    try:
        events = parse_events(body, now=NOW)
    except WebhookRefused as error:
        assert error.status == 400
        assert_one_line(error.reason, naming="request body")
        return
    assert all(isinstance(event, ProviderEvent) for event in events)


@NO_DATABASE
@FUZZ
@given(item=event_objects | json_values)
def test_provider_event_takes_any_json_value(item: object) -> None:
    event = provider_event(item, now=NOW)
    if event is not None:
        check_event(event)


@NO_DATABASE
def test_deeply_nested_body_is_refused_with_a_400() -> None:
    refused = None
    try:
        parse_events(b"[" * 500_000, now=NOW)
    except WebhookRefused as error:
        refused = error
    assert refused is not None and refused.status == 400
    assert_one_line(refused.reason, naming="request body")


# --- the endpoint ----------------------------------------------------------------------------

header_values = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=120,
) | st.sampled_from(["999999999999", "000000000001", "-1", "1e9", "MEUCIQ==", "=", "é" * 4])


@settings(FUZZ, max_examples=80)
@example(signature="MEUCIQ==", timestamp="999999999999", body=b"[]")  # past year 9999: was a 500
@example(signature="é", timestamp="now", body=b"[]")  # not ASCII: was a 500
@given(
    signature=st.none() | header_values,
    timestamp=st.none() | header_values | st.just("now"),
    body=st.binary(max_size=200),
)
def test_forged_or_broken_requests_are_refused_never_a_500(
    shared_site: WholeSite, signature: str | None, timestamp: str | None, body: bytes
) -> None:
    headers = {}
    if signature is not None:
        headers[SIGNATURE_HEADER] = signature
    if timestamp is not None:
        headers[TIMESTAMP_HEADER] = (
            str(int(shared_site.clock.now.timestamp())) if timestamp == "now" else timestamp
        )
    answer = shared_site.client.post(
        URL, content=body, headers={k: v.encode("latin-1") for k, v in headers.items()}
    )
    assert answer.status_code == 403, answer.text
    assert_one_line(answer.text.strip(), naming="X-Twilio-Email-Event-Webhook-")


@settings(FUZZ, max_examples=40)
@given(items=st.lists(event_objects | json_values, max_size=4), data=st.data())
def test_signed_bodies_of_any_events_are_stored_never_a_500(
    shared_site: WholeSite, items: list[object], data: st.DataObject
) -> None:
    """Signed by SendGrid's key, so every check passes and the events reach the database."""
    body = with_sneaky_strings(json.dumps(items), data).encode()
    answer = shared_site.client.post(URL, content=body, headers=shared_site.signed(body))
    assert answer.status_code in (200, 400), answer.text
    if answer.status_code == 200:
        counts = answer.json()
        with shared_site.store.engine.connect() as conn:
            stored = conn.execute(sa.select(sa.func.count()).select_from(provider_events))
            assert stored.scalar_one() >= counts["new"]


def test_event_text_no_database_stores_is_cleaned_or_skipped(shared_site: WholeSite) -> None:
    """JSON escapes for a lone surrogate or NUL: an id holding one is skipped (it could not be
    stored, and would fail the whole batch with a 500), an address or reason is cleaned."""
    body = (
        b'[{"sg_event_id": "lone-\\ud800", "event": "open"},'
        b' {"sg_event_id": "nul-\\u0000", "event": "open"},'
        b' {"sg_event_id": "bad-name", "event": "bounce\\ud800"},'
        b' {"sg_event_id": "clean", "event": "open", "email": "ann\\ud800@example.org\\u0000",'
        b' "reason": "x\\udfff"}]'
    )
    answer = shared_site.client.post(URL, content=body, headers=shared_site.signed(body))
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"events": 1, "new": 1}
    with shared_site.store.engine.connect() as conn:
        stored = conn.execute(
            sa.select(provider_events.c.sg_event_id, provider_events.c.email).where(
                provider_events.c.sg_event_id.in_(["lone-", "nul-", "bad-name", "clean"])
                | provider_events.c.sg_event_id.like("lone-%")
                | provider_events.c.sg_event_id.like("nul-%")
            )
        ).all()
    assert [tuple(row) for row in stored] == [("clean", "ann?@example.org")]


async def test_an_oversized_body_is_refused_while_streaming_in_bounded_memory(
    shared_site: WholeSite,
) -> None:
    """20 MB sent in chunks without a length: refused at 1 MB, long before it is all read."""
    sent = 0

    async def chunks() -> object:
        nonlocal sent
        for _ in range(320):
            sent += 65_536
            yield b"[" + b" " * 65_535

    # httpx's ASGI transport streams the body to the app chunk by chunk, as a server does.
    transport = httpx.ASGITransport(app=shared_site.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        tracemalloc.start()
        try:
            answer = await client.post(
                URL,
                content=chunks(),
                headers=shared_site.signed(b""),  # type: ignore[arg-type]
            )
            _current, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert answer.status_code == 413
    assert_one_line(answer.text.strip(), naming="request body")
    assert sent < 2_000_000
    assert peak < 4_000_000, peak
