"""The SMTP backend against a real aiosmtpd server on 127.0.0.1, and parsing smtp:// URLs."""

from __future__ import annotations

import base64
import email
import random
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import dkim
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from digest.deliver.backends import backend_from_url
from digest.deliver.message import WIRE_POLICY, to_email_message
from digest.deliver.outbox import deliver_issue
from digest.deliver.smtp import DkimSigner, SmtpBackend, dkim_from_environment
from digest.errors import ConfigError, DeliveryError
from digest.models import OutgoingMessage
from digest.store import OutboxRow, Store
from tests.conftest import MailSink, SmtpServer, free_port
from tests.deliver.test_message import (
    TOKEN,
    UNSUBSCRIBE_URL,
    comparable,
    outgoing,
    random_variant,
    shared_message,
)
from tests.deliver.test_outbox import clock, make_message, queued_issue, readers

DATE = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)


def backend_for(server: SmtpServer, **options: Any) -> SmtpBackend:
    return SmtpBackend(host=server.host, port=server.port, timeout=5, **options)


@pytest.mark.parametrize(
    ("local", "state", "code"),
    [("reject", "failed", "550"), ("later", "queued", "451"), ("busy", "queued", "451")],
)
async def test_a_refusal_on_the_fast_path_is_settled_and_the_connection_goes_on(
    smtp_server: SmtpServer, local: str, state: str, code: str
) -> None:
    rng = random.Random(9)
    variant = random_variant(rng, 1)
    refused = replace(shared_message(rng, 1, variant), to=f"{local}@example.com")
    batch = [refused, replace(shared_message(rng, 2, variant), to="bob@example.com")]

    first, second = await backend_for(smtp_server).send(batch, date=DATE)

    assert (first.state, second.state) == (state, "sent")
    assert code in first.error and "\n" not in first.error
    assert [r.rcpt_tos for r in smtp_server.sink.received] == [["bob@example.com"]]


async def test_a_line_lost_after_a_fast_path_message_is_unknown(smtp_server: SmtpServer) -> None:
    rng = random.Random(10)
    message = replace(shared_message(rng, 1, random_variant(rng, 1)), to="drop@example.com")

    (result,) = await backend_for(smtp_server).send([message], date=DATE)

    assert result.state == "unknown"
    assert [r.rcpt_tos for r in smtp_server.sink.received] == [["drop@example.com"]]


async def test_messages_arrive_with_their_envelope_and_headers(smtp_server: SmtpServer) -> None:
    batch = [
        outgoing(delivery_id="1", to="ann@example.com", subject="Für Ann ✓"),
        outgoing(delivery_id="2", to="bob@example.com"),
    ]

    results = await backend_for(smtp_server).send(batch, date=DATE)

    assert [(r.delivery_id, r.state) for r in results] == [("1", "sent"), ("2", "sent")]
    assert all("accepted" in r.provider_id for r in results)
    received = smtp_server.sink.received
    assert [(r.mail_from, r.rcpt_tos) for r in received] == [
        ("digest@news.example.org", ["ann@example.com"]),
        ("digest@news.example.org", ["bob@example.com"]),
    ]
    first = email.message_from_bytes(received[0].data, policy=default_policy)
    assert first["Subject"] == "Für Ann ✓"
    assert first["To"] == "ann@example.com"
    assert first["Message-ID"] == batch[0].headers["Message-ID"]
    assert first["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    plain = first.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert plain.replace("\r\n", "\n") == batch[0].text


async def test_list_unsubscribe_arrives_unencoded_on_one_line(smtp_server: SmtpServer) -> None:
    await backend_for(smtp_server).send([outgoing()], date=DATE)

    (received,) = smtp_server.sink.received
    headers = received.data.split(b"\r\n\r\n", 1)[0].decode("ascii").split("\r\n")
    (line,) = [h for h in headers if h.startswith("List-Unsubscribe:")]
    assert line == (
        f"List-Unsubscribe: <{UNSUBSCRIBE_URL}>, "
        f"<mailto:digest+unsubscribe-{TOKEN}@news.example.org?subject=unsubscribe>"
    )


async def test_a_refused_recipient_fails_and_the_batch_goes_on(smtp_server: SmtpServer) -> None:
    batch = [
        outgoing(delivery_id="1", to="reject-me@example.com"),
        outgoing(delivery_id="2", to="bob@example.com"),
    ]

    refused, sent = await backend_for(smtp_server).send(batch, date=DATE)

    assert refused.state == "failed"
    assert "550" in refused.error and "No such user" in refused.error
    assert "\n" not in refused.error
    assert sent.state == "sent"
    assert [r.rcpt_tos for r in smtp_server.sink.received] == [["bob@example.com"]]


@pytest.mark.parametrize("local", ["later", "busy"], ids=["451-at-rcpt", "451-after-data"])
async def test_a_transient_refusal_leaves_the_message_queued(
    smtp_server: SmtpServer, local: str
) -> None:
    batch = [
        outgoing(delivery_id="1", to=f"{local}@example.com"),
        outgoing(delivery_id="2", to="bob@example.com"),
    ]

    deferred, sent = await backend_for(smtp_server).send(batch, date=DATE)

    assert (deferred.state, sent.state) == ("queued", "sent")
    assert "451" in deferred.error
    assert [r.rcpt_tos for r in smtp_server.sink.received] == [["bob@example.com"]]


async def test_a_server_that_is_down_leaves_the_whole_batch_queued() -> None:
    port = free_port()
    backend = SmtpBackend(host="127.0.0.1", port=port, timeout=2)
    batch = [outgoing(delivery_id=str(n), to=f"reader{n}@example.com") for n in range(3)]

    results = await backend.send(batch, date=DATE)

    assert [r.state for r in results] == ["queued"] * 3
    reason = results[0].error
    assert reason.startswith(f"smtp 127.0.0.1:{port}: ")
    assert "\n" not in reason
    assert {r.error for r in results} == {reason}


async def test_a_line_lost_during_data_is_unknown_and_the_rest_stays_queued(
    smtp_server: SmtpServer,
) -> None:
    batch = [
        outgoing(delivery_id="1", to="ann@example.com"),
        outgoing(delivery_id="2", to="drop@example.com"),
        outgoing(delivery_id="3", to="bob@example.com"),
    ]

    results = await backend_for(smtp_server).send(batch, date=DATE)

    # The server may have taken message 2 (it did): never send it again blindly.
    assert [r.state for r in results] == ["sent", "unknown", "queued"]
    assert "connection closed" in results[2].error
    assert smtp_server.sink.attempts == ["ann@example.com", "drop@example.com"]


async def test_a_recipient_that_is_not_an_address_fails_alone(smtp_server: SmtpServer) -> None:
    batch = [outgoing(delivery_id="1", to="not an address"), outgoing(delivery_id="2")]
    first, second = await backend_for(smtp_server).send(batch, date=DATE)
    assert (first.state, second.state) == ("failed", "sent")


async def test_starttls_is_required_when_asked_for(smtp_server: SmtpServer) -> None:
    """With starttls=1 a server without STARTTLS gets nothing in clear text."""
    backend = backend_from_url(f"smtp://{smtp_server.host}:{smtp_server.port}?starttls=1")

    results = await backend.send([outgoing()], date=DATE)

    assert results[0].state == "queued"
    assert "STARTTLS" in results[0].error
    assert smtp_server.sink.attempts == []


async def test_a_pool_of_connections_sends_each_message_once_in_batch_order(
    smtp_server: SmtpServer,
) -> None:
    batch = [outgoing(delivery_id=str(n), to=f"reader{n}@example.com") for n in range(12)]
    batch[5] = outgoing(delivery_id="5", to="reject-5@example.com")

    results = await backend_for(smtp_server, connections=3).send(batch, date=DATE)

    assert [r.delivery_id for r in results] == [str(n) for n in range(12)]
    assert [r.state for r in results] == ["sent"] * 5 + ["failed"] + ["sent"] * 6
    arrived = sorted(r.rcpt_tos[0] for r in smtp_server.sink.received)
    assert arrived == sorted(f"reader{n}@example.com" for n in range(12) if n != 5)


async def test_a_shared_variant_arrives_as_the_email_package_would_build_it(
    smtp_server: SmtpServer,
) -> None:
    rng = random.Random(3)
    variant = random_variant(rng, 1)
    batch = [shared_message(rng, n, variant) for n in range(20)]

    results = await backend_for(smtp_server, connections=2).send(batch, date=DATE)

    assert {r.state for r in results} == {"sent"}
    by_recipient = {r.rcpt_tos[0]: r.data for r in smtp_server.sink.received}
    for message in batch:
        slow = to_email_message(message, date=DATE).as_bytes(policy=WIRE_POLICY)
        assert comparable(by_recipient[message.to]) == comparable(slow)


# --- DKIM --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dkim_key() -> tuple[bytes, bytes]:
    """A fresh RSA key: (PEM private key, the DNS TXT record publishing its public half)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)


def dns_for(record: bytes) -> Callable[..., bytes]:
    def lookup(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"mail2025._domainkey.news.example.org."
        return record

    return lookup


async def test_dkim_signed_messages_verify_against_the_published_key(
    smtp_server: SmtpServer, dkim_key: tuple[bytes, bytes]
) -> None:
    private, record = dkim_key
    signer = DkimSigner("mail2025", private)
    rng = random.Random(5)
    batch = [shared_message(rng, 1, random_variant(rng, 1)), outgoing(delivery_id="2")]

    results = await backend_for(smtp_server, dkim=signer).send(batch, date=DATE)

    assert [r.state for r in results] == ["sent", "sent"]
    for received in smtp_server.sink.received:
        assert received.data.startswith(b"DKIM-Signature: ")
        assert dkim.verify(received.data, dnsfunc=dns_for(record))
        parsed = email.message_from_bytes(received.data, policy=default_policy)
        tags = dict(
            tag.strip().split("=", 1)
            for tag in str(parsed["DKIM-Signature"]).replace(" ", "").split(";")
            if tag.strip()
        )
        assert (tags["d"], tags["s"], tags["a"], tags["c"]) == (
            "news.example.org",
            "mail2025",
            "rsa-sha256",
            "relaxed/relaxed",
        )
        signed = tags["h"].lower().split(":")
        for name in ("from", "subject", "date", "to", "message-id", "list-unsubscribe"):
            assert name in signed
        assert "list-unsubscribe-post" in signed
        # A changed Subject no longer verifies.
        tampered = received.data.replace(b"Subject: ", b"Subject: Re: ", 1)
        assert not dkim.verify(tampered, dnsfunc=dns_for(record))


def test_dkim_is_configured_by_the_environment(
    tmp_path: Path, dkim_key: tuple[bytes, bytes]
) -> None:
    key_file = tmp_path / "dkim.pem"
    key_file.write_bytes(dkim_key[0])
    environ = {"DIGEST_DKIM_KEY_FILE": str(key_file), "DIGEST_DKIM_SELECTOR": "mail2025"}
    assert dkim_from_environment(environ) == DkimSigner("mail2025", dkim_key[0])
    assert dkim_from_environment({}) is None


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"DIGEST_DKIM_SELECTOR": "mail2025"}, "needs both"),
        ({"DIGEST_DKIM_KEY_FILE": "/nonexistent/dkim.pem"}, "needs both"),
        (
            {"DIGEST_DKIM_KEY_FILE": "/nonexistent/dkim.pem", "DIGEST_DKIM_SELECTOR": "s1"},
            "/nonexistent/dkim.pem",
        ),
        ({"DIGEST_DKIM_KEY_FILE": __file__, "DIGEST_DKIM_SELECTOR": "s1"}, "not a PEM"),
        ({"DIGEST_DKIM_KEY_FILE": __file__, "DIGEST_DKIM_SELECTOR": "a b"}, "not a DNS label"),
    ],
)
def test_a_bad_dkim_setting_is_one_config_error_line(
    environ: dict[str, str], expected: str
) -> None:
    with pytest.raises(ConfigError, match=expected) as raised:
        dkim_from_environment(environ)
    assert "\n" not in str(raised.value)


# --- logging in ----------------------------------------------------------------------------


@pytest.fixture
def auth_server() -> Iterator[SmtpServer]:
    """aiosmtpd that accepts AUTH (without TLS, on loopback) for user `digest`, `p@ss:w/rd`."""

    def authenticate(
        _server: object, _session: object, _envelope: object, _mechanism: str, data: object
    ) -> AuthResult:
        good = isinstance(data, LoginPassword) and (data.login, data.password) == (
            b"digest",
            b"p@ss:w/rd",
        )
        # handled=False: aiosmtpd answers 235 or 535 itself.
        return AuthResult(success=good, handled=False)

    sink = MailSink()
    controller = Controller(
        sink,
        hostname="127.0.0.1",
        port=free_port(),
        authenticator=authenticate,
        auth_require_tls=False,
    )
    controller.start()
    try:
        yield SmtpServer(controller.hostname, controller.port, sink)
    finally:
        controller.stop()


async def test_credentials_in_the_url_log_in(auth_server: SmtpServer) -> None:
    url = f"smtp://digest:p%40ss%3Aw%2Frd@{auth_server.host}:{auth_server.port}"
    (result,) = await backend_from_url(url).send([outgoing()], date=DATE)
    assert result.state == "sent"
    assert len(auth_server.sink.received) == 1


async def test_a_wrong_password_stops_the_send_without_echoing_it(
    auth_server: SmtpServer,
) -> None:
    url = f"smtp://digest:wrong-secret@{auth_server.host}:{auth_server.port}"
    with pytest.raises(DeliveryError) as refused:
        await backend_from_url(url).send([outgoing()], date=DATE)
    assert "login refused" in str(refused.value) and "535" in str(refused.value)
    assert "wrong-secret" not in str(refused.value)
    assert auth_server.sink.received == []


# --- smtp:// URLs ------------------------------------------------------------------------


def test_smtp_url_gives_host_port_credentials_and_flags() -> None:
    backend = backend_from_url(
        "smtp://digest:p%40ss@mail.example.org:2525?starttls=1&timeout=7&connections=4"
    )
    assert isinstance(backend, SmtpBackend)
    assert backend.connections == 4
    assert backend_from_url("smtp://mail.example.org").connections == 1  # type: ignore[attr-defined]
    assert (backend.host, backend.port, backend.username, backend.password) == (
        "mail.example.org",
        2525,
        "digest",
        "p@ss",
    )
    assert (backend.starttls, backend.use_tls, backend.timeout) == (True, False, 7.0)


@pytest.mark.parametrize(
    ("url", "port", "use_tls", "starttls"),
    [
        ("smtp://mail.example.org", 25, False, False),
        ("smtp://mail.example.org?starttls=0", 25, False, False),
        ("smtp://mail.example.org:587?starttls=true", 587, False, True),
        ("smtp://mail.example.org?starttls=yes", 25, False, True),
        ("smtps://mail.example.org", 465, True, False),
    ],
)
def test_smtp_url_defaults(url: str, port: int, use_tls: bool, starttls: bool) -> None:
    backend = backend_from_url(url)
    assert isinstance(backend, SmtpBackend)
    assert (backend.port, backend.use_tls, backend.starttls) == (port, use_tls, starttls)
    assert (backend.username, backend.password) == ("", "")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://digest:s3cret@", "needs a host"),
        ("smtp://digest:s3cret@mail.example.org:twentyfive", "digest:***@mail.example.org"),
        ("smtp://digest:s3cret@mail.example.org:99999", "out of range"),
        ("smtp://digest:s3cret@mail.example.org?timeout=soon", "soon"),
        ("smtps://digest:s3cret@mail.example.org?starttls=1", "drop starttls=1"),
        ("http://digest:s3cret@mail.example.org", "scheme must be file, smtp, smtps"),
        ("mail.example.org", "scheme must be"),
    ],
)
def test_a_bad_mail_url_is_one_config_error_line_without_the_password(
    url: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        backend_from_url(url)
    message = str(raised.value)
    assert expected in message
    assert "s3cret" not in message
    assert "\n" not in message


async def test_a_refused_login_gives_the_claimed_rows_back(
    auth_server: SmtpServer, store: Store
) -> None:
    issue_id = queued_issue(store, readers(3))
    backend = backend_from_url(f"smtp://digest:wrong@{auth_server.host}:{auth_server.port}")

    with pytest.raises(DeliveryError, match="login refused"):
        await deliver_issue(store, issue_id, make_message, backend, clock=clock, retry_delay=0)

    assert store.outbox_counts(issue_id)["queued"] == 3
    assert auth_server.sink.received == []


async def test_with_one_message_in_five_meeting_a_fault_nobody_gets_two_copies(
    store: Store,
) -> None:
    """20% of messages meet a transient refusal (451 at RCPT or after DATA) or a line that
    drops after the server took the message. Refusals are retried until everything arrives;
    a dropped line leaves its row `unknown` (SMTP cannot tell whether it arrived), never sent
    again."""
    sink = MailSink(fault_rate=0.2, faults=random.Random(20261126))
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        issue_id = queued_issue(store, readers(300))
        backend = SmtpBackend(host="127.0.0.1", port=controller.port, timeout=5, connections=4)
        variant = random_variant(random.Random(4), 1)

        def shared_for(row: OutboxRow) -> OutgoingMessage:  # the fast path, as digests take
            message = shared_message(random.Random(row.id), row.id, variant)
            return replace(message, to=row.email)

        report = None
        while report is None or report.queued:  # a run stops when refusals outlast retries
            report = await deliver_issue(
                store, issue_id, shared_for, backend, clock=clock, batch_size=25, retry_delay=0
            )
    finally:
        controller.stop()

    arrived = Counter(address for message in sink.received for address in message.rcpt_tos)
    assert [address for address, count in arrived.items() if count > 1] == []
    assert set(arrived) == set(readers(300))  # everything arrived, once
    assert report.sent + report.unknown == 300 and report.failed == 0
    assert report.unknown == len(sink.dropped) > 0  # exactly the dropped lines are held
