"""The whole app as `digest serve` builds it, every part switched on, for the web fuzz tests.

public_app on a migrated database (SQLite, or PostgreSQL in that pass) with the SendGrid
webhook's key and the editor's password in its environment, the archive, a subscriber with
live links, a draft issue, and a rate limit no fuzz run reaches.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI
from fastapi.testclient import TestClient

from digest.models import Article, Issue, Section
from digest.store import Store
from digest.web.editor_auth import PASSWORD_VARIABLE
from digest.web.ratelimit import RateLimit
from digest.web.serving import public_app
from digest.web.webhooks import PUBLIC_KEY_VARIABLE
from subscribers import service
from subscribers.tokens import make_preferences_token, make_unsubscribe_token
from tests.web.public_site import SECRET, START, Clock, build_settings, csrf_token
from tests.web.test_webhooks import public_key_text, signed_headers

EDITOR_PASSWORD = "fuzz editor password"
NO_LIMIT = RateLimit(burst=1_000_000, refill_seconds=1)


@dataclass
class WholeSite:
    app: FastAPI
    client: TestClient  # a browser, no session
    editor: TestClient  # a browser logged in as the editor
    store: Store
    clock: Clock
    key: ec.EllipticCurvePrivateKey
    issue_id: int
    unsubscribe_token: str
    preferences_token: str

    def new_draft(self) -> int:
        """Another draft issue to edit (the last may be approved or cancelled by now)."""
        self.issue_id = _draft_issue(self.store, f"fuzz-{self.issue_id + 1}")
        return self.issue_id

    def log_editor_in(self) -> None:
        """Log the editor's browser in (again: a fuzzed form may have logged it out), after
        the minutes that the login rate limit asks for since fuzzed attempts."""
        self.clock.advance(minutes=10)
        token = csrf_token(self.editor.get("/editor/login").text)
        answer = self.editor.post(
            "/editor/login", data={"csrf_token": token, "password": EDITOR_PASSWORD}
        )
        assert answer.status_code == 303, answer.text

    def signed(self, body: bytes) -> dict[str, str]:
        """Headers SendGrid would send with `body`, signed now."""
        return signed_headers(self.key, body, str(int(self.clock.now.timestamp())))


def _draft_issue(store: Store, period_key: str) -> int:
    articles = [
        Article(
            id=f"a{n}",
            url=f"https://example.org/a{n}",
            title=f"Story {n}",
            text="Some words about it. " * 20,
            source="Example Wire",
            published=START - timedelta(hours=1),
        )
        for n in range(3)
    ]
    store.save_articles(articles, now=START)
    sections = (Section("Science", tuple(articles[:2])), Section("Sport", tuple(articles[2:])))
    issue, _created = store.save_issue(
        Issue(digest="weekly", period_key=period_key, title="The Weekly", created=START,
              sections=sections)
    )  # fmt: skip
    assert issue.id is not None
    return issue.id


@contextmanager
def open_whole_site(root: Path) -> Iterator[WholeSite]:
    """The site with its files under `root`, its browsers open; closed on leaving."""
    settings = build_settings(root)
    store = Store.open(settings.database_url)
    with store.transaction() as conn:
        service.ensure_list(conn, "weekly", title="The Weekly", now=START)
        ann = service.add_subscriber(
            conn, "ann@example.org", list_name="weekly", consent="signed up at a fair", now=START
        )
    issue_id = _draft_issue(store, "2025-W10")
    key = ec.generate_private_key(ec.SECP256R1())
    clock = Clock(START)
    environ = {PUBLIC_KEY_VARIABLE: public_key_text(key), PASSWORD_VARIABLE: EDITOR_PASSWORD}
    app = public_app(settings, store, clock=clock, rate_limit=NO_LIMIT, environ=environ)
    https = "https://testserver"
    with (
        TestClient(app, follow_redirects=False) as client,
        TestClient(app, base_url=https, follow_redirects=False) as editor,
    ):
        site = WholeSite(
            app=app,
            client=client,
            editor=editor,
            store=store,
            clock=clock,
            key=key,
            issue_id=issue_id,
            unsubscribe_token=make_unsubscribe_token(SECRET, ann.id, "weekly"),
            preferences_token=make_preferences_token(SECRET, ann.id, "weekly", ann.email),
        )
        site.log_editor_in()
        yield site
    store.engine.dispose()


@pytest.fixture(scope="module")
def shared_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WholeSite]:
    """One site for a whole module: its tests (and their examples) share its database, and
    none asserts on state another may change, but for rows only it writes."""
    with open_whole_site(tmp_path_factory.mktemp("site")) as site:
        yield site
