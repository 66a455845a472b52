"""The public web app: subscribe, confirm, preferences, unsubscribe, issues' web versions.

`GET /u/{token}` only asks; `POST /u/{token}` unsubscribes. Mail providers POST
`List-Unsubscribe=One-Click` (form-urlencoded or multipart) with no cookie and follow no
redirect, so the POST needs nothing but the signed token and answers 200 directly. Any POST to
a valid token unsubscribes, whatever its body: a reader who wants out is never refused. That is
why this one form carries no CSRF token: the unguessable token in its URL is the only proof
asked, of a mail client and of the page's own button alike. Every other form has one.

The subscribe, confirm and preferences pages (digest/web/signup.py, preferences.py) exist when
the app is given a mailer to send their emails with.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException

from digest.errors import DatabaseError
from digest.web.archive import Archive, archive_routes
from digest.web.pages import Pages
from digest.web.preferences import preferences_routes
from digest.web.ratelimit import RateLimit, TokenBuckets
from digest.web.signup import signup_routes
from digest.web.site import IssueId, ListInfo, NoticeSender, Site, consent_from, form_body
from digest.web.webhooks import EventWebhook, webhook_routes
from subscribers import service
from subscribers.models import Consent, Subscription
from subscribers.service import SubscriberError
from subscribers.tokens import InvalidToken, read_unsubscribe_token

log = logging.getLogger(__name__)

# An issue's web version is the email itself: inline styles, a <style> block, remote pictures,
# no script at all. It names no reader, so it may be cached.
ISSUE_PAGE_HEADERS = {
    "Cache-Control": "public, max-age=300",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src https: http:; "
        "form-action 'none'; frame-ancestors 'self'; base-uri 'none'"
    ),
}

# The hidden field the page's own button adds, so the consent log tells a click on the page
# from a mail client's one-click POST.
FROM_PAGE = ("from", "page")


def utc_now() -> datetime:
    return datetime.now(UTC)


def create_app(
    *,
    engine: sa.Engine,
    secret_key: str,
    publication: str,
    clock: Callable[[], datetime] = utc_now,
    issue_page: Callable[[int], str | None] | None = None,
    lists: Mapping[str, ListInfo] | None = None,
    mailer: NoticeSender | None = None,
    rate_limit: RateLimit | None = None,
    event_webhook: EventWebhook | None = None,
    archive: Archive | None = None,
) -> FastAPI:
    """The ASGI app; `publication` names the sender on every page.

    `issue_page(issue_id)` gives an issue's web version, or None when it is not public.
    `lists` are the lists people may subscribe to (the first is /subscribe's), `mailer` sends
    the confirm, welcome and preferences-changed emails; without a mailer the app serves only
    unsubscribe links and issues. `rate_limit` bounds subscribe requests per client address.
    `event_webhook` enables `POST /webhooks/sendgrid` (digest/web/webhooks.py).
    `archive` enables `/archive` and its Atom feed (digest/web/archive.py).
    """
    if not secret_key:
        raise ValueError("secret_key must not be empty: it verifies unsubscribe links")
    pages = Pages(publication)
    page = pages.render
    app = FastAPI(title=publication, docs_url=None, redoc_url=None, openapi_url=None)

    def bad_request(error: SubscriberError) -> HTMLResponse:
        return pages.error(400, str(error))

    @app.exception_handler(SubscriberError)
    async def subscriber_error(request: Request, error: SubscriberError) -> HTMLResponse:
        return bad_request(error)

    @app.exception_handler(DatabaseError)
    async def database_unavailable(request: Request, error: DatabaseError) -> HTMLResponse:
        # The route, not the path: paths carry readers' tokens.
        route = getattr(request.scope.get("route"), "path", "?")
        log.error("%s %s: %s", request.method, route, error)
        page = pages.error(503, "The site cannot reach its records just now; try again shortly.")
        page.headers["Retry-After"] = "60"
        return page

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/issues/{issue_id}")
    def show_issue(issue_id: IssueId) -> HTMLResponse:
        html = issue_page(issue_id) if issue_page is not None and issue_id > 0 else None
        if html is None:
            return pages.error(404, f"There is no published issue {issue_id}.")
        return HTMLResponse(html, headers=ISSUE_PAGE_HEADERS)

    @app.get("/u/{token}")
    def ask_to_unsubscribe(token: str) -> HTMLResponse:
        try:
            subscriber_id, list_name = read_unsubscribe_token(secret_key, token)
        except InvalidToken as error:
            return bad_request(error)
        with engine.connect() as conn:
            subscription = service.find_subscription(conn, subscriber_id, list_name)
        if subscription is None or not subscription.is_active:
            return page("unsubscribed.html", subscription=subscription, list_name=list_name)
        return page("unsubscribe.html", subscription=subscription, from_page=FROM_PAGE)

    @app.post("/u/{token}", openapi_extra=form_body("List-Unsubscribe", FROM_PAGE[0]))
    async def unsubscribe(token: str, request: Request) -> HTMLResponse:
        try:
            subscriber_id, list_name = read_unsubscribe_token(secret_key, token)
        except InvalidToken as error:
            return bad_request(error)
        via = _via(await _form_fields(request))
        consent = consent_from(request, source=via, wording="")
        subscription = await run_in_threadpool(
            _unsubscribe, engine, subscriber_id, list_name, consent, clock()
        )
        return page("unsubscribed.html", subscription=subscription, list_name=list_name)

    if mailer is not None:
        site = Site(
            engine=engine,
            secret_key=secret_key,
            pages=pages,
            clock=clock,
            mailer=mailer,
            lists=dict(lists or {}),
            buckets=TokenBuckets(rate_limit or RateLimit()),
        )
        app.include_router(signup_routes(site))
        app.include_router(preferences_routes(site))
    app.include_router(webhook_routes(event_webhook, clock))
    if archive is not None:
        app.include_router(archive_routes(archive, pages, clock))
    return app


def _unsubscribe(
    engine: sa.Engine, subscriber_id: int, list_name: str, consent: Consent, now: datetime
) -> Subscription | None:
    via = consent.source
    with engine.begin() as conn:
        changed = service.unsubscribe(
            conn, subscriber_id, list_name, via=via, now=now, consent=consent
        )
        subscription = service.find_subscription(conn, subscriber_id, list_name)
    if changed:
        log.info("unsubscribed subscriber=%s list=%s via=%s", subscriber_id, list_name, via)
    return subscription


async def _form_fields(request: Request) -> dict[str, str]:
    """The POST body's text fields; an unreadable body counts as empty (the token suffices)."""
    try:
        async with request.form(max_files=1, max_fields=20) as form:
            return _text_fields(form)
    except HTTPException as error:  # Starlette's answer to a malformed multipart body
        log.info("unsubscribe POST with an unreadable body: %s", error.detail)
        return {}


def _text_fields(form: FormData) -> dict[str, str]:
    return {key: value for key, value in form.multi_items() if isinstance(value, str)}


def _via(fields: dict[str, str]) -> str:
    """How the reader unsubscribed, for the consent log."""
    if fields.get(FROM_PAGE[0]) == FROM_PAGE[1]:
        return "link"
    if fields.get("List-Unsubscribe") == "One-Click":
        return "one-click"
    return "post"
