"""The public app as `digest serve` runs it: lists, mailer and pages built from the settings."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from datetime import datetime

from fastapi import FastAPI

from digest.config import Settings
from digest.deliver.backends import backend_from_url
from digest.notices import NoticeMailer
from digest.pipeline import published_pages
from digest.store import Store
from digest.web.app import create_app, utc_now
from digest.web.archive import archive_of
from digest.web.editor import mount_editor
from digest.web.ratelimit import RateLimit
from digest.web.site import offered_lists
from digest.web.webhooks import event_webhook_from_env
from subscribers.service import ensure_list


def public_app(
    settings: Settings,
    store: Store,
    *,
    clock: Callable[[], datetime] = utc_now,
    rate_limit: RateLimit | None = None,
    environ: Mapping[str, str] = os.environ,
) -> FastAPI:
    """Every configured list open for subscription, its emails sent through the mail backend.

    `rate_limit` bounds subscribe requests per client address (default: RateLimit()).
    SENDGRID_WEBHOOK_PUBLIC_KEY in `environ` turns on the SendGrid event webhook, and
    DIGEST_EDITOR_PASSWORD the editor's pages under /editor (digest/web/editor.py).
    """
    secret_key = settings.require_secret_key()
    lists = offered_lists(settings.digests)
    with store.transaction() as connection:
        # The subscribe form of every configured list works before anyone was ever added.
        for name, info in lists.items():
            ensure_list(connection, name, title=info.title, now=clock())
    app = create_app(
        engine=store.engine,
        secret_key=secret_key,
        publication=settings.file.name,
        clock=clock,
        issue_page=published_pages(settings, store),
        lists=lists,
        mailer=NoticeMailer(settings, backend_from_url(settings.mail_url)),
        rate_limit=rate_limit,
        event_webhook=event_webhook_from_env(environ, store, settings.digests),
        archive=archive_of(settings, store),
    )
    mount_editor(app, settings, store, clock=clock, environ=environ)
    return app
