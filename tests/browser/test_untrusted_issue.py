"""An issue built to break the email, drawn by Chromium at 375 and 600 px: attacks in every
field feeds and subscribers control, pictures on every card, a 5,000-character headline with no
spaces and a right-to-left override. Rendered with the bundled templates and personalised.

The page and its pictures (real PNGs) come from an HTTP server on 127.0.0.1, so all of it loads
offline; script is enabled, so any markup an attacker slipped through would run.
"""

from __future__ import annotations

import struct
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest

from digest.models import Issue, Section
from digest.render import (
    PERSONAL_FIELDS,
    RenderContext,
    personalise,
    render_issue,
    template_environment,
)
from tests.browser.chromium import (
    BROWSER_TEST,
    CHROMIUM,
    CHROMIUM_ARGS,
    Layout,
    distorted_pictures,
    measure_layout,
    pictures_that_overflow,
    screenshots_dir,
    small_tap_targets,
)
from tests.render.sample_issue import sample_article, sample_issue

WIDTHS = (375, 600)
# Sizes of the served pictures: a landscape photo, a tall one, a wide logo.
PICTURES = {"/wide.png": (1200, 800), "/tall.png": (400, 1600), "/logo.png": (600, 160)}
# Every attack sets this; script never runs in a safe email, so it must stay unset.
PWN = "window.__pwned = true"
LONG_WORD = "Donaudampfschifffahrtsgesellschaftskapitänswitwe"
# It starts with its unbroken part, so a shortened title still shows a very long word.
LONG_TITLE = (LONG_WORD * 110)[:4985] + " and then words"
OVERRIDDEN = "fdp.exe is ready"  # drawn as "ydaer si exe.pdf" if U+202E took effect
OVERRIDE_SOURCE = "Override Check Source"

pytestmark = BROWSER_TEST
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the playwright package is absent (pip install playwright)"
)

# What an attack would leave behind, and where the two hardest titles ended up.
ATTACK_JS = r"""
({ longWord, overridden, overrideSource }) => {
  const isShown = (element) =>
    element.checkVisibility({ opacityProperty: true, visibilityProperty: true });
  const shownTextWith = (needle) => {
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      if (node.textContent.includes(needle) && isShown(node.parentElement)) return node;
    }
    return null;
  };
  // The card: the nearest ancestor that paints its own background.
  const cardOf = (element) => {
    for (let node = element; node; node = node.parentElement) {
      const colour = getComputedStyle(node).backgroundColor;
      if (colour !== "transparent" && colour !== "rgba(0, 0, 0, 0)") return node;
    }
    return document.body;
  };
  const longNode = shownTextWith(longWord);
  let longTitle = null;
  if (longNode) {
    const range = document.createRange();
    range.selectNodeContents(longNode);
    const rects = [...range.getClientRects()].filter((r) => r.width > 0);
    const card = cardOf(longNode.parentElement).getBoundingClientRect();
    longTitle = {
      lines: new Set(rects.map((r) => Math.round(r.top))).size,
      left: Math.min(...rects.map((r) => r.left)),
      right: Math.max(...rects.map((r) => r.right)),
      card_left: card.left,
      card_right: card.right,
    };
  }
  // Where the first and last letters of `needle` are drawn: left to right unless reversed.
  const letterSpan = (needle) => {
    const node = shownTextWith(needle);
    if (!node) return null;
    const start = node.textContent.indexOf(needle);
    const leftOf = (offset) => {
      const range = document.createRange();
      range.setStart(node, offset);
      range.setEnd(node, offset + 1);
      return range.getBoundingClientRect().left;
    };
    return [leftOf(start), leftOf(start + needle.length - 1)];
  };
  return {
    pwned: window.__pwned === true,
    scripts: document.scripts.length,
    handlers: [...document.querySelectorAll("*")].flatMap((element) =>
      [...element.attributes]
        .filter((attribute) => attribute.name.toLowerCase().startsWith("on"))
        .map((attribute) => `<${element.tagName.toLowerCase()} ${attribute.name}>`)),
    script_urls: [...document.querySelectorAll("[href], [src]")]
      .map((element) => element.getAttribute("href") || element.getAttribute("src"))
      .filter((url) => /^\s*(javascript|vbscript|data):/i.test(url)),
    text: document.body.textContent,
    long_title: longTitle,
    overridden_title: letterSpan(overridden),
    override_source: letterSpan(overrideSource),
  };
}
"""


def png(width: int, height: int) -> bytes:
    """A real RGB PNG of this size (a vertical gradient), built without an imaging library."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        checksum = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + checksum

    rows = b"".join(
        b"\x00" + bytes((40, 90 + 120 * y // height, 160)) * width for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


@dataclass(frozen=True, slots=True)
class Site:
    """The local web server: path → (content type, body); anything else is a 404."""

    url: str
    files: dict[str, tuple[str, bytes]]


def untrusted_issue(site: str) -> Issue:
    """sample_issue(30, hostile=True), a picture on every card, and a section of attacks."""
    issue = sample_issue(30, hostile=True)
    pictures = [f"{site}{path}" for path in ("/wide.png", "/tall.png")]
    pictured = tuple(
        replace(
            section,
            articles=tuple(
                replace(article, image=pictures[(number + index) % 2])
                for index, article in enumerate(section.articles)
            ),
        )
        for number, section in enumerate(issue.sections)
    )
    attacks = Section(
        label=f"Untrusted {{{{ 7*7 }}}} <b onmouseover='{PWN}'>label</b>",
        articles=(
            # A picture that fails to load shows its alt text: the title must stay text.
            sample_article(
                100,
                title=f'"><script>{PWN}</script><img src="/missing.png" onerror="{PWN}">',
                image=f"{site}/missing.png",
                summary=f"<svg onload='{PWN}'></svg> {{{{ 7*7 }}}} summary",
            ),
            sample_article(
                101,
                url=f"javascript:{PWN}",
                title="A link that is not http",
                image=f'{site}/missing.png" onerror="{PWN}',
            ),
            sample_article(102, title=LONG_TITLE, summary=LONG_WORD * 20),
            sample_article(103, title=f"Invoice \u202e{OVERRIDDEN}", source=OVERRIDE_SOURCE),
        ),
    )
    intro = (
        f"Welcome {{{{ 7*7 }}}}.\n\n<script>{PWN}</script>\n\n"
        f"[A link](javascript:{PWN}) and a picture: ![Wide]({site}/wide.png)"
    )
    return replace(issue, sections=(*pictured, attacks), intro=intro)


def personal_values(site: str) -> dict[str, str]:
    """What a subscriber controls is as untrusted as feed text: the name is an attack too."""
    known = {
        "email": "reader@example.org",
        "name": f"<img src=/missing.png onerror='{PWN}'>",
        "unsubscribe_url": f"{site}/u/reader-token",
        "preferences_url": f"{site}/p/reader-token",
    }

    def value(field: str) -> str:
        return f"{site}/{field}/token" if field.endswith("_url") else f"{field} of the reader"

    return {field: known.get(field) or value(field) for field in PERSONAL_FIELDS}


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    files = {path: ("image/png", png(*size)) for path, size in PICTURES.items()}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
            found = files.get(urlsplit(self.path).path)
            if found is None:
                self.send_error(404)
                return
            content_type, body = found
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass  # requests are expected; keep the test output clean

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Site(f"http://127.0.0.1:{server.server_address[1]}", files)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(scope="module")
def issue_url(site: Site) -> str:
    context = RenderContext(
        publication="Untrusted Weekly",
        base_url=site.url,
        logo_url=f"{site.url}/logo.png",
        web_url=f"{site.url}/issue.html",
        show_preferences=True,
    )
    env = template_environment()
    rendered = render_issue(untrusted_issue(site.url), template="digest", env=env, context=context)
    html, _text = personalise(rendered, personal_values(site.url))
    site.files["/issue.html"] = ("text/html; charset=utf-8", html.encode("utf-8"))
    return f"{site.url}/issue.html"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@dataclass(frozen=True, slots=True)
class Drawn:
    """The untrusted issue as Chromium drew it at one width, and what any script did."""

    layout: Layout
    dialogs: tuple[str, ...]
    attack: dict[str, Any]


def draw(browser: Any, url: str, width: int) -> Drawn:
    is_phone = width < 480
    context = browser.new_context(
        viewport={"width": width, "height": 900}, is_mobile=is_phone, has_touch=is_phone
    )
    dialogs: list[str] = []
    try:
        page = context.new_page()
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        page.goto(url, wait_until="load")
        layout = measure_layout(page)
        attack = page.evaluate(
            ATTACK_JS,
            {"longWord": LONG_WORD, "overridden": OVERRIDDEN, "overrideSource": OVERRIDE_SOURCE},
        )
        shot = screenshots_dir() / f"untrusted-issue-{width}px.png"
        page.screenshot(path=str(shot), full_page=True)
    finally:
        context.close()
    return Drawn(layout, tuple(dialogs), attack)


@pytest.fixture(scope="module")
def drawn(browser: Any, issue_url: str) -> Callable[[int], Drawn]:
    cache: dict[int, Drawn] = {}

    def at(width: int) -> Drawn:
        if width not in cache:
            cache[width] = draw(browser, issue_url, width)
        return cache[width]

    return at


def test_the_sentinel_sees_a_script_that_runs(browser: Any, site: Site) -> None:
    # The checks below are only worth something if an attack that works is caught.
    site.files["/attack.html"] = ("text/html", f'<img src="/missing.png" onerror="{PWN}">'.encode())
    page = browser.new_page()
    try:
        page.goto(f"{site.url}/attack.html", wait_until="load")
        assert page.evaluate(ATTACK_JS, {"longWord": "", "overridden": "", "overrideSource": ""})[
            "pwned"
        ]
    finally:
        page.close()


@pytest.mark.parametrize("width", WIDTHS)
def test_no_script_from_feeds_or_subscribers_runs(
    drawn: Callable[[int], Drawn], width: int
) -> None:
    seen = drawn(width)
    assert seen.attack["pwned"] is False
    assert seen.dialogs == ()
    assert seen.attack["scripts"] == 0
    assert seen.attack["handlers"] == []
    assert seen.attack["script_urls"] == []


@pytest.mark.parametrize("width", WIDTHS)
def test_template_syntax_in_content_stays_literal_text(
    drawn: Callable[[int], Drawn], width: int
) -> None:
    text = drawn(width).attack["text"]
    assert "{{ 7*7 }}" in text
    assert "49" not in text


@pytest.mark.parametrize("width", WIDTHS)
def test_the_page_never_scrolls_sideways(drawn: Callable[[int], Drawn], width: int) -> None:
    layout = drawn(width).layout
    assert layout.viewport_width == width
    assert layout.scroll_width <= width


@pytest.mark.parametrize("width", WIDTHS)
def test_every_picture_loads_fits_and_keeps_its_shape(
    drawn: Callable[[int], Drawn], width: int
) -> None:
    layout = drawn(width).layout
    served = [p for p in layout.pictures if "missing" not in p.src]
    assert len(served) >= 30, "the cards should show their pictures"
    assert [p.src for p in served if not p.loaded] == []
    assert pictures_that_overflow(layout) == []
    assert distorted_pictures(layout) == []


@pytest.mark.parametrize("width", WIDTHS)
def test_a_5000_character_title_wraps_inside_its_card(
    drawn: Callable[[int], Drawn], width: int
) -> None:
    title = drawn(width).attack["long_title"]
    assert title is not None, "the long title is not shown"
    assert title["lines"] >= 2, title
    assert title["card_left"] <= title["left"] and title["right"] <= title["card_right"], title
    assert title["card_left"] >= 0 and title["card_right"] <= width, title


@pytest.mark.parametrize("width", WIDTHS)
def test_a_direction_override_in_a_title_reverses_nothing(
    drawn: Callable[[int], Drawn], width: int
) -> None:
    attack = drawn(width).attack
    for name in ("overridden_title", "override_source"):
        span = attack[name]
        assert span is not None, f"{name} is not shown"
        first, last = span
        assert first < last, f"{name} is drawn right to left"


@pytest.mark.parametrize("width", WIDTHS)
def test_text_sizes_and_tap_targets_survive_hostile_content(
    drawn: Callable[[int], Drawn], width: int
) -> None:
    layout = drawn(width).layout
    assert layout.body_font_size >= 14
    assert min(size for size, _count in layout.characters_by_size) >= 12
    assert small_tap_targets(layout) == []
