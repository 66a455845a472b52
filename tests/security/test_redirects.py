"""Open redirects: the one redirect target taken from input, the login form's `next`, stays on
the editor's pages whatever it holds.

Every other redirect of the app goes to a path it builds itself (an issue's page from its
integer id, the login page). tests/web/test_editor.py tries three hostile `next` values; here
they are many, and generated.
"""

from __future__ import annotations

from urllib.parse import urljoin, urlsplit

from hypothesis import given, settings
from hypothesis import strategies as st

from digest.web.editor_auth import safe_next
from tests.security.site import FullSite
from tests.web.public_site import csrf_token
from tests.web.test_editor import PASSWORD

SITE = "https://news.example.org/editor/login"
HOSTILE = [
    "https://evil.example/",
    "//evil.example",
    "///evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "/editor/\\..\\\\evil.example",
    "/editor//evil.example",
    "/editor/..//evil.example",
    "/\t/evil.example",
    "/editor/\t/\t/evil.example",
    "/editor/\r\nLocation: https://evil.example/",
    "/editor/%0d%0aSet-Cookie:%20x=1",
    "javascript:alert(1)",
    "/editor/javascript:alert(1)",
    "https:evil.example",
    "/editor/@evil.example",
    " /editor/",
    '/editor/"><script>alert(1)</script>',
    "/editor/" + "a" * 5000,
]


def where_a_browser_goes(location: str) -> tuple[str, str]:
    """(host, path) a browser on our login page goes to: as WHATWG URL parsing does, it drops
    tabs and line breaks and reads a backslash as a slash first."""
    cleaned = location.translate({9: None, 10: None, 13: None}).replace("\\", "/")
    target = urlsplit(urljoin(SITE, cleaned.strip()))
    return target.netloc, target.path


def assert_on_site(location: str) -> None:
    host, path = where_a_browser_goes(location)
    assert host == "news.example.org", location
    assert path.startswith("/editor/"), location
    assert not any(ord(c) < 32 or c == "\x7f" for c in location), location


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    st.one_of(
        st.text(),
        st.builds(
            str.__add__,
            st.sampled_from(["/editor/", "//", "/\\", "\\", "https://", "/editor//", "/editor/.."]),
            st.text(alphabet=st.characters(codec="ascii")),
        ),
    )
)
def test_any_next_stays_on_the_editor_pages(target: str) -> None:
    """Attack: a link to our login page whose `next` sends the editor, logged in, to another
    site (phishing for the password again) or injects a header. Whatever `next` holds, where
    the browser goes is an /editor/ page of this host."""
    assert_on_site(safe_next(target))


def test_logging_in_with_a_hostile_next_lands_on_the_editor(full_site: FullSite) -> None:
    """Attack: the same through the real login form, with each hostile `next` above: the
    hidden field shown and the Location header after logging in stay on the editor's pages."""
    browser = full_site.browser()
    try:
        for target in HOSTILE:
            page = browser.get("/editor/login", params={"next": target})
            assert page.status_code == 200
            assert "evil.example" not in page.text and "<script>alert" not in page.text, target
            answer = browser.post(
                "/editor/login",
                data={"csrf_token": csrf_token(page.text), "password": PASSWORD, "next": target},
            )
            assert answer.status_code == 303, (target, answer.text)
            assert_on_site(answer.headers["location"])
            full_site.clock.advance(minutes=1)  # one login a minute stays within the rate limit
    finally:
        browser.__exit__(None, None, None)
