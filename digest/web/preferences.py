"""The preferences page: topics, cadence, pause, unsubscribe, download my data, delete me.

One URL per subscription (`/p/{token}`, the token bound to the address); every form on the page
POSTs back to it and says what it wants in its `action` field. A token whose address is no
longer the subscriber's (erased, then the id reused) opens nothing.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from digest.web.csrf import FIELD_NAME
from digest.web.pages import PAGE_HEADERS
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
from subscribers.tokens import read_preferences_token

log = logging.getLogger(__name__)

EXPORT_FILENAME = "my-subscription-data.json"
UNSUBSCRIBE_ALL_WORDING = "Stop every email from us to this address."


@dataclass(frozen=True, slots=True)
class PreferencesForm:
    """The topics ticked and the cadence chosen, and what is wrong with them (field → message)."""

    topics: tuple[str, ...]
    cadence: str
    errors: dict[str, str] = field(default_factory=dict)


def preferences_wording(info: ListInfo) -> str:
    """The sentence above the choices; the consent log keeps it with every change."""
    return f"Choose what {info.title} sends you, and how often."


def current_choices(subscription: Subscription, info: ListInfo) -> PreferencesForm:
    """The form as stored: no topics chosen means every topic, so all boxes are ticked.

    A cadence the list does not offer (its digests reach every cadence) shows as the first
    one offered, which is what it amounts to.
    """
    ticked = tuple(t for t in info.topics if not subscription.topics or t in subscription.topics)
    choices = cadence_choices(info)
    cadence = subscription.cadence if subscription.cadence in choices else choices[0]
    return PreferencesForm(ticked, cadence)


def cadence_choices(info: ListInfo) -> tuple[str, ...]:
    """What the list's digests offer, and pausing."""
    return offered_cadences(*info.cadences, "paused")


def read_choices(form: FormData, info: ListInfo) -> PreferencesForm:
    """The posted choices, checked; unknown topics (a doctored form) are left out."""
    errors: dict[str, str] = {}
    chosen = set(form.getlist("topic"))
    topics = tuple(topic for topic in info.topics if topic in chosen)
    if info.topics and not topics:
        errors["topics"] = "Choose at least one topic, or unsubscribe below."
    cadence = text_field(form, "cadence")
    if cadence not in cadence_choices(info):
        errors["cadence"] = "Choose how often you want to hear from us."
    return PreferencesForm(topics, cadence, errors)


def preferences_routes(site: Site) -> APIRouter:
    router = APIRouter()

    def show(
        request: Request,
        subscription: Subscription,
        *,
        choices: PreferencesForm | None = None,
        notice: str = "",
        status_code: int = 200,
    ) -> HTMLResponse:
        info = site.info_for(subscription)
        return site.form_page(
            request,
            "preferences.html",
            status_code,
            subscription=subscription,
            info=info,
            form=choices or current_choices(subscription, info),
            cadences=[(c, CADENCE_LABELS[c]) for c in cadence_choices(info)],
            wording=preferences_wording(info),
            notice=notice,
            can_subscribe=subscription.list_name in site.lists,
            unsubscribe_wording=UNSUBSCRIBE_ALL_WORDING,
        )

    def gone() -> HTMLResponse:
        return site.pages.error(
            404,
            "This link does not open a subscription any more: it was deleted, "
            "or the address changed.",
        )

    @router.get("/p/{token}")
    def show_preferences(request: Request, token: str) -> HTMLResponse:
        subscription = _subscription_for(site, token)
        return gone() if subscription is None else show(request, subscription)

    @router.post(
        "/p/{token}", openapi_extra=form_body(FIELD_NAME, "action", "cadence", repeated=("topic",))
    )
    async def change_preferences(
        request: Request, token: str, background: BackgroundTasks
    ) -> Response:
        form = await read_form(request)
        if site.is_forged(request, form):
            return site.forged_form(request)
        subscription = await run_in_threadpool(_subscription_for, site, token)
        if subscription is None:
            return gone()
        action = text_field(form, "action") or "save"
        if action == "export":
            return await run_in_threadpool(_export, site.engine, subscription)
        if action == "delete":
            return site.form_page(request, "delete.html", subscription=subscription)
        if action == "erase":
            await run_in_threadpool(_erase, site.engine, subscription, site.clock())
            return site.pages.render("deleted.html", email=subscription.email)
        if action == "unsubscribe":
            consent = consent_from(request, source="form:/p", wording=UNSUBSCRIBE_ALL_WORDING)
            left = await run_in_threadpool(
                _unsubscribe_all, site.engine, subscription, consent, site.clock()
            )
            return show(request, left, notice="unsubscribed")
        if action != "save":
            return site.pages.error(400, f"This page cannot do “{action}”.")
        if not subscription.is_active:
            return show(request, subscription, status_code=409)
        info = site.info_for(subscription)
        choices = read_choices(form, info)
        if choices.errors:
            return show(request, subscription, choices=choices, status_code=400)
        topics = stored_topics(choices.topics, info.topics) if info.topics else subscription.topics
        consent = consent_from(request, source="form:/p", wording=preferences_wording(info))
        saved = await run_in_threadpool(
            _save, site.engine, subscription, topics, choices.cadence, consent, site.clock()
        )
        background.add_task(site.send_notice, "preferences-changed", saved)
        return show(request, saved, notice="saved")

    return router


def _subscription_for(site: Site, token: str) -> Subscription | None:
    """The subscription a preferences token opens, if the address is still the subscriber's."""
    subscriber_id, list_name, email = read_preferences_token(site.secret_key, token)
    with site.engine.connect() as conn:
        subscription = service.find_subscription(conn, subscriber_id, list_name)
    if subscription is None or subscription.email != email:
        return None
    return subscription


def _save(
    engine: sa.Engine,
    subscription: Subscription,
    topics: tuple[str, ...],
    cadence: str,
    consent: Consent,
    now: datetime,
) -> Subscription:
    with engine.begin() as conn:
        saved = service.set_preferences(
            conn,
            subscription.subscriber_id,
            subscription.list_name,
            topics=topics,
            cadence=cadence,
            now=now,
            consent=consent,
        )
    log.info(
        "preferences saved subscriber=%s list=%s cadence=%s topics=%d",
        saved.subscriber_id,
        saved.list_name,
        saved.cadence,
        len(saved.topics),
    )
    return saved


def _unsubscribe_all(
    engine: sa.Engine, subscription: Subscription, consent: Consent, now: datetime
) -> Subscription:
    """End every subscription of the person; the page then shows this one as it is now."""
    with engine.begin() as conn:
        left = service.unsubscribe_all(
            conn, subscription.subscriber_id, via="preferences", now=now, consent=consent
        )
        now_shown = service.find_subscription(
            conn, subscription.subscriber_id, subscription.list_name
        )
    log.info(
        "unsubscribed from all subscriber=%s lists=%d via=preferences",
        subscription.subscriber_id,
        left,
    )
    return now_shown or subscription


def _export(engine: sa.Engine, subscription: Subscription) -> Response:
    """Everything stored about the person, as a JSON download."""
    with engine.connect() as conn:
        data: dict[str, Any] | None = service.export_person(conn, subscription.email)
    log.info("data exported subscriber=%s list=%s", *_ids(subscription))
    body = json.dumps(data or {}, indent=2, ensure_ascii=False, default=str) + "\n"
    headers = {
        **PAGE_HEADERS,
        "Content-Disposition": f'attachment; filename="{EXPORT_FILENAME}"',
    }
    return Response(body, media_type="application/json", headers=headers)


def _erase(engine: sa.Engine, subscription: Subscription, now: datetime) -> None:
    with engine.begin() as conn:
        service.forget_person(conn, subscription.email, now=now)
    log.info("person erased subscriber=%s list=%s", *_ids(subscription))


def _ids(subscription: Subscription) -> tuple[int, str]:
    return subscription.subscriber_id, subscription.list_name
