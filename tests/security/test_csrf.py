"""Cross-site request forgery: every state-changing form of the site refuses a forged POST.

The POST routes are read from the app itself, so a form added later without a case here fails
the test. Each form is sent with each forgery an attacker can make, and the database and the
mail folder must stay exactly as they were; then it is sent as a browser sends it, and must
change something (else the refusals would prove nothing).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fastapi.testclient import TestClient

from digest.web.csrf import COOKIE_NAME, FIELD_NAME, CsrfGuard, SessionCsrfGuard
from tests.security.site import FullSite, routes, session_binding
from tests.web.public_site import SECRET, TOPICS, csrf_token
from tests.web.test_editor import PASSWORD, seen_stamp

# POSTs that carry no CSRF token on purpose. The one-click unsubscribe: mail providers POST it
# with no cookie (RFC 8058); the signed token in its URL is the proof (digest/web/app.py).
# The webhook: SendGrid's servers call it, and its ECDSA signature is the proof
# (tests/security/test_webhook.py, tests/web/test_webhooks.py).
EXEMPT = {"/u/{token}", "/webhooks/sendgrid"}


@dataclass(frozen=True)
class Form:
    """Where a form is shown, where it posts, and what a browser fills in."""

    page: Callable[[FullSite], str]
    action: Callable[[FullSite], str]
    fields: Callable[[FullSite, str], dict[str, str | list[str]]]  # given the page's HTML
    editor: bool = False  # signed for the editor's session, and sent by a logged-in browser
    logged_in: bool = True  # (editor forms) whether the browser has a session


def _issue(site: FullSite) -> str:
    return f"/editor/issues/{site.issue_id}"


def _signup(_site: FullSite, _page: str) -> dict[str, str | list[str]]:
    return {"email": "new@example.org", "topic": list(TOPICS), "cadence": "weekly"}


FORMS: dict[str, Form] = {
    "/subscribe": Form(lambda s: "/subscribe", lambda s: "/subscribe", _signup),
    "/subscribe/{list_name}": Form(
        lambda s: "/subscribe/weekly", lambda s: "/subscribe/weekly", _signup
    ),
    "/confirm/{token}": Form(
        lambda s: f"/confirm/{s.tokens()['confirm']}",
        lambda s: f"/confirm/{s.tokens()['confirm']}",
        lambda s, page: {},
    ),
    "/p/{token}": Form(
        lambda s: f"/p/{s.tokens()['preferences']}",
        lambda s: f"/p/{s.tokens()['preferences']}",
        lambda s, page: {"action": "save", "topic": ["Science"], "cadence": "daily"},
    ),
    "/editor/login": Form(
        lambda s: "/editor/login",
        lambda s: "/editor/login",
        lambda s, page: {"password": PASSWORD, "next": "/editor/"},
        editor=True,
        logged_in=False,
    ),
    "/editor/logout": Form(
        lambda s: "/editor/", lambda s: "/editor/logout", lambda s, page: {}, editor=True
    ),
    "/editor/issues/{issue_id}/edit": Form(
        _issue,
        lambda s: f"{_issue(s)}/edit",
        lambda s, page: {"action": "drop", "article": "s1", "seen": seen_stamp(page)},
        editor=True,
    ),
    "/editor/issues/{issue_id}/test": Form(
        _issue,
        lambda s: f"{_issue(s)}/test",
        lambda s, page: {"addresses": "editor@example.org", "seen": seen_stamp(page)},
        editor=True,
    ),
    "/editor/issues/{issue_id}/approve": Form(
        _issue,
        lambda s: f"{_issue(s)}/approve",
        lambda s, page: {"when": "now", "seen": seen_stamp(page)},
        editor=True,
    ),
    "/editor/issues/{issue_id}/cancel": Form(
        _issue,
        lambda s: f"{_issue(s)}/cancel",
        lambda s, page: {"seen": seen_stamp(page)},
        editor=True,
    ),
}


def forgeries(client: TestClient, form: Form) -> dict[str, dict[str, str] | None]:
    """The CSRF field each forgery sends (None: no field at all), for this browser's cookie."""
    nonce = client.cookies[COOKIE_NAME]
    binding = session_binding(client) if form.editor and form.logged_in else ""
    if form.editor:
        other_browser = SessionCsrfGuard(SECRET).pair_for(None, binding).field_value
        other_key = SessionCsrfGuard("not-our-secret").pair_for(nonce, binding).field_value
        other_kind = CsrfGuard(SECRET).pair_for(nonce).field_value
        stale_session = SessionCsrfGuard(SECRET).pair_for(nonce, "0" * 64).field_value
    else:
        other_browser = CsrfGuard(SECRET).pair_for(None).field_value
        other_key = CsrfGuard("not-our-secret").pair_for(nonce).field_value
        other_kind = SessionCsrfGuard(SECRET).pair_for(nonce, "").field_value
        stale_session = nonce  # the bare nonce, unsigned
    return {
        "no field": None,
        "empty field": {FIELD_NAME: ""},
        "field made for another browser's cookie": {FIELD_NAME: other_browser},
        "field signed with another key": {FIELD_NAME: other_key},
        "field of the other kind (public vs editor)": {FIELD_NAME: other_kind},
        "field for another session, or unsigned": {FIELD_NAME: stale_session},
    }


def test_every_form_refuses_forgeries_and_takes_the_genuine_post(full_site: FullSite) -> None:
    """Attack: another site makes the reader's (or editor's) browser POST a form, with the
    site's cookies but without a CSRF field it could read: missing, empty, made for another
    cookie, signed with another key, of the other kind, or for another session; or the
    genuine field without its cookie. Each is refused with 403 and nothing is stored or sent.
    Every POST route of the app must be one of these forms or a documented exception, and
    each form, sent genuinely (in FORMS' order, on one site), must change something."""
    declared = set(routes(full_site.app, "POST"))
    assert declared == set(FORMS) | EXEMPT, (
        f"POST routes without a CSRF case: {sorted(declared - set(FORMS) - EXEMPT)}; "
        f"cases for routes that are gone: {sorted(set(FORMS) | EXEMPT - declared)}"
    )
    for route, form in FORMS.items():
        browser = full_site.browser(logged_in=form.editor and form.logged_in)
        try:
            check_form(full_site, browser, route, form)
        finally:
            browser.__exit__(None, None, None)
        full_site.clock.advance(minutes=1)  # one login a minute stays within the rate limit


def check_form(site: FullSite, browser: TestClient, route: str, form: Form) -> None:
    page = browser.get(form.page(site))
    assert page.status_code == 200, (route, page.text)
    fields = form.fields(site, page.text)
    genuine = csrf_token(page.text)
    before = site.snapshot()
    for forgery, field in forgeries(browser, form).items():
        answer = browser.post(form.action(site), data={**fields, **(field or {})})
        assert answer.status_code == 403, (route, forgery, answer.status_code, answer.text)
        assert site.snapshot() == before, f"{route}: {forgery} changed something"

    nonce = browser.cookies[COOKIE_NAME]
    del browser.cookies[COOKIE_NAME]
    answer = browser.post(form.action(site), data={**fields, FIELD_NAME: genuine})
    assert answer.status_code == 403, (route, "no cookie", answer.text)
    assert site.snapshot() == before, f"{route}: a field without its cookie worked"

    browser.cookies.set(COOKIE_NAME, nonce)
    answer = browser.post(form.action(site), data={**fields, FIELD_NAME: genuine})
    assert answer.status_code in (200, 303), (route, answer.text)
    assert site.snapshot() != before, f"{route}: the genuine form changed nothing"
