"""The editor's pages: none opens, and no edit happens, without a live session.

The routes are read from the app, so a page added later is covered without a change here.
Login brute force, session expiry, logout and forged cookies on one page are in
tests/web/test_editor.py; this file covers every route and the cookie flags per scheme.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient

from digest.config import parse_settings
from digest.store import Store
from digest.web.serving import public_app
from tests.security.site import ENVIRON, FullSite, routes
from tests.web.public_site import CONFIG, SECRET, Clock, csrf_token
from tests.web.test_editor import log_in

# Open to everyone by design: the login form, and /editor, which only redirects to /editor/.
PUBLIC = {"/editor/login", "/editor"}


def editor_paths(site: FullSite, method: str) -> list[str]:
    """Each editor route of `method` with its path parameters filled in."""
    found = [p for p in routes(site.app, method) if p.startswith("/editor") and p not in PUBLIC]
    assert found, f"no editor {method} routes: is the editor mounted?"
    filled = []
    for path in found:
        url = path.replace("{issue_id}", str(site.issue_id))
        assert "{" not in url, f"{path}: give its path parameter a value here"
        filled.append(url)
    return filled


def cookie_jars(site: FullSite) -> dict[str, dict[str, str]]:
    """Browsers without a live session: none, a forged one, one that ended, one expired."""
    browser = site.browser(logged_in=True)
    live = browser.cookies["digest_editor"]
    session_id, signature = live.split(".", 1)
    forged = ("A" if session_id[0] != "A" else "B") + session_id[1:] + "." + signature
    token = csrf_token(browser.get("/editor/").text)
    assert browser.post("/editor/logout", data={"csrf_token": token}).status_code == 303
    browser.__exit__(None, None, None)
    expiring = site.browser(logged_in=True)
    jars = {
        "no cookie": {},
        "forged signature": {"digest_editor": forged},
        "unsigned id": {"digest_editor": session_id},
        "session that logged out": {"digest_editor": live},
        "expired session": {"digest_editor": expiring.cookies["digest_editor"]},
    }
    expiring.__exit__(None, None, None)
    site.clock.advance(hours=12, seconds=1)
    return jars


def test_no_editor_page_opens_without_a_live_session(full_site: FullSite) -> None:
    """Attack: open an editor page (issue list, preview, the email as a reader gets it)
    with no session cookie, a forged one, a bare id, one from a session that logged out or
    one past its twelve hours. Each is sent to the login page, showing nothing of the issue."""
    paths = editor_paths(full_site, "GET")
    for jar_name, cookies in cookie_jars(full_site).items():
        for path in paths:
            full_site.client.cookies.clear()
            for name, value in cookies.items():
                full_site.client.cookies.set(name, value, path="/editor")
            answer = full_site.client.get(path)
            where = f"{path} with {jar_name}"
            assert answer.status_code == 303, (where, answer.status_code)
            location = urlsplit(answer.headers["location"])
            assert location.path == "/editor/login", where
            assert parse_qs(location.query)["next"][0].startswith("/editor/"), where
            assert "Story S1" not in answer.text, where


def test_no_editor_form_acts_without_a_live_session(full_site: FullSite) -> None:
    """Attack: POST an edit, a test send, an approval or a cancellation with a valid CSRF
    pair (from the login page) but no live session. Each answers 401 and nothing changes."""
    paths = [p for p in editor_paths(full_site, "POST") if p != "/editor/logout"]
    for jar_name, cookies in cookie_jars(full_site).items():
        browser = full_site.browser()
        token = csrf_token(browser.get("/editor/login").text)
        for name, value in cookies.items():
            browser.cookies.set(name, value, path="/editor")
        before = full_site.snapshot()
        for path in paths:
            answer = browser.post(
                path,
                data={
                    "csrf_token": token,
                    "action": "drop",
                    "article": "s1",
                    "addresses": "editor@example.org",
                    "when": "now",
                    "seen": datetime.now(UTC).isoformat(),
                },
            )
            assert answer.status_code == 401, (path, jar_name, answer.text)
        assert full_site.snapshot() == before, jar_name
        browser.__exit__(None, None, None)


@pytest.mark.parametrize(
    ("base_url", "secure"), [("https://news.example.org", True), ("http://127.0.0.1:8000", False)]
)
def test_editor_cookies_are_httponly_lax_and_secure_exactly_when_served_over_https(
    tmp_path: Path, base_url: str, secure: bool
) -> None:
    """Attack: read the session or CSRF cookie from a script (HttpOnly), send it with a
    cross-site POST (SameSite=Lax), or catch it on plain http when the site is https (Secure).
    A site configured on http (a local preview) must still be able to log in: no Secure."""
    path = tmp_path / "digest.toml"
    path.write_text(CONFIG, encoding="utf-8")
    settings = parse_settings(
        CONFIG, path, {"DIGEST_SECRET_KEY": SECRET, "DIGEST_BASE_URL": base_url}
    )
    store = Store.open(settings.database_url)
    app = public_app(settings, store, clock=Clock(), environ=ENVIRON)
    scheme = urlsplit(base_url).scheme
    with TestClient(app, base_url=f"{scheme}://testserver", follow_redirects=False) as client:
        page = client.get("/editor/login")
        answer = log_in(client)
        assert answer.status_code == 303
        assert client.get("/editor/").status_code == 200
    cookies = {
        header.split("=", 1)[0]: header.lower()
        for header in [
            *page.headers.get_list("set-cookie"),
            *answer.headers.get_list("set-cookie"),
        ]
    }
    assert set(cookies) == {"digest_csrf", "digest_editor"}
    for name, header in cookies.items():
        assert "httponly" in header, name
        assert "samesite=lax" in header, name
        assert ("secure" in header.split("; ")) is secure, (name, header)
    assert "path=/editor" in cookies["digest_editor"]
    store.engine.dispose()
