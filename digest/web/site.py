"""What the subscriber pages share: the lists on offer, the mailer port, CSRF, the database.

The app builds one `Site` and hands it to the route modules (signup, preferences).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Protocol

import sqlalchemy as sa
from fastapi import Path, Request
from fastapi.responses import HTMLResponse
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException

from digest.config import DigestConfig
from digest.errors import DigestError
from digest.web.csrf import COOKIE_NAME, FIELD_NAME, CsrfGuard, set_csrf_cookie
from digest.web.pages import Pages
from digest.web.ratelimit import TokenBuckets
from subscribers.models import Consent, Subscription

log = logging.getLogger(__name__)

# The order cadences are offered in, and what a reader sees for each.
CADENCE_LABELS = {
    "each": "Every issue",
    "daily": "A daily digest",
    "weekly": "A weekly digest",
    "paused": "Nothing for now (paused)",
}
# Browsers send a few kilobytes of user agent at most; the consent log keeps this much.
MAX_USER_AGENT = 500
# Forms have a handful of fields plus one per topic; more than this is not from our pages.
MAX_FORM_FIELDS = 200
# An issue id in a URL: issues.id is an INTEGER column, and a larger number (which SQLite's
# driver refuses with an error) names no issue; FastAPI answers 422 for it, as for "abc".
IssueId = Annotated[int, Path(ge=1, le=2**31 - 1)]
FORM_MEDIA_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


@dataclass(frozen=True, slots=True)
class ListInfo:
    """What the pages offer for one list: its title, its topics, the cadences its digests use."""

    title: str
    topics: tuple[str, ...] = ()
    cadences: tuple[str, ...] = ("each", "daily", "weekly")


def offered_lists(digests: Sequence[DigestConfig]) -> dict[str, ListInfo]:
    """The lists the configured digests go to, in file order; the first digest names its list.

    A list offers the topics of all its digests and, besides every issue, the cadence of each
    digest sent only to readers who chose it ("daily", "weekly").
    """
    found: dict[str, ListInfo] = {}
    for digest in digests:
        known = found.get(digest.list_name, ListInfo(title=digest.title, cadences=("each",)))
        topics = tuple(dict.fromkeys((*known.topics, *(t.name for t in digest.topics))))
        cadences = offered_cadences(*known.cadences, digest.cadence)
        found[digest.list_name] = ListInfo(known.title, topics, cadences)
    return found


class NoticeSender(Protocol):
    """Sends one notice ("confirm", "welcome", "preferences-changed") to one person."""

    async def send(
        self,
        notice: str,
        *,
        subscriber_id: int,
        email: str,
        name: str,
        list_name: str,
        topics: tuple[str, ...],
        cadence: str,
        now: datetime,
    ) -> None: ...


@dataclass(frozen=True)
class Site:
    engine: sa.Engine
    secret_key: str
    pages: Pages
    clock: Callable[[], datetime]
    mailer: NoticeSender
    lists: Mapping[str, ListInfo]
    buckets: TokenBuckets
    csrf: CsrfGuard = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "csrf", CsrfGuard(self.secret_key))

    def form_page(
        self, request: Request, template: str, status_code: int = 200, **context: object
    ) -> HTMLResponse:
        """A page holding forms: each gets the CSRF field, the browser the cookie it pairs with."""
        pair = self.csrf.pair_for(request.cookies.get(COOKIE_NAME))
        response = self.pages.render(
            template, status_code, csrf=(FIELD_NAME, pair.field_value), **context
        )
        set_csrf_cookie(response, pair, is_https=request.url.scheme == "https")
        return response

    def is_forged(self, request: Request, form: FormData) -> bool:
        """True when the POST lacks our CSRF field or its cookie does not match it."""
        field_value = form.get(FIELD_NAME)
        return not self.csrf.is_valid(
            request.cookies.get(COOKIE_NAME), field_value if isinstance(field_value, str) else None
        )

    def forged_form(self, request: Request) -> HTMLResponse:
        """The answer to a POST that failed the CSRF check: go back and send it again."""
        log.info("form rejected: CSRF token missing or not matching path=%s", request.url.path)
        return self.pages.error(
            403,
            "This form was out of date or came from another site, so nothing was changed. "
            "Open the page again and resend it (your browser must accept cookies from this site).",
            next_link=(request.url.path, "Open the page again"),
        )

    def info_for(self, subscription: Subscription) -> ListInfo:
        """The list as configured; one no digest sends to any more offers no topics."""
        configured = self.lists.get(subscription.list_name)
        return configured or ListInfo(title=subscription.list_label)

    async def send_notice(self, notice: str, subscription: Subscription) -> None:
        """Send a notice after the response went out; a refusal is logged, the page stays true."""
        try:
            await self.mailer.send(
                notice,
                subscriber_id=subscription.subscriber_id,
                email=subscription.email,
                name=subscription.name,
                list_name=subscription.list_name,
                topics=subscription.topics,
                cadence=subscription.cadence,
                now=self.clock(),
            )
        except DigestError as error:
            log.warning(
                "%s notice not sent subscriber=%s list=%s: %s",
                notice,
                subscription.subscriber_id,
                subscription.list_name,
                error,
            )
        else:
            log.info(
                "%s notice sent subscriber=%s list=%s",
                notice,
                subscription.subscriber_id,
                subscription.list_name,
            )


async def read_form(request: Request) -> FormData:
    """The POSTed form; an unreadable body counts as empty (the CSRF check then refuses it).

    NUL characters are dropped: no browser types one, and PostgreSQL stores no text holding
    one (a name or an intro with a NUL would fail its INSERT with a 500).
    """
    try:
        async with request.form(max_files=0, max_fields=MAX_FORM_FIELDS) as form:
            return FormData(
                [(k, v.replace("\x00", "")) for k, v in form.multi_items() if isinstance(v, str)]
            )
    except HTTPException as error:  # Starlette's answer to a malformed body
        log.info("form with an unreadable body path=%s: %s", request.url.path, error.detail)
        return FormData()


def form_body(*fields: str, repeated: Sequence[str] = ()) -> dict[str, Any]:
    """`openapi_extra` for a route that reads its form itself (read_form), which FastAPI
    cannot see: the fields it reads, all optional, so the OpenAPI says what it accepts."""
    properties: dict[str, Any] = {name: {"type": "string"} for name in fields}
    properties |= {name: {"type": "array", "items": {"type": "string"}} for name in repeated}
    schema = {"type": "object", "properties": properties}
    return {"requestBody": {"content": {media: {"schema": schema} for media in FORM_MEDIA_TYPES}}}


def text_field(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def consent_from(request: Request, *, source: str, wording: str) -> Consent:
    """What the consent log keeps about a request: where, what was shown, from which client."""
    user_agent = request.headers.get("user-agent", "")[:MAX_USER_AGENT]
    return Consent(
        source=source,
        wording=wording,
        ip=request.client.host if request.client else "",
        user_agent=user_agent,
    )


def offered_cadences(*chosen: str) -> tuple[str, ...]:
    """The cadences named, each once, in the order readers see them."""
    return tuple(cadence for cadence in CADENCE_LABELS if cadence in chosen)


def stored_topics(chosen: tuple[str, ...], offered: tuple[str, ...]) -> tuple[str, ...]:
    """A topic choice as stored: () for every topic on offer, so topics added later reach them."""
    return () if set(offered) <= set(chosen) else chosen
