"""Address enumeration: the subscribe form tells a stranger nothing about who is on a list.

tests/web/test_signup.py compares the page for a new, an active, an unsubscribed and a
suppressed address, and for a filled-in honeypot. This adds the states it leaves out (a
pending request, an active address typed in other letter case) and compares the whole answer,
headers included, not only the page; and it times the answers against a slow mail server.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from digest.config import parse_settings
from digest.store import Store
from digest.web.serving import public_app
from subscribers import service
from subscribers.models import Consent
from tests.browser.live_app import listening, served, wait_for
from tests.conftest import MailSink, free_port
from tests.web.public_site import (
    CONFIG,
    SECRET,
    START,
    TEST_RATE_LIMIT,
    TOPICS,
    Site,
    add_active,
    csrf_token,
    post_subscribe,
    take_mail,
)

# How long the slow mail server takes per message; answers must come well before.
SMTP_SECONDS = 2.0


def answer_shape(site: Site, address: str) -> tuple[int, list[tuple[str, str]], str]:
    """What a stranger sees on subscribing `address` from a fresh browser: the status, every
    header (the date aside) and the page, with the address typed written as ADDRESS."""
    browser = site.new_client()
    answer = post_subscribe(browser, address)
    headers = sorted(
        (name, value if name != "content-length" else "-")
        for name, value in answer.headers.multi_items()
        if name != "date"
    )
    return answer.status_code, headers, answer.text.replace(address, "ADDRESS")


def test_every_state_of_an_address_gets_the_same_whole_answer(site: Site) -> None:
    """Attack: probe the subscribe form with addresses to learn who reads the list (or asked
    to, left, or bounced): by status, page, headers or cookies. Every probe gets the same."""
    add_active(site, "active@example.org")
    left = add_active(site, "left@example.org")
    with site.engine.begin() as connection:
        service.unsubscribe(connection, left, "weekly", via="link", now=START)
        service.suppress(connection, "bounced@example.org", reason="bounce", now=START)
        service.subscribe(
            connection,
            "pending@example.org",
            list_name="weekly",
            consent=Consent(source="form:/subscribe/weekly"),
            now=START,
        )
    probes = [
        "new@example.org",
        "pending@example.org",
        "active@example.org",
        "Active@EXAMPLE.org",
        "left@example.org",
        "bounced@example.org",
    ]

    shapes = {address: answer_shape(site, address) for address in probes}

    assert len(set(map(repr, shapes.values()))) == 1, shapes
    status, headers, page = shapes["new@example.org"]
    assert status == 200
    assert "ADDRESS" in page
    assert not any(name == "set-cookie" for name, _value in headers)
    # The owners of the addresses still learn what happened, by email only.
    assert len(take_mail(site.outbox)) == 4  # all but the active address (twice)


class SlowMailSink(MailSink):
    """A mail server that takes SMTP_SECONDS to accept each message."""

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        await asyncio.sleep(SMTP_SECONDS)
        return await super().handle_DATA(server, session, envelope)


def test_the_answer_never_waits_for_the_confirmation_email(tmp_path: Path) -> None:
    """Attack: time the answers. An address that gets a confirmation email (new, pending,
    unsubscribed) would answer later than one that gets none (active) if the answer waited
    for the mail server. Served by uvicorn on loopback with a mail server that takes
    SMTP_SECONDS per message, both answers come well before that; the email still arrives."""
    sink = SlowMailSink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    path = tmp_path / "digest.toml"
    path.write_text(CONFIG, encoding="utf-8")
    environ = {
        "DIGEST_SECRET_KEY": SECRET,
        "DIGEST_MAIL_URL": f"smtp://127.0.0.1:{controller.port}",
    }
    settings = parse_settings(CONFIG, path, environ)
    store = Store.open(settings.database_url)
    app = public_app(settings, store, rate_limit=TEST_RATE_LIMIT, environ={})
    with store.transaction() as connection:
        service.add_subscriber(
            connection, "active@example.org", list_name="weekly", consent="fair", now=START
        )
    try:
        with listening() as (listener, base_url), served(app, listener):
            with httpx.Client(base_url=base_url, timeout=30) as client:
                token = csrf_token(client.get("/subscribe/weekly").text)
                elapsed = {}
                for address in ("new@example.org", "active@example.org"):
                    started = time.monotonic()
                    answer = client.post(
                        "/subscribe/weekly",
                        data={
                            "csrf_token": token,
                            "email": address,
                            "topic": list(TOPICS),
                            "cadence": "weekly",
                        },
                    )
                    elapsed[address] = time.monotonic() - started
                    assert answer.status_code == 200
            assert max(elapsed.values()) < SMTP_SECONDS / 2, elapsed
            wait_for(lambda: sink.received, "the confirmation email")
    finally:
        controller.stop()
        store.engine.dispose()
    assert [r.rcpt_tos for r in sink.received] == [["new@example.org"]]
