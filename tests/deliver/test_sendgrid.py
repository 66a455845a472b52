"""The SendGrid backend: the real sendgrid client against a fake v3 API on 127.0.0.1."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from digest.cli import app
from digest.config import load_settings
from digest.deliver.backends import backend_from_url
from digest.deliver.message import list_id, message_id, unsubscribe_headers
from digest.deliver.outbox import SendReport, deliver_issue
from digest.deliver.sendgrid import SendGridBackend
from digest.deliver.sendgrid_requests import plan_requests, tracking_args
from digest.errors import ConfigError, DeliveryError
from digest.messages import MessageFactory
from digest.models import OutgoingMessage, SharedBody
from digest.pipeline import send_issue
from digest.render import RenderContext, personalise, render_issue
from digest.render.environment import template_environment
from digest.render.issue import RenderedIssue
from digest.render.markers import marker
from digest.store import OutboxRow, Store
from digest.web.webhooks import EventWebhook, parse_events, receive_events
from subscribers.service import audience
from tests.deliver.test_outbox import queued_issue, readers
from tests.fake_sendgrid import FakeSendGrid
from tests.render.sample_issue import sample_issue

NOW = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)
SENDER = "Weekly News <digest@news.example.org>"
DOMAIN = "news.example.org"
KEY = "SG.test-key-never-logged"
NONCE = "00112233aabbccdd"


def clock() -> datetime:
    return NOW


@pytest.fixture
def fake() -> Iterator[FakeSendGrid]:
    with FakeSendGrid(KEY) as server:
        yield server


def backend_for(fake: FakeSendGrid, **options: object) -> SendGridBackend:
    return SendGridBackend(api_key=KEY, host=fake.url, timeout=5.0, **options)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def variants() -> tuple[RenderedIssue, RenderedIssue]:
    """Two real rendered variants of a 30-article issue (all topics, and two sections)."""
    env = template_environment(None)
    context = RenderContext(publication="Weekly News", base_url="https://news.example.org")
    issue = sample_issue(30, hostile=True)
    two_sections = replace(issue, sections=issue.sections[:2])
    return (
        render_issue(issue, template="digest", env=env, context=context),
        render_issue(two_sections, template="digest", env=env, context=context),
    )


def personal_values(number: int, name: str = "") -> dict[str, str]:
    return {
        "email": f"reader{number}@example.com",
        "name": name,
        "unsubscribe_url": f"https://news.example.org/u/{number}.weekly.sig?a=1&b=2",
        "preferences_url": f"https://news.example.org/p/{number}.weekly.sig",
    }


def message_for(rendered: RenderedIssue, number: int, name: str = "") -> OutgoingMessage:
    """A reader's message as MessageFactory builds it: personalised, with its shared body."""
    values = personal_values(number, name)
    html, text = personalise(rendered, values)
    return OutgoingMessage(
        delivery_id=str(number),
        to=values["email"],
        sender=SENDER,
        subject=rendered.subject,
        html=html,
        text=text,
        headers={
            "Message-ID": message_id(DOMAIN, 7, number),
            "List-Id": list_id("Weekly News", "weekly", DOMAIN),
            **unsubscribe_headers(values["unsubscribe_url"], f"digest+u{number}@{DOMAIN}"),
        },
        shared=SharedBody(rendered.nonce, rendered.html, rendered.text),
        personal=values,
    )


def handmade_variant() -> RenderedIssue:
    """Markers with and without defaults, in html and text."""
    html = (
        f"<p>Hello {marker(NONCE, 'name', 'there &amp; all')},</p>"
        f'<a href="{marker(NONCE, "unsubscribe_url")}">Unsubscribe</a> '
        f"<span>{marker(NONCE, 'email')}</span> {marker(NONCE, 'name')}"
    )
    text = (
        f"Hello {marker(NONCE, 'name', 'there & all')},\n"
        f"Unsubscribe: {marker(NONCE, 'unsubscribe_url')}\n{marker(NONCE, 'email')}\n"
    )
    return RenderedIssue("Week 10", "", html, text, len(html), NONCE)


# --- batching and bodies -----------------------------------------------------------------


async def test_readers_of_a_variant_share_requests_of_at_most_1000(
    fake: FakeSendGrid, variants: tuple[RenderedIssue, RenderedIssue]
) -> None:
    everything, two_sections = variants
    batch = [message_for(everything, n) for n in range(2500)]
    batch += [message_for(two_sections, n) for n in range(2500, 2800)]

    results = await backend_for(fake).send(batch, date=NOW)

    assert sorted(r.personalizations for r in fake.requests) == [300, 500, 1000, 1000]
    assert {r.state for r in results} == {"sent"}
    assert len({r.delivery_id for r in results}) == 2800
    assert fake.stats()["duplicates"] == 0 and fake.stats()["distinct"] == 2800
    provider_ids = {r.provider_id for r in results}
    assert len(provider_ids) == 4 and "" not in provider_ids


async def test_each_reader_gets_exactly_what_personalise_gives_them(
    fake: FakeSendGrid, variants: tuple[RenderedIssue, RenderedIssue]
) -> None:
    handmade = handmade_variant()
    names = ["", 'Ann <b>&</b> "Bo" O\'Neil', "  ", "Zoë"]
    batch = [message_for(handmade, n, names[n % 4]) for n in range(8)]
    batch += [message_for(variants[0], n) for n in range(8, 12)]  # hostile article text

    await backend_for(fake).send(batch, date=NOW)

    assert len(fake.deliveries) == len(batch)
    for message in batch:
        [got] = fake.received(message.to)
        assert (got.html, got.text, got.subject) == (message.html, message.text, message.subject)
        assert "%%digest-" + (message.shared.nonce if message.shared else "") not in got.html
    ann = fake.received("reader1@example.com")[0]
    assert "Hello Ann &lt;b&gt;&amp;&lt;/b&gt; &quot;Bo&quot; O&#x27;Neil," in ann.html
    assert 'Hello Ann <b>&</b> "Bo" O\'Neil,' in ann.text
    blank = fake.received("reader0@example.com")[0]
    assert "Hello there &amp; all," in blank.html and "Hello there & all," in blank.text
    assert "?a=1&amp;b=2" in blank.html and "?a=1&b=2" in blank.text


async def test_events_map_back_through_custom_args_and_the_list_category(
    fake: FakeSendGrid, variants: tuple[RenderedIssue, RenderedIssue]
) -> None:
    batch = [message_for(variants[0], n) for n in (3, 4)]
    await backend_for(fake).send(batch, date=NOW)
    got = fake.received("reader4@example.com")[0]
    assert got.custom_args == {"delivery_id": "4", "issue_id": "7", "subscriber_id": "4"}
    assert got.categories == ("weekly",)
    assert got.sender == {"email": "digest@news.example.org", "name": "Weekly News"}


async def test_each_reader_s_headers_arrive_and_shared_ones_are_sent_once(
    fake: FakeSendGrid, variants: tuple[RenderedIssue, RenderedIssue]
) -> None:
    batch = [message_for(variants[0], n) for n in (1, 2)]
    [request] = plan_requests(batch)
    assert set(request.body["headers"]) == {"List-Id", "List-Unsubscribe-Post"}  # type: ignore[arg-type]
    personalization = request.body["personalizations"][0]  # type: ignore[index]
    assert set(personalization["headers"]) == {"Message-ID", "List-Unsubscribe"}

    await backend_for(fake).send(batch, date=NOW)
    for message in batch:
        [got] = fake.received(message.to)
        assert got.headers == message.headers


async def test_a_message_without_a_shared_body_goes_alone_as_rendered(
    fake: FakeSendGrid,
) -> None:
    notice = OutgoingMessage(
        "n1", "ann@example.com", SENDER, "Confirm", "<p>Hi</p>", "Hi\n", {"Reply-To": SENDER}
    )
    results = await backend_for(fake).send([notice, replace(notice, delivery_id="n2")], date=NOW)
    assert [r.state for r in results] == ["sent", "sent"]
    assert [r.personalizations for r in fake.requests] == [1, 1]
    got = fake.received("ann@example.com")[0]
    assert (got.html, got.text) == ("<p>Hi</p>", "Hi\n")
    assert got.reply_to == {"email": "digest@news.example.org", "name": "Weekly News"}


async def test_one_address_twice_in_a_batch_goes_in_two_requests(
    fake: FakeSendGrid, variants: tuple[RenderedIssue, RenderedIssue]
) -> None:
    twice = [message_for(variants[0], 1), replace(message_for(variants[0], 1), delivery_id="b")]
    results = await backend_for(fake).send(twice, date=NOW)
    assert [r.state for r in results] == ["sent", "sent"]
    assert [r.personalizations for r in fake.requests] == [1, 1]


# --- limits ------------------------------------------------------------------------------


async def test_requests_are_split_to_stay_under_the_size_limit(
    variants: tuple[RenderedIssue, RenderedIssue],
) -> None:
    limit = 400_000  # the real limit is 30 MB; the rule is the same
    batch = [message_for(variants[0], n) for n in range(600)]
    with FakeSendGrid(KEY, max_request_bytes=limit) as fake:
        results = await backend_for(fake, max_request_bytes=limit).send(batch, date=NOW)
        assert {r.state for r in results} == {"sent"}
        assert len(fake.requests) > 1 and all(r.size <= limit for r in fake.requests)
        assert fake.stats()["distinct"] == 600
        assert fake.received("reader599@example.com")[0].html == batch[599].html


async def test_a_request_over_sendgrid_s_limit_fails_with_its_message(
    variants: tuple[RenderedIssue, RenderedIssue],
) -> None:
    with FakeSendGrid(KEY, max_request_bytes=50_000) as fake:
        results = await backend_for(fake).send([message_for(variants[0], 1)], date=NOW)
    assert results[0].state == "failed" and "sendgrid 413" in results[0].error
    assert "too large" in results[0].error


async def test_substitutions_over_10000_bytes_send_that_reader_fully_rendered(
    fake: FakeSendGrid,
) -> None:
    long_name = "N" * 12_000
    batch = [message_for(handmade_variant(), 1, long_name), message_for(handmade_variant(), 2)]
    results = await backend_for(fake).send(batch, date=NOW)
    assert [r.state for r in results] == ["sent", "sent"]
    assert sorted(r.personalizations for r in fake.requests) == [1, 1]
    assert fake.received("reader1@example.com")[0].html == batch[0].html


# --- answers -----------------------------------------------------------------------------


async def test_a_bad_address_fails_alone_and_the_others_are_sent(
    fake: FakeSendGrid, variants: tuple[RenderedIssue, RenderedIssue]
) -> None:
    batch = [message_for(variants[0], n) for n in range(5)]
    batch[2] = replace(batch[2], to="not-an-address")
    results = {r.delivery_id: r for r in await backend_for(fake).send(batch, date=NOW)}
    assert results["2"].state == "failed"
    assert results["2"].error == "sendgrid 400: Does not contain a valid address."
    assert [results[n].state for n in "0134"] == ["sent"] * 4
    assert [r.status for r in fake.requests] == [400, 202]
    assert fake.stats()["distinct"] == 4


async def test_a_400_about_the_whole_request_fails_every_message_with_its_reason(
    fake: FakeSendGrid, variants: tuple[RenderedIssue, RenderedIssue]
) -> None:
    batch = [replace(message_for(variants[0], n), sender="Digest <nobody>") for n in range(3)]
    results = await backend_for(fake).send(batch, date=NOW)
    assert {r.state for r in results} == {"failed"}
    assert results[0].error == "sendgrid 400: The from email does not contain a valid address."


async def test_a_wrong_key_stops_the_send_and_gives_the_rows_back(
    fake: FakeSendGrid, store: Store
) -> None:
    issue_id = queued_issue(store, readers(3))
    backend = SendGridBackend(api_key="SG.wrong", host=fake.url, timeout=5.0)
    with pytest.raises(DeliveryError, match="sendgrid 401: The provided authorization grant"):
        await deliver_issue(store, issue_id, plain_message, backend, clock=clock, retry_delay=0)
    assert store.outbox_counts(issue_id)["queued"] == 3
    assert fake.stats()["recipients"] == 0


@pytest.mark.parametrize(
    ("fault", "state", "received"),
    [
        ("429", "queued", 0),
        ("500", "queued", 0),
        ("503", "queued", 0),
        ("502", "unknown", 0),  # a gateway gave up; SendGrid behind it may have taken it
        ("drop", "unknown", 2),  # taken, then the answer was lost
        ("drop-unaccepted", "unknown", 0),  # from here it looks the same
    ],
)
async def test_transient_and_ambiguous_answers(
    fake: FakeSendGrid,
    variants: tuple[RenderedIssue, RenderedIssue],
    fault: str,
    state: str,
    received: int,
) -> None:
    fake.fail_next(fault)  # type: ignore[arg-type]
    batch = [message_for(variants[0], n) for n in (1, 2)]
    results = await backend_for(fake).send(batch, date=NOW)
    assert [r.state for r in results] == [state, state]
    assert results[0].error.startswith("sendgrid ")
    assert fake.stats()["recipients"] == received


async def test_a_429_passes_retry_after_on(
    fake: FakeSendGrid, variants: tuple[RenderedIssue, RenderedIssue]
) -> None:
    fake.fail_next("429", retry_after=7)
    [result] = await backend_for(fake).send([message_for(variants[0], 1)], date=NOW)
    assert (result.state, result.retry_after) == ("queued", 7.0)
    assert result.error == "sendgrid 429: too many requests; Retry-After: 7"


async def test_no_answer_within_the_timeout_is_unknown(
    variants: tuple[RenderedIssue, RenderedIssue],
) -> None:
    with FakeSendGrid(KEY, slow_seconds=1.0) as fake:
        fake.fail_next("slow")
        backend = SendGridBackend(api_key=KEY, host=fake.url, timeout=0.2)
        [result] = await backend.send([message_for(variants[0], 1)], date=NOW)
    assert result.state == "unknown" and "no answer after sending" in result.error


async def test_a_server_that_is_not_there_leaves_the_messages_queued(
    variants: tuple[RenderedIssue, RenderedIssue],
) -> None:
    with FakeSendGrid(KEY) as fake:
        gone = fake.url
    backend = SendGridBackend(api_key=KEY, host=gone, timeout=2.0)
    [result] = await backend.send([message_for(variants[0], 1)], date=NOW)
    assert result.state == "queued" and "refused" in result.error.lower()


def plain_message(row: OutboxRow) -> OutgoingMessage:
    return OutgoingMessage(
        delivery_id=str(row.id),
        to=row.email,
        sender=SENDER,
        subject="Week 10",
        html="<p>Week 10</p>",
        text="Week 10\n",
        headers={"Message-ID": message_id(DOMAIN, row.issue_id, row.subscriber_id)},
    )


async def test_with_one_request_in_five_failing_nobody_gets_two_copies(
    fake: FakeSendGrid, store: Store
) -> None:
    issue_id = queued_issue(store, readers(300))
    fake.fail_randomly(0.2, ["429", "500", "drop", "drop-unaccepted"], seed=3)
    backend = backend_for(fake)
    report = await deliver_issue(
        store, issue_id, plain_message, backend, clock=clock, batch_size=10, retry_delay=0
    )
    while report.queued:  # a run stops when a batch is still refused after its retries
        report = await deliver_issue(
            store, issue_id, plain_message, backend, clock=clock, batch_size=10, retry_delay=0
        )
    stats = fake.stats()
    assert stats["duplicates"] == 0
    assert report.sent + report.unknown == 300 and report.unknown > 0
    assert report.sent <= stats["distinct"] <= 300


# --- configuration -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("sendgrid://", "https://api.sendgrid.com"),
        ("sendgrid://api.eu.sendgrid.com", "https://api.eu.sendgrid.com"),
        ("sendgrid://127.0.0.1:8025?tls=0&timeout=5", "http://127.0.0.1:8025"),
        ("sendgrid://?host=http://127.0.0.1:8080", "http://127.0.0.1:8080"),
    ],
)
def test_sendgrid_urls(url: str, host: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENDGRID_API_KEY", KEY)
    backend = backend_from_url(url)
    assert isinstance(backend, SendGridBackend) and backend.host == host


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sendgrid://127.0.0.1:eighty?tls=0", "eighty"),
        ("sendgrid://?tls=0", "name it"),
        ("sendgrid://host?tls=no", "must be 0 or 1"),
        ("sendgrid://?host=ftp://x", "not an http(s)"),
        ("sendgrid://h?connections=0", "connections"),
        ("sendgrid://h?retries=3", "unknown option 'retries'"),
        (f"sendgrid://apikey:{KEY}@api.sendgrid.com", "SENDGRID_API_KEY, not in the url"),
    ],
)
def test_a_bad_sendgrid_url_is_one_line(
    url: str, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SENDGRID_API_KEY", KEY)
    with pytest.raises(ConfigError) as raised:
        backend_from_url(url)
    assert expected in str(raised.value)
    assert KEY not in str(raised.value) and "\n" not in str(raised.value)


def test_without_a_key_the_url_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SENDGRID_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="set SENDGRID_API_KEY"):
        backend_from_url("sendgrid://")


async def test_the_api_key_is_never_logged(
    fake: FakeSendGrid,
    variants: tuple[RenderedIssue, RenderedIssue],
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake.fail_next("500")
    with caplog.at_level(logging.DEBUG):
        backend = backend_for(fake)
        for _attempt in range(2):
            await backend.send([message_for(variants[0], 1)], date=NOW)
    assert caplog.records  # something was logged, just not the key
    assert KEY not in caplog.text


def test_tracking_args_read_our_message_id() -> None:
    message = OutgoingMessage(
        "12", "a@example.com", SENDER, "s", "h", "t", {"Message-ID": message_id(DOMAIN, 5, 99)}
    )
    assert tracking_args(message) == {"delivery_id": "12", "issue_id": "5", "subscriber_id": "99"}


# --- end to end --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("demo") / "digest-demo"
    result = CliRunner().invoke(app, ["demo", str(folder), "--json"])
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


async def test_the_demo_issue_reaches_every_subscriber_once_through_sendgrid(
    demo: dict, fake: FakeSendGrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_settings(Path(demo["folder"]) / "digest.toml", {})
    store = Store.open(settings.database_url)
    issue = store.load_issue(demo["issue_id"])
    assert issue is not None
    again, _created = store.save_issue(replace(issue, id=None, period_key="sendgrid-week"))
    assert again.id is not None
    monkeypatch.setenv("SENDGRID_API_KEY", KEY)

    report = await send_issue(
        settings, store, again.id, backend_from_url(fake.mail_url), clock=clock
    )

    with store.transaction() as connection:
        people = {r.email: r for r in audience(connection, "weekly")}
    assert (report.sent, report.failed, report.unknown, report.queued) == (len(people), 0, 0, 0)
    assert sorted(fake.addresses) == sorted(people) and set(fake.addresses.values()) == {1}
    assert len(fake.requests) < len(people)  # readers of a variant share a request
    factory = MessageFactory(settings, again)
    for delivery in fake.deliveries:
        person = people[delivery.to]
        row = OutboxRow(
            id=int(delivery.custom_args["delivery_id"]),
            issue_id=again.id,
            subscriber_id=int(delivery.custom_args["subscriber_id"]),
            email=person.email,
            topics=person.topics,
            state="sending",
            attempts=1,
        )
        expected = factory(row)
        assert (delivery.html, delivery.text) == (expected.html, expected.text)
        assert delivery.headers == expected.headers
        assert delivery.custom_args["issue_id"] == str(again.id)


async def test_with_faults_events_then_retry_unknown_everyone_gets_exactly_one_copy(
    fake: FakeSendGrid, store: Store
) -> None:
    """20% of requests fail (refused, or the answer lost before or after SendGrid took it).
    SendGrid's events about what it took settle those rows; the rest are retried."""
    issue_id = queued_issue(store, readers(400))
    fake.fail_randomly(0.2, ["429", "500", "503", "drop", "drop-unaccepted"], seed=11)
    backend = backend_for(fake)

    async def send_until_nothing_is_queued() -> SendReport:
        while True:
            report = await deliver_issue(
                store, issue_id, plain_message, backend, clock=clock, batch_size=20, retry_delay=0
            )
            if not report.queued:
                return report

    first = await send_until_nothing_is_queued()
    assert first.unknown > 0  # some answers were lost: those rows are held, not resent
    webhook = EventWebhook(public_key=None, store=store, lists_by_digest={})  # type: ignore[arg-type]
    body = json.dumps(fake.events(timestamp=int(NOW.timestamp()))).encode()
    receive_events(webhook, parse_events(body, now=NOW))
    settled = store.outbox_counts(issue_id)
    assert settled["sent"] == fake.stats()["distinct"]  # every taken message is now `sent`

    fake.fail_randomly(0.0, [])
    store.requeue(issue_id, ("unknown", "sending"), now=NOW)
    final = await send_until_nothing_is_queued()

    stats = fake.stats()
    assert (final.sent, final.unknown, final.failed) == (400, 0, 0)
    assert (stats["distinct"], stats["duplicates"]) == (400, 0)
