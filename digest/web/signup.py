"""Joining a list: the subscribe form and the confirmation page (double opt-in).

The subscribe form answers the same "check your inbox" page for a new, an already subscribed,
an unsubscribed or a suppressed address, and for a filled-in honeypot, so it tells nobody who
is on the list; the confirmation email goes out after the response, so timing does not either.
A confirmation link only shows a button: link scanners that open every URL confirm nobody.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from digest.web.csrf import FIELD_NAME
from digest.web.ratelimit import client_key, retry_after_header
from digest.web.site import (
    CADENCE_LABELS,
    ListInfo,
    Site,
    consent_from,
    form_body,
    offered_cadences,
    read_form,
    stored_topics,
    text_field,
)
from subscribers import service
from subscribers.models import Consent, Subscription
from subscribers.service import MAX_NAME, InvalidEmail, normalise_email
from subscribers.tokens import InvalidToken, make_preferences_token, read_confirm_token

log = logging.getLogger(__name__)

# A field people cannot see or reach; bots that fill in every field fill this one too.
HONEYPOT_FIELD = "website"
MAX_EMAIL = 320
SUBSCRIBE_FORM = form_body(
    FIELD_NAME, "email", "name", "cadence", HONEYPOT_FIELD, repeated=("topic",)
)


@dataclass(frozen=True, slots=True)
class SignupForm:
    """What was typed into the subscribe form, and what is wrong with it (field → message)."""

    email: str = ""
    name: str = ""
    topics: tuple[str, ...] = ()
    cadence: str | None = None
    errors: dict[str, str] = field(default_factory=dict)


def subscribe_wording(info: ListInfo) -> str:
    """The consent sentence shown beside the button, and kept word for word in the consent log."""
    return (
        f"I agree to receive {info.title} by email at this address, "
        "and I know I can unsubscribe at any time."
    )


def confirm_wording(info: ListInfo, email: str) -> str:
    return f"Yes, send {info.title} to {email}."


def default_signup(info: ListInfo) -> SignupForm:
    """A blank form: every topic ticked, the least frequent cadence on offer chosen."""
    cadences = subscribe_cadences(info)
    return SignupForm(topics=info.topics, cadence=cadences[-1] if cadences else None)


def subscribe_cadences(info: ListInfo) -> tuple[str, ...]:
    """The cadences a new subscriber chooses from; none when the list's digests offer one only."""
    cadences = offered_cadences(*(c for c in info.cadences if c != "paused"))
    return cadences if len(cadences) > 1 else ()


def read_signup(form: FormData, info: ListInfo) -> SignupForm:
    """The posted subscribe form, checked; unknown topics (a doctored form) are left out."""
    errors: dict[str, str] = {}
    email = text_field(form, "email")
    if not email:
        errors["email"] = "Enter your email address."
    elif len(email) > MAX_EMAIL:
        errors["email"] = f"An email address has at most {MAX_EMAIL} characters."
    else:
        try:
            normalise_email(email)
        except InvalidEmail:
            errors["email"] = "Enter an email address like name@example.org."
    name = " ".join(text_field(form, "name").split())
    if len(name) > MAX_NAME:
        errors["name"] = f"A name has at most {MAX_NAME} characters."
    chosen = set(form.getlist("topic"))
    topics = tuple(topic for topic in info.topics if topic in chosen)
    if info.topics and not topics:
        errors["topics"] = "Choose at least one topic."
    cadences = subscribe_cadences(info)
    cadence = text_field(form, "cadence") or None
    if not cadences:
        cadence = None
    elif cadence not in cadences:
        errors["cadence"] = "Choose how often you want to hear from us."
    return SignupForm(email, name, topics, cadence, errors)


def signup_routes(site: Site) -> APIRouter:
    router = APIRouter()

    def form_page(
        request: Request, list_name: str, signup: SignupForm, status_code: int = 200
    ) -> HTMLResponse:
        info = site.lists[list_name]
        return site.form_page(
            request,
            "subscribe.html",
            status_code,
            info=info,
            form=signup,
            cadences=[(c, CADENCE_LABELS[c]) for c in subscribe_cadences(info)],
            wording=subscribe_wording(info),
            honeypot=HONEYPOT_FIELD,
        )

    def no_such_list(list_name: str) -> HTMLResponse:
        return site.pages.error(404, f"There is no list called “{list_name}” to subscribe to.")

    def default_list() -> str | None:
        return next(iter(site.lists), None)

    @router.get("/subscribe")
    def show_default_form(request: Request) -> HTMLResponse:
        list_name = default_list()
        if list_name is None:
            return site.pages.error(404, "There is no list to subscribe to yet.")
        return form_page(request, list_name, default_signup(site.lists[list_name]))

    @router.get("/subscribe/{list_name}")
    def show_form(request: Request, list_name: str) -> HTMLResponse:
        if list_name not in site.lists:
            return no_such_list(list_name)
        return form_page(request, list_name, default_signup(site.lists[list_name]))

    @router.post("/subscribe", openapi_extra=SUBSCRIBE_FORM)
    async def subscribe_default(request: Request, background: BackgroundTasks) -> HTMLResponse:
        list_name = default_list()
        if list_name is None:
            return site.pages.error(404, "There is no list to subscribe to yet.")
        return await subscribe(request, list_name, background)

    @router.post("/subscribe/{list_name}", openapi_extra=SUBSCRIBE_FORM)
    async def subscribe(
        request: Request, list_name: str, background: BackgroundTasks
    ) -> HTMLResponse:
        if list_name not in site.lists:
            return no_such_list(list_name)
        host = request.client.host if request.client else None
        wait = site.buckets.take(client_key(host), site.clock())
        if wait:
            log.info("subscribe rate-limited client=%s list=%s", client_key(host), list_name)
            response = site.pages.render("too_many.html", 429, minutes=max(1, round(wait / 60)))
            response.headers["Retry-After"] = retry_after_header(wait)
            return response
        form = await read_form(request)
        if site.is_forged(request, form):
            return site.forged_form(request)
        info = site.lists[list_name]
        if text_field(form, HONEYPOT_FIELD):
            log.info("subscribe honeypot filled client=%s list=%s", client_key(host), list_name)
            return check_inbox(text_field(form, "email"), info)
        signup = read_signup(form, info)
        if signup.errors:
            return form_page(request, list_name, signup, 400)
        consent = consent_from(
            request, source=f"form:/subscribe/{list_name}", wording=subscribe_wording(info)
        )
        pending = await run_in_threadpool(
            _subscribe, site.engine, signup, info, list_name, consent, site.clock()
        )
        if pending is not None:
            background.add_task(site.send_notice, "confirm", pending)
        return check_inbox(signup.email, info)

    def check_inbox(email: str, info: ListInfo) -> HTMLResponse:
        return site.pages.render("check_inbox.html", email=email, info=info)

    @router.get("/confirm/{token}")
    def show_confirm(request: Request, token: str) -> HTMLResponse:
        subscription = _confirmable(site, token)
        info = site.info_for(subscription)
        if subscription.is_active:
            return confirmed(subscription, info)
        return site.form_page(
            request,
            "confirm.html",
            subscription=subscription,
            info=info,
            wording=confirm_wording(info, subscription.email),
        )

    @router.post("/confirm/{token}", openapi_extra=form_body(FIELD_NAME))
    async def confirm(request: Request, token: str, background: BackgroundTasks) -> HTMLResponse:
        form = await read_form(request)
        if site.is_forged(request, form):
            return site.forged_form(request)
        subscription = _confirmable(site, token)
        info = site.info_for(subscription)
        consent = consent_from(
            request, source="form:/confirm", wording=confirm_wording(info, subscription.email)
        )
        confirmed_now = await run_in_threadpool(
            _confirm, site.engine, subscription, consent, site.clock()
        )
        if not subscription.is_active:
            log.info(
                "confirmed subscriber=%s list=%s",
                confirmed_now.subscriber_id,
                confirmed_now.list_name,
            )
            background.add_task(site.send_notice, "welcome", confirmed_now)
        return confirmed(confirmed_now, info)

    def confirmed(subscription: Subscription, info: ListInfo) -> HTMLResponse:
        token = make_preferences_token(
            site.secret_key, subscription.subscriber_id, subscription.list_name, subscription.email
        )
        return site.pages.render(
            "confirmed.html", subscription=subscription, info=info, preferences_url=f"../p/{token}"
        )

    return router


def _confirmable(site: Site, token: str) -> Subscription:
    """The subscription a confirmation token names, if it is still that address's."""
    subscriber_id, list_name, email = read_confirm_token(site.secret_key, token, now=site.clock())
    with site.engine.connect() as conn:
        subscription = service.find_subscription(conn, subscriber_id, list_name)
    if subscription is None or subscription.email != email:
        raise InvalidToken(
            "This confirmation link is not valid any more: the subscription it was for is gone. "
            "Subscribe again to get a new one."
        )
    return subscription


def _subscribe(
    engine: sa.Engine,
    signup: SignupForm,
    info: ListInfo,
    list_name: str,
    consent: Consent,
    now: datetime,
) -> Subscription | None:
    """Record the request; the pending subscription when a confirmation email must go out."""
    with engine.begin() as conn:
        outcome = service.subscribe(
            conn,
            signup.email,
            list_name=list_name,
            consent=consent,
            now=now,
            name=signup.name,
            topics=stored_topics(signup.topics, info.topics),
            cadence=signup.cadence,
        )
        if not outcome.confirm_needed:
            return None
        return service.find_subscription(conn, outcome.subscriber_id, list_name)


def _confirm(
    engine: sa.Engine, subscription: Subscription, consent: Consent, now: datetime
) -> Subscription:
    with engine.begin() as conn:
        return service.confirm(
            conn,
            subscription.subscriber_id,
            subscription.list_name,
            email=subscription.email,
            consent=consent,
            now=now,
        )
