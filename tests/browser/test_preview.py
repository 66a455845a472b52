"""The demo's digest as a reader sees it: Chromium on a phone, in a 600 px email pane and on a
desktop, light and dark.

`digest demo` runs once per module through the real CLI; the preview HTML and the text/html
part of one delivered .eml are each opened in Debian's Chromium and measured there, and
compared with the plain-text part that travels beside them.
A full-page PNG of every rendering looked at is kept in <repo>/test-artefacts/screenshots
(or $DIGEST_SCREENSHOTS), named by document, width and colour scheme.
"""

from __future__ import annotations

import email
import json
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from digest.cli import app
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

VIEWPORTS = {
    "phone": {"width": 375, "height": 812},
    # An email client's reading pane: the width email layouts are designed for.
    "pane": {"width": 600, "height": 900},
    "desktop": {"width": 1024, "height": 768},
}
EMAIL_WIDTHS = ("phone", "pane")
DOCUMENTS = ("preview", "email")
# Email clients centre a column of about 600 px; wider lines are hard to read on a desktop.
MAX_COLUMN_WIDTH = 640

pytestmark = BROWSER_TEST
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the playwright package is absent (pip install playwright)"
)

# Every text node of the body: where it is drawn, in which size and colours, or that it is not.
SNAPSHOT_JS = r"""
() => {
  const numbers = (colour) => (colour.match(/[\d.]+/g) || []).map(Number);
  const isOpaque = (colour) => {
    const parts = numbers(colour);
    return parts.length === 3 || (parts.length >= 4 && parts[3] > 0);
  };
  const backgroundOf = (element) => {
    for (let node = element; node; node = node.parentElement) {
      const colour = getComputedStyle(node).backgroundColor;
      if (isOpaque(colour)) return colour;
    }
    return null;
  };
  const runs = [];
  const hidden = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const text = node.textContent.replace(/[\s\u034f\u200c]+/g, " ").trim();
    if (!text) continue;
    const element = node.parentElement;
    const range = document.createRange();
    range.selectNodeContents(node);
    const rects = [...range.getClientRects()].filter((r) => r.width > 0 && r.height > 0);
    const shown = rects.length > 0 &&
      element.checkVisibility({ opacityProperty: true, visibilityProperty: true });
    if (!shown) {
      hidden.push({ text, visible_before: runs.length });
      continue;
    }
    const style = getComputedStyle(element);
    runs.push({
      text,
      left: Math.min(...rects.map((r) => r.left)),
      right: Math.max(...rects.map((r) => r.right)),
      top: Math.min(...rects.map((r) => r.top)) + window.scrollY,
      font_size: parseFloat(style.fontSize),
      font_weight: parseInt(style.fontWeight, 10),
      color: style.color,
      background: backgroundOf(element),
    });
  }
  const links = [...document.querySelectorAll("a")].map((a) => {
    const href = a.getAttribute("href") || "";
    return {
      href,
      text: a.textContent.replace(/\s+/g, " ").trim(),
      // "#id" jumps within the page (the contents list): fine when that element exists.
      is_in_page: href.startsWith("#") && document.getElementById(href.slice(1)) !== null,
    };
  });
  return {
    runs,
    hidden,
    links,
    layout_width: window.innerWidth,
    scroll_width: document.scrollingElement.scrollWidth,
  };
}
"""


@dataclass(frozen=True, slots=True)
class Document:
    """One HTML rendering of the issue and the plain text that travels with it."""

    html: Path
    text: str
    message: EmailMessage | None


@dataclass(frozen=True, slots=True)
class TextRun:
    text: str
    left: float
    right: float
    top: float
    font_size: float
    font_weight: int
    color: str
    background: str | None


@dataclass(frozen=True, slots=True)
class HiddenText:
    text: str
    visible_before: int


@dataclass(frozen=True, slots=True)
class Link:
    href: str
    text: str
    is_in_page: bool


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What Chromium drew for one document at one viewport and colour scheme."""

    runs: tuple[TextRun, ...]
    hidden: tuple[HiddenText, ...]
    links: tuple[Link, ...]
    screen_width: int
    layout_width: int
    scroll_width: int
    layout: Layout

    def text_span(self) -> tuple[float, float]:
        return min(run.left for run in self.runs), max(run.right for run in self.runs)

    def run_equal_to(self, text: str) -> TextRun | None:
        wanted = text.casefold()  # headings are upper-cased by CSS in HTML, by code in text
        return next((run for run in self.runs if run.text.casefold() == wanted), None)

    def run_starting_with(self, text: str) -> TextRun | None:
        wanted = text.casefold()
        return next((run for run in self.runs if run.text.casefold().startswith(wanted)), None)


@dataclass(frozen=True, slots=True)
class Outline:
    sections: tuple[str, ...]
    headlines: tuple[str, ...]


def outline_of(text: str) -> Outline:
    """Section labels (underlined with dashes) and headlines ('* ' items) of a text digest.

    A headline too long for one 78-column line is wrapped; its first line is what we get.
    """
    lines = [line.rstrip() for line in text.splitlines()]
    sections = tuple(
        line.strip()
        for line, under in zip(lines, lines[1:], strict=False)
        if line.strip() and set(under) == {"-"} and len(under) == len(line.strip())
    )
    headlines = tuple(line[2:].strip() for line in lines if line.startswith("* "))
    return Outline(sections, headlines)


def _channels(colour: str) -> tuple[float, ...]:
    return tuple(float(part) for part in re.findall(r"[\d.]+", colour))


def _luminance(rgb: tuple[float, float, float]) -> float:
    def linear(channel: float) -> float:
        c = channel / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_ratio(foreground: str, background: str | None) -> float:
    """WCAG contrast of CSS rgb()/rgba() colours, a translucent foreground blended first."""
    back = _channels(background or "rgb(255, 255, 255)")[:3]
    front = _channels(foreground)
    alpha = front[3] if len(front) > 3 else 1.0
    blended = tuple(alpha * f + (1 - alpha) * b for f, b in zip(front[:3], back, strict=True))
    lighter, darker = sorted((_luminance(blended), _luminance(back)), reverse=True)  # type: ignore[arg-type]
    return (lighter + 0.05) / (darker + 0.05)


def required_contrast(run: TextRun) -> float:
    """WCAG AA: 4.5:1, or 3:1 for large text (24 px, or 18.66 px bold)."""
    is_large = run.font_size >= 24 or (run.font_size >= 18.66 and run.font_weight >= 700)
    return 3.0 if is_large else 4.5


def _snapshot(
    browser: Any, html: Path, viewport: str, scheme: str, name: str, shots: Path
) -> Snapshot:
    is_phone = viewport == "phone"
    context = browser.new_context(
        viewport=VIEWPORTS[viewport], is_mobile=is_phone, has_touch=is_phone
    )
    try:
        page = context.new_page()
        page.emulate_media(color_scheme=scheme)
        page.goto(html.as_uri(), wait_until="load")
        seen = page.evaluate(SNAPSHOT_JS)
        layout = measure_layout(page)
        width = VIEWPORTS[viewport]["width"]
        page.screenshot(path=str(shots / f"{name}-{width}px-{scheme}.png"), full_page=True)
    finally:
        context.close()
    return Snapshot(
        runs=tuple(TextRun(**run) for run in seen["runs"]),
        hidden=tuple(HiddenText(**block) for block in seen["hidden"]),
        links=tuple(Link(**link) for link in seen["links"]),
        screen_width=VIEWPORTS[viewport]["width"],
        layout_width=seen["layout_width"],
        scroll_width=seen["scroll_width"],
        layout=layout,
    )


@pytest.fixture(scope="module")
def documents(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Document]:
    folder = tmp_path_factory.mktemp("browser") / "digest-demo"
    result = CliRunner().invoke(app, ["demo", str(folder), "--json"])
    assert result.exit_code == 0, result.output
    demo = json.loads(result.stdout)
    preview = Path(demo["preview"])
    eml = sorted(Path(demo["outbox"]).glob("*.eml"))[0]
    message = email.message_from_bytes(eml.read_bytes(), policy=default)
    assert isinstance(message, EmailMessage)
    html_part = folder.parent / f"{eml.stem}.html"
    html_part.write_text(message.get_body(("html",)).get_content(), encoding="utf-8")
    return {
        "preview": Document(preview, preview.with_suffix(".txt").read_text("utf-8"), None),
        "email": Document(html_part, message.get_body(("plain",)).get_content(), message),
    }


@pytest.fixture(scope="module")
def browser(documents: dict[str, Document]) -> Iterator[Any]:
    # Playwright's sync API keeps an event loop running on this thread while it is open, and
    # the demo calls asyncio.run(): so the demo (documents) must run before the browser starts.
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def seen(browser: Any, documents: dict[str, Document]) -> Callable[..., Snapshot]:
    """Look at a document once per (viewport, scheme); later tests reuse the measurements."""
    shots = screenshots_dir()
    cache: dict[tuple[str, str, str], Snapshot] = {}

    def look(document: str, viewport: str, scheme: str = "light") -> Snapshot:
        key = (document, viewport, scheme)
        if key not in cache:
            html = documents[document].html
            cache[key] = _snapshot(browser, html, viewport, scheme, document, shots)
        return cache[key]

    return look


@pytest.mark.parametrize("viewport", EMAIL_WIDTHS)
@pytest.mark.parametrize("document", DOCUMENTS)
def test_page_never_scrolls_sideways_or_cuts_text(
    seen: Callable[..., Snapshot], document: str, viewport: str
) -> None:
    page = seen(document, viewport)
    # Without a device-width viewport a phone lays the page out 980 px wide and zooms out.
    assert page.layout_width == page.screen_width
    assert page.scroll_width <= page.screen_width + 1
    left, right = page.text_span()
    assert left >= 0 and right <= page.screen_width + 1


@pytest.mark.parametrize("document", DOCUMENTS)
def test_phone_text_uses_most_of_the_screen_width(
    seen: Callable[..., Snapshot], document: str
) -> None:
    page = seen(document, "phone")
    left, right = page.text_span()
    assert right - left >= 0.8 * page.screen_width


@pytest.mark.parametrize("document", DOCUMENTS)
def test_desktop_reading_column_is_centred_and_at_most_640px(
    seen: Callable[..., Snapshot], document: str
) -> None:
    page = seen(document, "desktop")
    left, right = page.text_span()
    assert right - left <= MAX_COLUMN_WIDTH
    # Centred: the text's right edge stops short of the column by at most one padding.
    assert abs(left - (page.screen_width - right)) <= 24


@pytest.mark.parametrize("viewport", VIEWPORTS)
@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_section_heading_and_headline_is_visible_in_reading_order(
    seen: Callable[..., Snapshot], documents: dict[str, Document], document: str, viewport: str
) -> None:
    page = seen(document, viewport)
    outline = outline_of(documents[document].text)
    assert len(outline.sections) >= 2 and len(outline.headlines) >= len(outline.sections)
    for titles, find in (
        (outline.sections, page.run_equal_to),
        (outline.headlines, page.run_starting_with),
    ):
        tops = []
        for title in titles:
            run = find(title)
            assert run is not None, f"{title!r} is not visible in the {document} on a {viewport}"
            assert run.left >= 0 and run.right <= page.screen_width + 1, f"{title!r} is cut"
            tops.append(run.top)
        assert tops == sorted(tops), "the HTML orders the issue differently from the text part"


@pytest.mark.parametrize("viewport", EMAIL_WIDTHS)
@pytest.mark.parametrize("document", DOCUMENTS)
def test_body_text_is_at_least_14px_at_email_widths(
    seen: Callable[..., Snapshot], document: str, viewport: str
) -> None:
    page = seen(document, viewport)
    characters_by_size = Counter[float]()
    for run in page.runs:
        characters_by_size[run.font_size] += len(run.text)
    body_size, _ = characters_by_size.most_common(1)[0]
    assert body_size >= 14
    assert min(characters_by_size) >= 12, "small print under 12 px is unreadable on a phone"


@pytest.mark.parametrize("viewport", EMAIL_WIDTHS)
@pytest.mark.parametrize("document", DOCUMENTS)
def test_title_and_headlines_are_larger_than_body_text(
    seen: Callable[..., Snapshot], documents: dict[str, Document], document: str, viewport: str
) -> None:
    page = seen(document, viewport)
    body_size = page.layout.body_font_size
    titles = [h for h in page.layout.headings if h.tag == "h1"]
    assert titles, "the issue has no h1 title"
    assert all(h.font_size > body_size for h in titles), (titles, body_size)
    smaller = []
    for headline in outline_of(documents[document].text).headlines:
        run = page.run_starting_with(headline)
        assert run is not None, headline
        if run.font_size <= body_size:
            smaller.append(f"{run.font_size}px: {headline!r}")
    assert not smaller, f"headlines not larger than the {body_size}px body text: {smaller}"


@pytest.mark.parametrize("viewport", EMAIL_WIDTHS)
@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_image_fits_its_column_and_keeps_its_shape(
    seen: Callable[..., Snapshot], document: str, viewport: str
) -> None:
    layout = seen(document, viewport).layout
    assert pictures_that_overflow(layout) == []
    assert distorted_pictures(layout) == []


@pytest.mark.parametrize("viewport", EMAIL_WIDTHS)
@pytest.mark.parametrize("document", DOCUMENTS)
def test_links_that_stand_alone_are_big_enough_to_tap(
    seen: Callable[..., Snapshot], document: str, viewport: str
) -> None:
    layout = seen(document, viewport).layout
    assert sum(link.standalone for link in layout.links) >= 3
    assert small_tap_targets(layout) == []


@pytest.mark.parametrize("viewport", EMAIL_WIDTHS)
def test_email_footer_links_are_big_enough_to_tap(
    seen: Callable[..., Snapshot], documents: dict[str, Document], viewport: str
) -> None:
    message = documents["email"].message
    assert message is not None
    header = re.search(r"<(https?://[^>]+)>", str(message["List-Unsubscribe"]))
    assert header is not None
    (unsubscribe,) = [
        link for link in seen("email", viewport).layout.links if link.href == header.group(1)
    ]
    assert unsubscribe.standalone
    assert unsubscribe.tap_height >= 24 and unsubscribe.tap_width >= 24, unsubscribe


@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_link_goes_to_an_http_url_or_a_place_in_the_page(
    seen: Callable[..., Snapshot], document: str
) -> None:
    page = seen(document, "desktop")
    assert len(page.links) >= 3
    nowhere = [
        link
        for link in page.links
        if not (re.match(r"https?://[^/\s]+", link.href) or link.is_in_page)
    ]
    assert nowhere == []


def test_email_unsubscribe_link_is_the_readers_own_list_unsubscribe_url(
    seen: Callable[..., Snapshot], documents: dict[str, Document]
) -> None:
    message = documents["email"].message
    assert message is not None
    header = re.search(r"<(https?://[^>]+)>", str(message["List-Unsubscribe"]))
    assert header is not None
    url = header.group(1)
    assert re.fullmatch(r"http://127\.0\.0\.1:8000/u/[A-Za-z0-9._-]+", url)
    page = seen("email", "phone")
    assert {link.href for link in page.links if "unsubscribe" in link.text.casefold()} == {url}
    assert page.run_equal_to("Unsubscribe") is not None
    preview = seen("preview", "phone")
    assert url not in {link.href for link in preview.links}, "the link is not personal"


@pytest.mark.parametrize("document", DOCUMENTS)
def test_preheader_is_in_the_html_but_not_shown(
    seen: Callable[..., Snapshot], documents: dict[str, Document], document: str
) -> None:
    page = seen(document, "phone")
    first_headline = outline_of(documents[document].text).headlines[0]
    before_everything = [block for block in page.hidden if block.visible_before == 0]
    assert len(before_everything) == 1
    preheader = before_everything[0].text
    assert preheader.startswith(first_headline)
    assert page.run_equal_to(preheader) is None


@pytest.mark.parametrize("document", DOCUMENTS)
def test_dark_scheme_turns_the_reading_background_dark(
    seen: Callable[..., Snapshot], document: str
) -> None:
    def background_luminance(page: Snapshot) -> float:
        backgrounds = Counter(run.background for run in page.runs)
        colour, _ = backgrounds.most_common(1)[0]
        return _luminance(_channels(colour or "rgb(255, 255, 255)")[:3])  # type: ignore[arg-type]

    assert background_luminance(seen(document, "phone", "light")) > 0.8
    assert background_luminance(seen(document, "phone", "dark")) < 0.05


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("document", DOCUMENTS)
def test_all_visible_text_meets_wcag_aa_contrast(
    seen: Callable[..., Snapshot], document: str, scheme: str
) -> None:
    page = seen(document, "phone", scheme)
    faint = [
        f"{contrast_ratio(run.color, run.background):.2f}:1 {run.color} on {run.background}: "
        f"{run.text[:50]!r}"
        for run in page.runs
        if contrast_ratio(run.color, run.background) < required_contrast(run)
    ]
    assert not faint, "text too faint to read:\n" + "\n".join(faint)
