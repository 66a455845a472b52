"""The public app `digest serve` builds, under load and when its database fails: many one-click
unsubscribes at once are each answered 200 and stored once (correctness under concurrency, not
speed: bench/bench_web_load.py measures that); a database locked too long gets a 503 page."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from subscribers import service
from subscribers.tables import consent_events, subscriptions
from subscribers.tokens import make_unsubscribe_token
from tests.web.public_site import SECRET, START, Site

AT_ONCE = 200
RETRIED = 25  # readers whose mail provider POSTs the same link four times at once
ONE_CLICK = {"List-Unsubscribe": "One-Click"}


def add_readers(site: Site, count: int) -> list[int]:
    with site.engine.begin() as conn:
        return [
            service.add_subscriber(
                conn, f"load{n}@example.org", list_name="weekly", consent="test", now=START
            ).id
            for n in range(count)
        ]


async def test_two_hundred_one_click_posts_at_once_all_unsubscribe_once(site: Site) -> None:
    readers = add_readers(site, AT_ONCE + RETRIED + 10)
    clicked, retried = readers[:AT_ONCE], readers[AT_ONCE : AT_ONCE + RETRIED]
    untouched = readers[AT_ONCE + RETRIED :]
    tokens = [make_unsubscribe_token(SECRET, reader, "weekly") for reader in clicked]
    tokens += [make_unsubscribe_token(SECRET, reader, "weekly") for reader in retried] * 4
    transport = httpx.ASGITransport(app=site.client.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        answers = await asyncio.gather(
            *(client.post(f"/u/{token}", data=ONE_CLICK) for token in tokens)
        )

    assert Counter(answer.status_code for answer in answers) == Counter({200: len(tokens)})
    assert all("unsubscribed" in answer.text for answer in answers)
    with site.engine.connect() as conn:
        statuses = dict(
            conn.execute(sa.select(subscriptions.c.subscriber_id, subscriptions.c.status)).all()
        )
        logged = Counter(
            conn.execute(
                sa.select(consent_events.c.subscriber_id).where(
                    consent_events.c.action == "unsubscribed",
                    consent_events.c.source == "one-click",
                )
            ).scalars()
        )
    assert {statuses[reader] for reader in clicked + retried} == {"unsubscribed"}
    assert {statuses[reader] for reader in untouched} == {"active"}
    assert logged == Counter(clicked + retried)  # one entry each, retried or not


@pytest.mark.sqlite("SQLite's write lock")
def test_a_database_locked_too_long_answers_503_with_a_page_not_a_traceback(site: Site) -> None:
    """A write that outwaits the busy timeout: the reader (or mail provider) is asked to come
    back, on a page that says so; the operator's log says why."""
    (reader,) = add_readers(site, 1)
    token = make_unsubscribe_token(SECRET, reader, "weekly")

    def short_busy_timeout(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        dbapi_connection.execute("PRAGMA busy_timeout=50")

    sa.event.listen(site.engine, "connect", short_busy_timeout)
    site.engine.dispose()
    path = site.engine.url.database
    assert path is not None
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")  # another process writing, for longer than we wait
    try:
        client = TestClient(site.client.app, raise_server_exceptions=False)
        answer = client.post(f"/u/{token}", data=ONE_CLICK)
    finally:
        locker.execute("ROLLBACK")
        locker.close()

    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "60"
    assert "try again" in answer.text and "Traceback" not in answer.text
    assert "database is locked" not in answer.text  # the operator's business, not the reader's
    with site.engine.connect() as conn:
        status = conn.execute(
            sa.select(subscriptions.c.status).where(subscriptions.c.subscriber_id == reader)
        ).scalar_one()
    assert status == "active"  # nothing half-done: the next POST will unsubscribe
    assert client.post(f"/u/{token}", data=ONE_CLICK).status_code == 200
