"""The editor's pages: log in, list issues, preview one as readers get it, edit, test, approve.

Mounted under /editor by `digest serve` only when DIGEST_EDITOR_PASSWORD is set; without it
every /editor URL is a 404. Every form works without JavaScript and carries a CSRF token
(digest/web/csrf.py); every page but the login form needs the session cookie
(digest/web/editor_auth.py).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from digest.config import Settings
from digest.deliver.backends import MailBackend, backend_from_url
from digest.editing import EditError
from digest.errors import DigestError
from digest.store import EDITABLE_STATUSES, IssueChanged, IssueNotEditable, Store
from digest.web.csrf import FIELD_NAME
from digest.web.editor_auth import EDITOR_PATH, PASSWORD_VARIABLE, EditorAuth, safe_next
from digest.web.editor_site import EMAIL_HEADERS, SEEN_FIELD, Editor, login_url, seen_stamp
from digest.web.editor_views import (
    MAX_TEST_ADDRESSES,
    build_test_messages,
    local_time,
    parse_test_addresses,
    preview_message,
    send_time,
    stats_rows,
)
from digest.web.pages import Pages
from digest.web.ratelimit import retry_after_header
from digest.web.site import IssueId, form_body, read_form, text_field

log = logging.getLogger(__name__)

# What the page says after each change (the redirect carries only the action's name).
DONE = {
    "drop": "Item dropped.",
    "pin": "Item pinned.",
    "unpin": "Item unpinned.",
    "up": "Item moved up.",
    "down": "Item moved down.",
    "move": "Item moved.",
    "rename": "Section renamed.",
    "intro": "Intro saved.",
    "subject": "Subject saved.",
    "test": "Test sent.",
    "approve": "Issue approved.",
    "cancel": "Issue cancelled.",
}
# The fields of the edit forms (editor_site.apply_edit reads each action's own).
EDIT_FORM = form_body(
    FIELD_NAME, SEEN_FIELD, "action", "article", "section", "label", "new_section", "to",
    "intro", "subject",
)  # fmt: skip
CHANGED = (
    "The issue changed since you opened it, so nothing was changed; here it is now. "
    "Check it and make your change again."
)


def _issue_url(issue_id: int, **query: str) -> str:
    return f"{EDITOR_PATH}/issues/{issue_id}" + (f"?{urlencode(query)}" if query else "")


def _host(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def editor_routes(editor: Editor) -> APIRouter:
    router = APIRouter(prefix=EDITOR_PATH)
    auth = editor.auth

    @router.get("")
    def editor_home() -> RedirectResponse:
        return _see_other(f"{EDITOR_PATH}/")

    @router.get("/login")
    def login_page(request: Request, next: str = "") -> HTMLResponse:
        return editor.page(request, "login.html", next=safe_next(next), failed=False)

    @router.post("/login", openapi_extra=form_body(FIELD_NAME, "password", "next"))
    async def login(request: Request) -> Response:
        form = await read_form(request)
        target = safe_next(text_field(form, "next"))
        if editor.is_forged(request, form):
            return editor.error(403, "The login form was out of date; open it again.", login_url())
        wait = auth.wait_before_attempt(request)
        if wait > 0:
            log.warning("editor login refused: too many attempts client=%s", _host(request))
            response = editor.error(429, "Too many login attempts; wait a minute.", login_url())
            response.headers["Retry-After"] = retry_after_header(wait)
            return response
        password = form.get("password")
        if not auth.is_password(password if isinstance(password, str) else ""):
            log.info("editor login failed client=%s", _host(request))
            return editor.page(request, "login.html", 401, next=target, failed=True)
        log.info("editor logged in client=%s", _host(request))
        response = _see_other(target)
        await run_in_threadpool(auth.start_session, request, response)
        return response

    @router.post("/logout", openapi_extra=form_body(FIELD_NAME, "everywhere"))
    async def logout(request: Request) -> Response:
        form = await read_form(request)
        if editor.is_forged(request, form):
            return editor.error(
                403, "The form was out of date; open the page again.", f"{EDITOR_PATH}/"
            )
        everywhere = text_field(form, "everywhere") == "yes"
        response = _see_other(login_url())
        ended = await run_in_threadpool(
            lambda: auth.end_session(request, response, everywhere=everywhere)
        )
        log.info("editor logged out client=%s sessions_ended=%s", _host(request), ended)
        return response

    @router.get("/")
    def issue_list(request: Request) -> Response:
        if not auth.is_logged_in(request):
            return _see_other(login_url(f"{EDITOR_PATH}/"))
        summaries = editor.store.issue_summaries()
        zones = {d.name: d.zone for d in editor.settings.digests}
        return editor.page(
            request,
            "issues.html",
            issues=summaries,
            local_time=lambda at, digest: local_time(at, zones[digest]) if digest in zones else at,
        )

    @router.get("/issues/{issue_id}")
    def issue_page(
        request: Request,
        issue_id: IssueId,
        topics: Annotated[list[str], Query()] = [],  # noqa: B006 (FastAPI copies defaults)
        reader: str = "",
        done: str = "",
        sent: int = 0,
    ) -> Response:
        if not auth.is_logged_in(request):
            return _see_other(login_url(str(request.url.path)))
        return _show_issue(editor, request, issue_id, tuple(topics), reader, done, sent)

    @router.get("/issues/{issue_id}/email")
    def email_html(
        request: Request,
        issue_id: IssueId,
        topics: Annotated[list[str], Query()] = [],  # noqa: B006
        reader: str = "",
    ) -> Response:
        if not auth.is_logged_in(request):
            return _see_other(login_url(_issue_url(issue_id)))
        try:
            preview = preview_message(
                editor.settings,
                editor.store,
                editor.load(issue_id),
                topics=topics,
                reader=reader,
                now=editor.clock(),
            )
        except DigestError as error:
            return editor.error(404, str(error), _issue_url(issue_id))
        if preview is None:
            return editor.error(
                404, "These topics get nothing from this issue.", _issue_url(issue_id)
            )
        return HTMLResponse(preview.html, headers=EMAIL_HEADERS)

    @router.post("/issues/{issue_id}/edit", openapi_extra=EDIT_FORM)
    async def edit(request: Request, issue_id: IssueId) -> Response:
        form = await read_form(request)
        refused = await editor.refusal(request, form)
        if refused is not None:
            return refused
        action = text_field(form, "action")
        try:
            await run_in_threadpool(editor.save_edit, issue_id, action, form)
        except IssueChanged:
            return _changed(editor, request, issue_id)
        except IssueNotEditable as error:
            return editor.error(409, str(error), _issue_url(issue_id))
        except DigestError as error:
            return editor.error(400, str(error), _issue_url(issue_id))
        return _see_other(_issue_url(issue_id, done=action) + "#edit")

    @router.post(
        "/issues/{issue_id}/test",
        openapi_extra=form_body(FIELD_NAME, "addresses", repeated=("topics",)),
    )
    async def send_test(request: Request, issue_id: IssueId) -> Response:
        form = await read_form(request)
        refused = await editor.refusal(request, form)
        if refused is not None:
            return refused
        topics = tuple(v for v in form.getlist("topics") if isinstance(v, str) and v)
        try:
            addresses = parse_test_addresses(text_field(form, "addresses"))
            issue = editor.load(issue_id)
            messages = await run_in_threadpool(
                build_test_messages, editor.settings, issue, addresses, topics
            )
            results = await editor.backend.send(messages, date=editor.clock())
        except DigestError as error:
            return editor.error(400, str(error), _issue_url(issue_id))
        failed = [r for r in results if r.state != "sent"]
        log.info(
            "editor: issue=%s test sent=%s failed=%s",
            issue_id,
            len(results) - len(failed),
            len(failed),
        )
        if failed:
            reasons = "; ".join(r.error or r.state for r in failed)
            return editor.error(
                502, f"The test was not sent to every address: {reasons}", _issue_url(issue_id)
            )
        return _see_other(_issue_url(issue_id, done="test", sent=str(len(results))) + "#test")

    @router.post(
        "/issues/{issue_id}/approve",
        openapi_extra=form_body(FIELD_NAME, SEEN_FIELD, "when", "send_at"),
    )
    async def approve(request: Request, issue_id: IssueId) -> Response:
        form = await read_form(request)
        refused = await editor.refusal(request, form)
        if refused is not None:
            return refused
        try:
            seen = seen_stamp(issue_id, form)
            issue = editor.load(issue_id)
            zone = editor.settings.digest(issue.digest).zone
            raw = text_field(form, "send_at") if text_field(form, "when") == "later" else ""
            if text_field(form, "when") == "later" and not raw:
                raise EditError("choose the time to send at, or approve to send now")
            if issue.article_count == 0:
                raise EditError(f"issue {issue_id} has no items left; there is nothing to send")
            at = send_time(raw, zone, editor.clock())
            await run_in_threadpool(
                lambda: editor.store.approve_issue(
                    issue_id, send_after=at, now=editor.clock(), seen=seen
                )
            )
        except IssueChanged:
            return _changed(editor, request, issue_id)
        except IssueNotEditable as error:
            return editor.error(409, str(error), _issue_url(issue_id))
        except DigestError as error:
            return editor.error(400, str(error), _issue_url(issue_id))
        log.info(
            "editor: issue=%s approved send_after=%s", issue_id, at.isoformat() if at else "now"
        )
        return _see_other(_issue_url(issue_id, done="approve"))

    @router.post("/issues/{issue_id}/cancel", openapi_extra=form_body(FIELD_NAME, SEEN_FIELD))
    async def cancel(request: Request, issue_id: IssueId) -> Response:
        form = await read_form(request)
        refused = await editor.refusal(request, form)
        if refused is not None:
            return refused
        try:
            seen = seen_stamp(issue_id, form)
            await run_in_threadpool(
                lambda: editor.store.cancel_issue(issue_id, now=editor.clock(), seen=seen)
            )
        except IssueChanged:
            return _changed(editor, request, issue_id)
        except IssueNotEditable as error:
            return editor.error(409, str(error), _issue_url(issue_id))
        log.info("editor: issue=%s cancelled", issue_id)
        return _see_other(_issue_url(issue_id, done="cancel"))

    return router


def _changed(editor: Editor, request: Request, issue_id: int) -> Response:
    """409: the form was for an older version of the issue; show the issue as it is now."""
    log.info("editor: issue=%s form refused: the issue changed since it was opened", issue_id)
    return _show_issue(editor, request, issue_id, (), "", "", 0, status_code=409, changed=True)


def _show_issue(
    editor: Editor,
    request: Request,
    issue_id: int,
    topics: tuple[str, ...],
    reader: str,
    done: str,
    sent: int,
    *,
    status_code: int = 200,
    changed: bool = False,
) -> Response:
    # The stamp first: if the issue changes between the two reads, the forms carry the older
    # stamp and are refused, rather than carrying the newer one over content not shown.
    summary = editor.store.issue_summary(issue_id)
    issue = editor.store.load_issue(issue_id)
    if issue is None or summary is None:
        return editor.error(404, f"There is no issue {issue_id}.", f"{EDITOR_PATH}/")
    try:
        digest = editor.settings.digest(issue.digest)
    except DigestError as error:
        return editor.error(404, str(error), f"{EDITOR_PATH}/")
    preview, problem = None, ""
    try:
        preview = preview_message(
            editor.settings, editor.store, issue, topics=topics, reader=reader, now=editor.clock()
        )
    except DigestError as error:
        problem = str(error)
    if preview is None and not problem:
        problem = (
            "Readers with these topics get nothing from this issue, so nothing is sent to them."
        )
    view = [("topics", t) for t in (preview.topics if preview else topics)]
    if reader:
        view.append(("reader", reader))
    done_message = DONE.get(done, "")
    if done == "test":
        done_message = f"Test sent to {sent} address{'es' if sent != 1 else ''}."
    return editor.page(
        request,
        "issue.html",
        status_code,
        issue=issue,
        summary=summary,
        seen=(SEEN_FIELD, summary.updated.isoformat()),
        changed=CHANGED if changed else "",
        editable=summary.status in EDITABLE_STATUSES,
        cancellable=summary.status in EDITABLE_STATUSES,
        preview=preview,
        problem=problem,
        offered_topics=[t.name for t in digest.topics],
        is_topic=lambda label: label.casefold() in {t.name.casefold() for t in digest.topics},
        chosen_topics=set(preview.topics if preview else topics),
        reader=reader,
        email_url=f"{_issue_url(issue_id)}/email" + (f"?{urlencode(view)}" if view else ""),
        stats=stats_rows(summary.outbox, editor.store.issue_event_counts(issue_id)),
        send_after=local_time(summary.send_after, digest.zone),
        zone=digest.timezone,
        done=done_message,
        pinned=set(issue.pinned),
        max_test=MAX_TEST_ADDRESSES,
    )


def mount_editor(
    app: FastAPI,
    settings: Settings,
    store: Store,
    *,
    clock: Callable[[], datetime],
    environ: Mapping[str, str] = os.environ,
    backend: MailBackend | None = None,
) -> bool:
    """Add the editor's pages to `app` when DIGEST_EDITOR_PASSWORD is set; True if it did."""
    password = environ.get(PASSWORD_VARIABLE, "")
    if not password:
        log.info("editor pages are off: %s is not set", PASSWORD_VARIABLE)
        return False
    auth = EditorAuth(
        password=password,
        secret_key=settings.require_secret_key(),
        sessions=store,
        clock=clock,
        is_https=settings.base_url.startswith("https://"),
    )
    editor = Editor(
        settings=settings,
        store=store,
        auth=auth,
        pages=Pages(settings.file.name),
        clock=clock,
        backend=backend or backend_from_url(settings.mail_url),
    )
    app.include_router(editor_routes(editor))
    return True
