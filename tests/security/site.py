"""The whole site as `digest serve` builds it, every optional part on, for the security tests.

Public pages, the editor's pages (a password in the environment) and the SendGrid webhook (a key
pair made for the test) over a migrated database, with one draft issue, one active and one
pending subscriber. The client speaks https, as a deployment behind TLS does. Helpers read the
whole database, so a test can say "nothing changed" without knowing which table a route writes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI
from fastapi.testclient import TestClient

from digest.config import Settings
from digest.store import Store
from digest.web.serving import public_app
from digest.web.webhooks import PUBLIC_KEY_VARIABLE
from subscribers import service
from subscribers.models import Consent
from subscribers.tokens import make_confirm_token, make_preferences_token, make_unsubscribe_token
from tests.web.public_site import SECRET, START, TEST_RATE_LIMIT, Clock, build_settings
from tests.web.test_editor import PASSWORD, log_in, save_issue
from tests.web.test_webhooks import public_key_text

WEBHOOK_KEY = ec.generate_private_key(ec.SECP256R1())
ENVIRON = {"DIGEST_EDITOR_PASSWORD": PASSWORD, PUBLIC_KEY_VARIABLE: public_key_text(WEBHOOK_KEY)}
ACTIVE = "ann@example.org"
PENDING = "pat@example.org"


@dataclass
class FullSite:
    app: FastAPI
    client: TestClient  # a browser with no session
    store: Store
    settings: Settings
    clock: Clock
    outbox: Path
    issue_id: int
    ann: int  # active on the weekly list
    pat: int  # asked to join the weekly list, not confirmed yet
    _tables: list[sa.Table] | None = None

    def browser(self, *, logged_in: bool = False) -> TestClient:
        """Another browser; logged in as the editor if asked. Close it when done."""
        client = TestClient(self.app, base_url="https://testserver", follow_redirects=False)
        client.__enter__()
        if logged_in:
            assert log_in(client).status_code == 303
        return client

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table, and the mail written, to compare before and after."""
        if self._tables is None:
            metadata = sa.MetaData()
            metadata.reflect(self.store.engine)
            self._tables = [t for t in metadata.sorted_tables if not t.name.startswith("aps")]
        with self.store.engine.connect() as connection:
            rows = {
                table.name: sorted(map(tuple, connection.execute(sa.select(table))), key=repr)
                for table in self._tables
            }
        mail = sorted(p.name for p in self.outbox.glob("*.eml")) if self.outbox.is_dir() else []
        rows["outbox folder"] = [tuple(mail)]
        return rows

    def tokens(self) -> dict[str, str]:
        """A valid token of each kind: unsubscribe and preferences for Ann, confirm for Pat."""
        return {
            "unsubscribe": make_unsubscribe_token(SECRET, self.ann, "weekly"),
            "preferences": make_preferences_token(SECRET, self.ann, "weekly", ACTIVE),
            "confirm": make_confirm_token(SECRET, self.pat, "weekly", PENDING, now=self.clock()),
        }


def routes(app: FastAPI, method: str) -> list[str]:
    """The path of every route answering `method`, read from the app's OpenAPI description
    (which lists the routes of included routers too; no route of ours leaves it)."""
    paths = app.openapi()["paths"]
    return sorted(path for path, operations in paths.items() if method.lower() in operations)


def session_binding(client: TestClient) -> str:
    """What the editor's CSRF tokens are tied to for this browser (EditorAuth.csrf_binding)."""
    session_id = client.cookies["digest_editor"].split(".", 1)[0]
    return hashlib.sha256(f"csrf:{session_id}".encode("ascii")).hexdigest()


@pytest.fixture
def full_site(tmp_path: Path) -> Iterator[FullSite]:
    settings = build_settings(tmp_path)
    store = Store.open(settings.database_url)
    clock = Clock(START + timedelta(minutes=1))
    app = public_app(settings, store, clock=clock, rate_limit=TEST_RATE_LIMIT, environ=ENVIRON)
    issue_id = save_issue(store)
    with store.transaction() as connection:
        ann = service.add_subscriber(
            connection, ACTIVE, list_name="weekly", consent="signed up at a fair", now=START
        )
        service.subscribe(
            connection,
            PENDING,
            list_name="weekly",
            consent=Consent(source="form:/subscribe/weekly"),
            now=START,
        )
        pat = service.find_person(connection, PENDING)
    assert pat is not None
    with TestClient(app, base_url="https://testserver", follow_redirects=False) as client:
        yield FullSite(
            app, client, store, settings, clock, tmp_path / "outbox", issue_id, ann.id, pat.id
        )
    store.engine.dispose()
