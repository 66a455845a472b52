"""What the editor's pages share: settings, store, session, CSRF, and the edits forms ask for."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from digest.config import Settings
from digest.deliver.backends import MailBackend
from digest.editing import (
    EditError,
    drop_item,
    move_item,
    move_to_section,
    pin_item,
    rename_section,
    set_intro,
    set_subject,
)
from digest.messages import MessageFactory
from digest.models import Issue
from digest.store import IssueChanged, IssueNotEditable, Store
from digest.web.csrf import COOKIE_NAME, FIELD_NAME, SessionCsrfGuard, set_csrf_cookie
from digest.web.editor_auth import EDITOR_PATH, EditorAuth
from digest.web.pages import PAGE_HEADERS, Pages
from digest.web.site import text_field

log = logging.getLogger(__name__)

# The hidden field in every form that changes an issue: the issue's `updated` stamp when the
# page was made, so a change made meanwhile (another tab, another editor, the scheduler)
# refuses the form instead of being overwritten or approved unseen.
SEEN_FIELD = "seen"

# Editor pages frame the previews (same origin only) and run no script.
EDITOR_HEADERS = {
    **PAGE_HEADERS,
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src https: http: data:; "
        "frame-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
}
# The email in its iframe: sandboxed (no script, no forms, no access to the editor's
# cookies or pages), only our own pages may frame it.
EMAIL_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "sandbox allow-popups allow-popups-to-escape-sandbox; default-src 'none'; "
        "style-src 'unsafe-inline'; img-src https: http: data:; form-action 'none'; "
        "frame-ancestors 'self'; base-uri 'none'"
    ),
}


@dataclass(frozen=True)
class Editor:
    settings: Settings
    store: Store
    auth: EditorAuth
    pages: Pages
    clock: Callable[[], datetime]
    backend: MailBackend
    csrf: SessionCsrfGuard = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "csrf", SessionCsrfGuard(self.settings.require_secret_key()))

    def page(
        self, request: Request, template: str, status_code: int = 200, **context: object
    ) -> HTMLResponse:
        """An editor page; its forms get the CSRF field, the browser the cookie it pairs with."""
        pair = self.csrf.pair_for(request.cookies.get(COOKIE_NAME), self.auth.csrf_binding(request))
        response = self.pages.render(
            f"editor/{template}", status_code, csrf=(FIELD_NAME, pair.field_value), **context
        )
        response.headers.update(EDITOR_HEADERS)
        set_csrf_cookie(response, pair, is_https=self.auth.is_https)
        return response

    def error(self, status_code: int, message: str, back: str) -> HTMLResponse:
        return self.pages.error(status_code, message, next_link=(back, "Back"))

    def is_forged(self, request: Request, form: FormData) -> bool:
        value = form.get(FIELD_NAME)
        return not self.csrf.is_valid(
            request.cookies.get(COOKIE_NAME),
            value if isinstance(value, str) else None,
            self.auth.csrf_binding(request),
        )

    async def refusal(self, request: Request, form: FormData) -> Response | None:
        """Why a POST is refused (no session, no valid CSRF token), or None to go ahead."""
        if not await run_in_threadpool(self.auth.is_logged_in, request):
            return self.error(401, "Your editor session has ended; log in again.", login_url())
        if self.is_forged(request, form):
            log.info("editor form rejected: CSRF token missing path=%s", request.url.path)
            return self.error(
                403,
                "This form was out of date or came from another site, so nothing was changed.",
                str(request.url.path).rsplit("/", 1)[0],
            )
        return None

    def load(self, issue_id: int) -> Issue:
        issue = self.store.load_issue(issue_id)
        if issue is None:
            raise IssueNotEditable(f"issue {issue_id}: no such issue")
        return issue

    def save_edit(self, issue_id: int, action: str, form: FormData) -> None:
        """Apply one edit, render the result (a template error refuses it), then store it,
        only if the issue is still as the form's page showed it."""
        seen = seen_stamp(issue_id, form)
        issue = self.load(issue_id)
        topics = tuple(t.name for t in self.settings.digest(issue.digest).topics)
        edited = apply_edit(issue, action, form, topics)
        MessageFactory(self.settings, edited).variant(())  # re-render: fails before saving
        self.store.save_issue_edits(edited, now=self.clock(), seen=seen)
        log.info("editor: issue=%s %s", issue_id, action)


def apply_edit(issue: Issue, action: str, form: FormData, topics: tuple[str, ...]) -> Issue:
    """The edit a form asks for; EditError for an unknown one."""
    article = text_field(form, "article")
    if action == "drop":
        return drop_item(issue, article)
    if action in ("pin", "unpin"):
        return pin_item(issue, article, pinned=action == "pin")
    if action in ("up", "down"):
        return move_item(issue, article, -1 if action == "up" else 1)
    if action == "move":
        return move_to_section(
            issue, article, text_field(form, "new_section") or text_field(form, "to")
        )
    if action == "rename":
        return rename_section(
            issue, text_field(form, "section"), text_field(form, "label"), topics=topics
        )
    if action == "intro":
        value = form.get("intro")
        return set_intro(issue, value if isinstance(value, str) else "")
    if action == "subject":
        return set_subject(issue, text_field(form, "subject"))
    raise EditError(f"unknown edit {action[:40]!r}")


def seen_stamp(issue_id: int, form: FormData) -> datetime:
    """The issue's `updated` stamp the form was made with; IssueChanged when it has none."""
    value = form.get(SEEN_FIELD)
    try:
        seen = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        seen = None
    if seen is None or seen.tzinfo is None:
        raise IssueChanged(f"issue {issue_id}: the form does not say which version it was for")
    return seen


def login_url(next_path: str = "") -> str:
    query = f"?{urlencode({'next': next_path})}" if next_path else ""
    return f"{EDITOR_PATH}/login{query}"
